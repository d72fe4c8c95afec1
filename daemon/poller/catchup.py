"""Pure core of the catch-up: what a task did while nobody was watching.

When the poller sees a task's state for the first time after a gap (a daemon restart, a
credential that expired, a run of failed sweeps), the current task document alone would
hide the transitions in between: a pause and its end (ACTIVE, paused -> ACTIVE ->
SUCCEEDED) would be recorded as ACTIVE -> SUCCEEDED. Globus keeps a list of the task's
events; :func:`catch_up` turns the ones after the ledger's last observation into the missed
state changes, in order, and finishes with what :func:`.diff.diff` finds against the current
document.

No I/O, no clock: hypothesis tests drive it directly.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from ...ledger import events as ev
from ...protocol import STATUSES, is_terminal
from .diff import diff

__all__ = ["TRANSITIONS", "catch_up", "event_time"]

# Event codes that change a task's state while it stays open, with the nice_status recorded
# for the intermediate state. A pause keeps a task ACTIVE with ``is_paused`` (events PAUSED
# and UNPAUSED; docs.globus.org/api/transfer/task, "task behavior"; older simulators said
# RESUMED); a credential's expiry, the only cause of INACTIVE, logs no event, so INACTIVE
# round trips inside a gap stay unseen. Terminal states are never inferred from events:
# Globus also logs retried faults as error events, and the task document says how the task
# really ended.
TRANSITIONS: Mapping[str, tuple[bool, str]] = {
    "PAUSED": (True, "PAUSED"),
    "UNPAUSED": (False, "OK"),
    "RESUMED": (False, "OK"),
}


def event_time(value: Any) -> float | None:
    """Unix seconds of a Globus event time (``2024-01-02T03:04:05+00:00``, or with a space
    instead of the ``T``); None when it cannot be read."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def _transitions(
    events: Iterable[Mapping[str, Any]],
) -> list[tuple[float, bool, str]]:
    """(time, is_paused, nice_status) of the state-changing events, oldest first.

    Globus lists events newest first and stamps them to the second; ties keep the list's
    order (reversed), which is the order they happened in.
    """
    found: list[tuple[float, int, bool, str]] = []
    for index, event in enumerate(reversed(list(events))):
        if not isinstance(event, Mapping):
            continue
        move = TRANSITIONS.get(str(event.get("code")))
        when = event_time(event.get("time"))
        if move is None or when is None:
            continue
        found.append((when, index, *move))
    found.sort()
    return [(when, paused, nice) for when, _, paused, nice in found]


def catch_up(
    row: Mapping[str, Any],
    doc: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    *,
    known_at: float,
) -> list[ev.Event]:
    """Events that bring ``row`` (a ledger task row) up to date with ``doc`` (its Globus task
    document), including the transitions in ``events`` (its Globus event list) that
    happened after ``known_at`` (Unix seconds of the last ledger record that confirmed the
    row's state).

    The task starts unpaused; each PAUSED/UNPAUSED event is a transition of ``is_paused``
    (the status stays the row's). The ledger's state at ``known_at`` is matched to the last
    transition to that pause state before that time; every later transition that changes
    it is returned, then the change to the document's state. Intermediate events keep the
    row's byte and file counts and trouble fields (Globus keeps no history of them); the
    last one carries the document's. Without usable events this is exactly ``diff``.
    """
    task_id = doc.get("task_id")
    if not isinstance(task_id, str) or row.get("task_id") != task_id:
        return []
    if is_terminal(row.get("status")) or doc.get("status") not in STATUSES:
        return []
    start: tuple[float, bool, str] = (float("-inf"), False, "OK")
    history = [start, *_transitions(events)]
    # Event times are whole seconds: an event stamped ``w`` happened in [w, w + 1), so it
    # surely preceded the observation when w + 1 <= known_at, and may have preceded it or
    # not when w <= known_at < w + 1. The state the ledger saw is the last surely-earlier
    # transition or one of the undecided ones; taking the earliest that matches may repeat a
    # transition the ledger already has, but never drops one it has not.
    surely_before = max(i for i, (when, _, _) in enumerate(history) if when + 1 <= known_at)
    undecided = [i for i, (when, _, _) in enumerate(history) if when <= known_at < when + 1]
    candidates = [surely_before, *undecided]
    seen_paused = bool(row.get("is_paused"))
    anchor = next((i for i in candidates if history[i][1] == seen_paused), candidates[-1])
    paused = seen_paused
    missed: list[tuple[bool, str]] = []
    for _, state, nice in history[anchor + 1 :]:
        if state != paused:
            missed.append((state, nice))
            paused = state
    # The document has the details of the state the task is in now.
    if (
        missed
        and missed[-1][0] == (doc.get("is_paused") is True)
        and doc.get("status") == row.get("status")
    ):
        missed.pop()
    out: list[ev.Event] = []
    current = dict(row)
    label = doc.get("label", row.get("label"))
    is_ok = row.get("is_ok")
    for state, nice in missed:
        out.append(
            ev.TaskStateChanged(
                owner=row.get("owner"),
                session_id=row.get("session_id"),
                task_id=task_id,
                status=row.get("status") or "ACTIVE",
                nice_status=nice,
                label=str(label) if label is not None else None,
                bytes_transferred=int(row.get("bytes_transferred") or 0),
                files_transferred=int(row.get("files_transferred") or 0),
                fatal_error=None,
                is_ok=is_ok if isinstance(is_ok, bool) else None,
                is_paused=state,
                faults=int(row.get("faults") or 0),
            )
        )
        current.update(is_paused=state, nice_status=nice)
    return out + diff({task_id: current}, [doc])
