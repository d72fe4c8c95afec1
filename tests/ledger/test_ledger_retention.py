"""Retention: old events of finished tasks go, every task keeps its final row, seqs and
cursors stay valid, and a projection rebuild keeps the pruned rows."""

from __future__ import annotations

import time
from pathlib import Path

from ledger_builders import submit_pair, transfer_request

from radical.orbit.ledger import Ledger, TaskStateChanged
from radical.orbit.ledger.events import (
    CancelRequested,
    SessionOpened,
    SubmitFailed,
    SubmitRequested,
)
from radical.orbit.ledger.retention import prune_file, pruned_through
from radical.orbit.ledger.schema import connect


def finished(n: int, status: str = "SUCCEEDED") -> TaskStateChanged:
    return TaskStateChanged(
        owner="alice",
        session_id="s1",
        task_id=f"task-{n}",
        status=status,  # type: ignore[arg-type]
        label=f"run-{n}",
        bytes_transferred=n * 100,
        files_transferred=n,
    )


async def seqs_of(ledger: Ledger, task_id: str | None = None) -> list[int]:
    return [e.seq async for e in ledger.events_since(0, task_id=task_id)]


async def test_prune_keeps_rows_sequence_and_everything_still_running(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = await Ledger.open(path)
    await ledger.append(SessionOpened(owner="alice", session_id="s1", auth="access_token"))
    for n in (1, 2, 3):
        await ledger.append_many(submit_pair(n))
    await ledger.append(finished(1))
    await ledger.append(finished(2, "FAILED"))
    await ledger.append(
        SubmitRequested(
            owner="alice",
            session_id="s1",
            submission_id="sub-x",
            type="TRANSFER",
            request=transfer_request("x"),
        )
    )
    await ledger.append(
        SubmitFailed(owner="alice", session_id="s1", submission_id="sub-x", code="Bad")
    )
    rows_before = {t: await ledger.task(t) for t in ("task-1", "task-2", "task-3")}
    head = await ledger.head()
    running = await seqs_of(ledger, "task-3")
    await ledger.close()

    # Nothing finished before an old date: nothing goes.
    assert prune_file(path, before=0).events == 0
    result = prune_file(path, before=time.time() + 1)
    assert (result.tasks, result.failed_submits) == (2, 1)
    assert result.events == 2 * 3 + 2  # submit_requested, task_submitted, change; 2 of sub-x
    assert 0 < result.pruned_through <= head

    ledger = await Ledger.open(path)
    try:
        for task_id, row in rows_before.items():
            assert await ledger.task(task_id) == row  # the final row, unchanged
        assert await seqs_of(ledger, "task-1") == [] and await seqs_of(ledger, "task-2") == []
        assert await seqs_of(ledger, "task-3") == running
        kinds = [e.kind async for e in ledger.events_since(0)]
        assert kinds.count("session_opened") == 1 and "submit_failed" not in kinds
        # The sequence goes on after the old head, even if the newest events were pruned.
        stored = await ledger.append(finished(3))
        assert stored.seq == head + 1
        # A cancel of a pruned task, then a rebuild (as after a migration): rows survive.
        await ledger.append(CancelRequested(owner="alice", session_id="s1", task_id="task-1"))
        before = await ledger.projection_snapshot()
        await ledger.rebuild_projections()
        assert await ledger.projection_snapshot() == before
    finally:
        await ledger.close()
    with connect(path, readonly=True) as conn:
        assert pruned_through(conn) == result.pruned_through
    # Task 3 has finished since, and task 1 got a cancel: both go now; the mark moves on.
    again = prune_file(path, before=time.time() + 1, vacuum=True)
    assert (again.tasks, again.events) == (2, 3 + 1)
    assert again.pruned_through > result.pruned_through
    assert prune_file(path, before=time.time() + 1).events == 0
