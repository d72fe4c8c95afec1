"""The Ledger API end to end on a real file: appends, reads, replay, subscription, reopen."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from ledger_builders import submit_pair, transfer_request

from radical.orbit.ledger import (
    CancelRequested,
    CancelResult,
    DeleteRequest,
    DeleteSubmitted,
    DuplicateSubmission,
    DuplicateTask,
    FatalError,
    IllegalTransition,
    Ledger,
    LedgerClosed,
    SessionOpened,
    SubmissionResolved,
    SubmitFailed,
    SubmitRequested,
    SubscriberLagged,
    TaskProgress,
    TaskStateChanged,
    UnknownSubmission,
    UnknownTask,
)


async def test_empty_ledger_has_head_zero(ledger: Ledger) -> None:
    assert await ledger.head() == 0
    assert await ledger.tasks() == []
    assert [e async for e in ledger.events_since(0)] == []


async def test_submit_flow_updates_projections(ledger: Ledger) -> None:
    requested, submitted = submit_pair(1, label="nightly")
    first = await ledger.append(requested)
    assert first.seq == 1 and first.kind == "submit_requested" and first.session_id == "s1"
    pending = await ledger.pending_submissions()
    assert [p.submission_id for p in pending] == ["sub-1"]
    assert pending[0].request == transfer_request("nightly")

    second = await ledger.append(submitted)
    assert second.seq == 2 and second.task_id == "task-1"
    assert await ledger.pending_submissions() == []
    row = await ledger.task("task-1")
    assert row is not None
    assert (row.status, row.label, row.owner, row.created_seq, row.last_seq) == (
        "ACTIVE",
        "nightly",
        "alice",
        2,
        2,
    )
    assert row.request_time == second.time

    progress = await ledger.append(
        TaskProgress(task_id="task-1", bytes_transferred=100, files_transferred=1)
    )
    # A poller event without owner/session inherits them from its task.
    assert (progress.owner, progress.session_id) == ("alice", "s1")
    done = await ledger.append(
        TaskStateChanged(
            task_id="task-1",
            status="FAILED",
            nice_status="PERMISSION_DENIED",
            bytes_transferred=120,
            files_transferred=1,
            fatal_error=FatalError(code="PERMISSION_DENIED", description="no access"),
        )
    )
    row = await ledger.task("task-1")
    assert row is not None
    assert row.status == "FAILED" and row.done
    assert row.fatal_error == FatalError(code="PERMISSION_DENIED", description="no access")
    assert row.completion_time == done.time and row.last_seq == done.seq
    assert row.as_dict()["fatal_error"] == {"code": "PERMISSION_DENIED", "description": "no access"}
    assert await ledger.head() == 4


async def test_submit_failed_resolves_submission(ledger: Ledger) -> None:
    requested, _ = submit_pair(1)
    await ledger.append(requested)
    await ledger.append(SubmitFailed(submission_id="sub-1", code="ConsentRequired", message="m"))
    assert await ledger.pending_submissions() == []
    with pytest.raises(SubmissionResolved):
        await ledger.append(SubmitFailed(submission_id="sub-1", code="X"))


async def test_refused_events_write_nothing(ledger: Ledger) -> None:
    requested, submitted = submit_pair(1)
    with pytest.raises(UnknownSubmission):
        await ledger.append(submitted)
    with pytest.raises(UnknownTask):
        await ledger.append(TaskProgress(task_id="task-1"))
    with pytest.raises(UnknownTask):
        await ledger.append(CancelRequested(task_id="task-1"))
    assert await ledger.head() == 0
    await ledger.append_many([requested, submitted])
    with pytest.raises(DuplicateSubmission):
        await ledger.append(requested)
    with pytest.raises(SubmissionResolved):
        await ledger.append(submitted)
    await ledger.append(TaskStateChanged(task_id="task-1", status="SUCCEEDED"))
    for event in (
        TaskProgress(task_id="task-1", status="ACTIVE"),
        TaskStateChanged(task_id="task-1", status="SUCCEEDED"),
    ):
        with pytest.raises(IllegalTransition) as info:
            await ledger.append(event)
        assert info.value.status == "SUCCEEDED"
    # Cancel events on a finished task are recorded and change nothing but last_seq.
    cancel = await ledger.append(CancelRequested(task_id="task-1"))
    await ledger.append(CancelResult(task_id="task-1", code="TaskComplete"))
    row = await ledger.task("task-1")
    assert row is not None and row.status == "SUCCEEDED" and row.last_seq == cancel.seq + 1
    assert await ledger.head() == 5


async def test_append_many_is_all_or_nothing(ledger: Ledger) -> None:
    requested, submitted = submit_pair(1)
    with pytest.raises(UnknownTask):
        await ledger.append_many([requested, submitted, TaskProgress(task_id="task-2")])
    assert await ledger.head() == 0
    assert await ledger.pending_submissions() == []
    stored = await ledger.append_many([requested, submitted])
    assert [s.seq for s in stored] == [1, 2]
    assert await ledger.append_many([]) == []


async def test_bad_append_in_a_batch_fails_alone(ledger: Ledger) -> None:
    await ledger.append_many(submit_pair(1))
    results = await asyncio.gather(
        *[ledger.append(TaskProgress(task_id="task-1", bytes_transferred=i)) for i in range(20)],
        ledger.append(TaskProgress(task_id="missing")),
        ledger.append_many([*submit_pair(2), *submit_pair(2)]),
        *[ledger.append(TaskProgress(task_id="task-1", bytes_transferred=i)) for i in range(20)],
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert [type(e) for e in errors] == [UnknownTask, DuplicateSubmission]
    seqs = [r.seq for r in results if not isinstance(r, BaseException)]
    assert seqs == list(range(3, 43))
    row = await ledger.task("task-1")
    assert row is not None and row.last_seq == 42 and row.bytes_transferred == 19
    assert await ledger.task("task-2") is None


async def test_delete_task(ledger: Ledger) -> None:
    await ledger.append(
        SubmitRequested(
            session_id="s1",
            submission_id="d1",
            type="DELETE",
            request=DeleteRequest(collection="c", paths=["/a", "/b"]),
        )
    )
    await ledger.append(
        DeleteSubmitted(session_id="s1", submission_id="d1", task_id="t-d", source="c")
    )
    row = await ledger.task("t-d")
    assert row is not None and row.type == "DELETE" and row.destination is None
    with pytest.raises(DuplicateTask):
        await ledger.append_many(
            [
                SubmitRequested(
                    session_id="s1",
                    submission_id="d2",
                    type="DELETE",
                    request=DeleteRequest(collection="c", paths=["/a"]),
                ),
                DeleteSubmitted(session_id="s1", submission_id="d2", task_id="t-d"),
            ]
        )


async def test_task_queries(ledger: Ledger) -> None:
    for n in range(10):
        await ledger.append_many(
            submit_pair(
                n,
                session_id=f"s{n % 2}",
                owner="bob" if n < 5 else "carol",
                label=f"run-{n}" if n != 9 else "other",
            )
        )
    await ledger.append(TaskStateChanged(task_id="task-3", status="SUCCEEDED"))
    rows = await ledger.tasks()
    assert [r.task_id for r in rows] == [f"task-{n}" for n in range(9, -1, -1)]
    assert [r.task_id for r in await ledger.tasks(limit=3, offset=2)] == [
        "task-7",
        "task-6",
        "task-5",
    ]
    assert {r.task_id for r in await ledger.tasks(owner="bob")} == {f"task-{n}" for n in range(5)}
    assert {r.task_id for r in await ledger.tasks(session_id="s1", owner="carol")} == {
        "task-5",
        "task-7",
        "task-9",
    }
    assert [r.task_id for r in await ledger.tasks(status="SUCCEEDED")] == ["task-3"]
    assert len(await ledger.tasks(status=["ACTIVE", "SUCCEEDED"])) == 10
    assert len(await ledger.tasks(label="run-*")) == 9
    assert [r.task_id for r in await ledger.tasks(label="run-[12]")] == ["task-2", "task-1"]
    assert [r.task_id for r in await ledger.tasks(label="other")] == ["task-9"]
    middle = rows[4].request_time
    assert all(r.request_time >= middle for r in await ledger.tasks(since=middle))
    assert all(r.request_time < middle for r in await ledger.tasks(until=middle))
    assert len(await ledger.tasks(since=middle)) + len(await ledger.tasks(until=middle)) == 10
    with pytest.raises(ValueError, match="limit"):
        await ledger.tasks(limit=-1)


async def test_events_since_pages_and_filters(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "l.db", page_size=7)
    try:
        for n in range(20):
            await ledger.append_many(submit_pair(n, session_id=f"s{n % 3}"))
        all_events = [e async for e in ledger.events_since(0)]
        assert [e.seq for e in all_events] == list(range(1, 41))
        assert [e.seq async for e in ledger.events_since(33)] == list(range(34, 41))
        assert [e.seq async for e in ledger.events_since(5, until=9)] == [6, 7, 8, 9]
        s1 = [e async for e in ledger.events_since(0, session_id="s1")]
        assert s1 == [e for e in all_events if e.session_id == "s1"] and len(s1) == 14
        kinds = [e async for e in ledger.events_since(0, kinds=["task_submitted"])]
        assert len(kinds) == 20 and {e.kind for e in kinds} == {"task_submitted"}
        assert [e.seq async for e in ledger.events_since(0, task_id="task-4")] == [10]
        assert [e async for e in ledger.events_since(0, owner="nobody")] == []
        assert all_events[1].event() == submit_pair(0, session_id="s0")[1]
    finally:
        await ledger.close()


async def test_subscription_sees_commits_in_order(ledger: Ledger) -> None:
    await ledger.append(SessionOpened(session_id="s1", auth="refresh_token"))
    sub = ledger.subscribe(maxsize=100)
    assert sub.start_seq == 1
    await asyncio.gather(*[ledger.append_many(submit_pair(n)) for n in range(10)])
    got = [await anext(sub) for _ in range(20)]
    assert [e.seq for e in got] == list(range(2, 22))
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_lagging_subscriber_is_told_where_to_resume(ledger: Ledger) -> None:
    sub = ledger.subscribe(maxsize=5)
    await ledger.append_many(submit_pair(0))
    first = await anext(sub)
    for n in range(1, 6):
        await ledger.append_many(submit_pair(n))
    assert sub.lagged
    with pytest.raises(SubscriberLagged) as info:
        async for _ in sub:
            pass
    # It had consumed seq 1; the buffered seq 2 was dropped with the rest.
    assert info.value.resume_from == first.seq == 1
    rest = [e.seq async for e in ledger.events_since(info.value.resume_from)]
    assert rest == list(range(2, 13))


async def test_close_ends_subscriptions_and_refuses_use(tmp_path: Path) -> None:
    ledger = await Ledger.open(tmp_path / "l.db")
    sub = ledger.subscribe()
    waiter = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    await ledger.close()
    with pytest.raises(StopAsyncIteration):
        await waiter
    with pytest.raises(LedgerClosed):
        await ledger.append(SessionOpened(auth="access_token"))
    with pytest.raises(LedgerClosed):
        await ledger.task("x")
    await ledger.close()  # idempotent


async def test_reopen_keeps_everything_and_never_reuses_seqs(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    ledger = await Ledger.open(path)
    for n in range(3):
        await ledger.append_many(submit_pair(n))
    await ledger.close()
    # Pruning the newest events (e.g. by an operator) must not hand their seqs out again.
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM events WHERE seq > 4")
    conn.close()
    ledger = await Ledger.open(path)
    try:
        assert await ledger.head() == 6
        stored = await ledger.append(SessionOpened(session_id="s9", auth="access_token"))
        assert stored.seq == 7
        assert stored.time >= (await ledger.task("task-2")).request_time  # type: ignore[union-attr]
    finally:
        await ledger.close()


async def test_rebuild_reproduces_projections(ledger: Ledger) -> None:
    for n in range(5):
        await ledger.append_many(submit_pair(n, label=f"l{n}"))
    await ledger.append(
        SubmitRequested(submission_id="p", type="TRANSFER", request=transfer_request())
    )
    await ledger.append(
        TaskStateChanged(task_id="task-1", status="FAILED", fatal_error=FatalError(code="X"))
    )
    await ledger.append(TaskProgress(task_id="task-2", bytes_transferred=7, label="renamed"))
    before = await ledger.projection_snapshot()
    await ledger.rebuild_projections()
    assert await ledger.projection_snapshot() == before
    assert len(before["tasks"]) == 5 and len(before["submissions"]) == 6


async def test_events_cannot_be_rewritten(ledger: Ledger) -> None:
    await ledger.append(SessionOpened(session_id="s1", auth="access_token"))
    conn = sqlite3.connect(ledger.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET kind = 'session_closed'")
    finally:
        conn.close()


async def test_replay_then_live_has_no_gap_and_no_duplicate(tmp_path: Path) -> None:
    # The WebSocket pattern: subscribe, replay up to sub.start_seq, then follow live, while
    # appends keep coming. Small batches make appends span many group commits.
    ledger = await Ledger.open(tmp_path / "l.db", max_batch=3, page_size=4)
    try:
        for n in range(5):
            await ledger.append_many(submit_pair(n))

        async def writer() -> None:
            for n in range(5, 25):
                await ledger.append_many(submit_pair(n))

        task = asyncio.ensure_future(writer())
        await asyncio.sleep(0)
        sub = ledger.subscribe(maxsize=1000)
        seen = [e.seq async for e in ledger.events_since(2, until=sub.start_seq)]
        await task
        while not seen or seen[-1] < await ledger.head():
            seen.append((await anext(sub)).seq)
        assert seen == list(range(3, 51))
        sub.close()
    finally:
        await ledger.close()
