"""A ledger full of finished tasks, written fast through the Ledger API (for the history
benchmarks).

Tasks come in runs of ``RUN`` tasks labelled ``run-RRRR-III`` (a workflow's batch); each task
has three events: ``submit_requested``, ``task_submitted`` and ``task_state_changed`` to
SUCCEEDED, or FAILED for one task in ``FAIL_EVERY``. Every task belongs to owner ``OWNER``,
session ``SESSION``. Runs are appended with ``append_many`` (all of a run's events in one
request), several requests at a time, so the writer commits thousands of events at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from radical.orbit.ledger import (
    FatalError,
    Ledger,
    SessionClosed,
    SessionOpened,
    SubmitRequested,
    TaskStateChanged,
    TaskSubmitted,
    TransferItem,
    TransferRequest,
)

__all__ = ["FAIL_EVERY", "OWNER", "RUN", "SESSION", "Filled", "fill", "label_of"]

OWNER = "bench"
SESSION = "bench-session"
RUN = 100
FAIL_EVERY = 100
_CONCURRENT = 8


def label_of(task: int) -> str:
    return f"run-{task // RUN:04d}-{task % RUN:03d}"


def _run_events(run: int, *, owner: str, session: str) -> list[SubmitRequested | TaskSubmitted]:
    events: list[SubmitRequested | TaskSubmitted] = []
    for task in range(run * RUN, (run + 1) * RUN):
        label = label_of(task)
        request = TransferRequest(
            source="src",
            destination="dst",
            items=(TransferItem(source=f"/in/{task}", destination=f"/out/{task}"),),
            label=label,
        )
        events.append(
            SubmitRequested(
                owner=owner,
                session_id=session,
                submission_id=f"sub-{task}",
                type="TRANSFER",
                request=request,
            )
        )
        events.append(
            TaskSubmitted(
                owner=owner,
                session_id=session,
                submission_id=f"sub-{task}",
                task_id=f"task-{task:07d}",
                label=label,
                source="src",
                destination="dst",
            )
        )
    return events


def _finish_events(run: int) -> list[TaskStateChanged]:
    out: list[TaskStateChanged] = []
    for task in range(run * RUN, (run + 1) * RUN):
        failed = task % FAIL_EVERY == FAIL_EVERY - 1
        out.append(
            TaskStateChanged(
                task_id=f"task-{task:07d}",
                status="FAILED" if failed else "SUCCEEDED",
                nice_status=None,
                label=label_of(task),
                bytes_transferred=1000,
                files_transferred=1,
                fatal_error=FatalError(code="ENDPOINT_ERROR") if failed else None,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Filled:
    tasks: int
    events: int


async def fill(ledger: Ledger, *, tasks: int, start: int = 0, owner: str = OWNER) -> Filled:
    """Append ``tasks`` finished tasks (a multiple of ``RUN``) numbered from ``start``; the
    session is opened, then closed (a daemon started on the file has nothing to resume)."""
    if tasks % RUN or start % RUN:
        raise ValueError(f"tasks and start must be multiples of {RUN}")
    if start == 0:
        await ledger.append(SessionOpened(owner=owner, session_id=SESSION, auth="access_token"))
    runs = list(range(start // RUN, (start + tasks) // RUN))
    gate = asyncio.Semaphore(_CONCURRENT)

    async def one(run: int) -> int:
        async with gate:
            submitted = await ledger.append_many(_run_events(run, owner=owner, session=SESSION))
            finished = await ledger.append_many(_finish_events(run))
            return len(submitted) + len(finished)

    counts = await asyncio.gather(*(one(run) for run in runs))
    await ledger.append(SessionClosed(owner=owner, session_id=SESSION))
    return Filled(tasks=tasks, events=sum(counts) + 1 + (start == 0))
