"""The projections the daemon reads at run time (open sessions, pending cancels, each task's
last observation) are kept by the fold in the append's transaction and survive a rebuild."""

from __future__ import annotations

from ledger_builders import submit_pair

from radical.orbit.ledger import (
    CancelRequested,
    CancelResult,
    CredentialExpired,
    Ledger,
    SessionClosed,
    SessionOpened,
    TaskProgress,
    TaskStateChanged,
    UnknownTask,
)


async def test_open_sessions_follow_open_close_and_reopen(ledger: Ledger) -> None:
    await ledger.append(
        SessionOpened(owner="alice", session_id="s1", auth="access_token", local_collection="c")
    )
    await ledger.append(SessionOpened(owner="bob", session_id="s2", auth="refresh_token"))
    await ledger.append(SessionClosed(owner="bob", session_id="s2"))
    await ledger.append(SessionClosed(owner="eve", session_id="never-opened"))
    await ledger.append(CredentialExpired(owner="alice", session_id="s1", message="m"))
    rows = await ledger.open_sessions()
    assert [(r.session_id, r.owner, r.local_collection, r.auth) for r in rows] == [
        ("s1", "alice", "c", "access_token")
    ]
    # Re-registering a closed session opens it again, with what the new event says.
    reopened = await ledger.append(
        SessionOpened(owner="bob", session_id="s2", auth="access_token", local_collection="d")
    )
    rows = await ledger.open_sessions()
    assert [(r.session_id, r.opened_seq) for r in rows] == [("s1", 1), ("s2", reopened.seq)]
    assert rows[1].local_collection == "d"


async def test_pending_cancels_until_answered(ledger: Ledger) -> None:
    for n in range(3):
        await ledger.append_many(submit_pair(n, session_id="s1" if n < 2 else "s2"))
    await ledger.append(CancelRequested(owner="alice", session_id="s1", task_id="task-0"))
    await ledger.append(CancelRequested(owner="alice", session_id="s1", task_id="task-1"))
    # A cancel event without a session belongs to its task's (as the writer stores it).
    await ledger.append(CancelRequested(task_id="task-2"))
    await ledger.append(CancelResult(session_id="s1", task_id="task-0", code="Canceled"))
    assert [c.task_id for c in await ledger.pending_cancels(session_id="s1")] == ["task-1"]
    assert [c.task_id for c in await ledger.pending_cancels(session_id="s2")] == ["task-2"]
    assert [c.task_id for c in await ledger.pending_cancels()] == ["task-1", "task-2"]
    # Asked again after an answer: pending again.
    await ledger.append(CancelRequested(session_id="s1", task_id="task-0"))
    assert [c.task_id for c in await ledger.pending_cancels(session_id="s1")] == [
        "task-1",
        "task-0",
    ]
    # A refused cancel (unknown task) leaves no cancel row behind.
    try:
        await ledger.append(CancelRequested(session_id="s1", task_id="nope"))
    except UnknownTask:
        pass
    else:
        raise AssertionError("a cancel of an unknown task was accepted")
    assert len(await ledger.pending_cancels()) == 3


async def test_observed_time_is_the_last_record_of_globus_view(ledger: Ledger) -> None:
    _, submitted = await ledger.append_many(submit_pair(1))
    row = await ledger.task("task-1")
    assert row is not None and row.observed_time == submitted.time
    progress = await ledger.append(TaskProgress(task_id="task-1", bytes_transferred=5))
    # Cancels say nothing about what Globus reported: the observation stays.
    await ledger.append(CancelRequested(task_id="task-1"))
    row = await ledger.task("task-1")
    assert row is not None and row.observed_time == progress.time
    assert row.last_seq > progress.seq
    done = await ledger.append(TaskStateChanged(task_id="task-1", status="SUCCEEDED"))
    row = await ledger.task("task-1")
    assert row is not None and row.observed_time == done.time


async def test_all_or_nothing_batch_leaves_no_session_or_cancel(ledger: Ledger) -> None:
    await ledger.append_many(submit_pair(1))
    try:
        await ledger.append_many(
            [
                SessionOpened(owner="a", session_id="s9", auth="access_token"),
                CancelRequested(task_id="task-1"),
                TaskProgress(task_id="unknown", bytes_transferred=1),
            ]
        )
    except UnknownTask:
        pass
    else:
        raise AssertionError("the batch was accepted")
    assert await ledger.open_sessions() == []
    assert await ledger.pending_cancels() == []
    # The same events without the refused one commit together.
    await ledger.append_many(
        [
            SessionOpened(owner="a", session_id="s9", auth="access_token"),
            CancelRequested(task_id="task-1"),
        ]
    )
    assert [s.session_id for s in await ledger.open_sessions()] == ["s9"]
    assert [c.task_id for c in await ledger.pending_cancels()] == ["task-1"]


async def test_rebuild_and_reopen_reproduce_every_projection(ledger: Ledger) -> None:
    await ledger.append(SessionOpened(owner="a", session_id="s1", auth="access_token"))
    await ledger.append(SessionOpened(owner="a", session_id="s2", auth="access_token"))
    await ledger.append(SessionClosed(owner="a", session_id="s2"))
    for n in range(3):
        await ledger.append_many(submit_pair(n))
    await ledger.append(CancelRequested(task_id="task-0"))
    await ledger.append(CancelRequested(task_id="task-1"))
    await ledger.append(CancelResult(task_id="task-1", code="Canceled"))
    await ledger.append(TaskProgress(task_id="task-2", bytes_transferred=9))
    before = await ledger.projection_snapshot()
    assert len(before["sessions"]) == 2 and len(before["cancels"]) == 2
    await ledger.rebuild_projections()
    assert await ledger.projection_snapshot() == before
    path = ledger.path
    await ledger.close()
    async with await Ledger.open(path) as again:
        assert await again.projection_snapshot() == before
        assert [s.session_id for s in await again.open_sessions()] == ["s1"]
        assert [c.task_id for c in await again.pending_cancels()] == ["task-0"]
