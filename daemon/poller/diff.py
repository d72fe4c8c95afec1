"""Pure core of the poller: ledger rows + Globus task documents -> events to append.

No I/O, no clock: hypothesis tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...ledger import events as ev
from ...protocol import STATUSES, is_terminal

__all__ = ["diff"]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _fatal(doc: Mapping[str, Any]) -> ev.FatalError | None:
    fatal = doc.get("fatal_error")
    if not isinstance(fatal, Mapping) or not fatal.get("code"):
        return None
    return ev.FatalError(code=str(fatal["code"]), description=str(fatal.get("description") or ""))


def _is_ok(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def diff(
    rows: Mapping[str, Mapping[str, Any]], docs: Iterable[Mapping[str, Any]]
) -> list[ev.Event]:
    """Events that bring ``rows`` (task_id -> ledger row) up to date with ``docs``.

    - a change of status, nice_status, is_ok, is_paused or faults -> ``task_state_changed``
      (INACTIVE is a state like any other; it is not terminal; a new fault is news even when
      nice_status stays the same error);
    - only bytes/files moved -> ``task_progress``;
    - terminal rows never change again, unknown tasks and malformed documents are ignored.
    """
    out: list[ev.Event] = []
    for doc in docs:
        task_id = doc.get("task_id")
        row = rows.get(task_id) if isinstance(task_id, str) else None
        if row is None or is_terminal(row.get("status")):
            continue
        status = doc.get("status")
        if status not in STATUSES:
            continue
        nice = doc.get("nice_status")
        nice = str(nice) if nice is not None else None
        label = doc.get("label", row.get("label"))
        label = str(label) if label is not None else None
        moved_bytes = _int(doc.get("bytes_transferred"))
        moved_files = _int(doc.get("files_transferred"))
        is_ok = _is_ok(doc.get("is_ok"))
        is_paused = doc.get("is_paused") is True
        faults = _int(doc.get("faults"))
        common: dict[str, Any] = {
            "owner": row.get("owner"),
            "session_id": row.get("session_id"),
            "task_id": task_id,
            "status": status,
            "nice_status": nice,
            "label": label,
            "bytes_transferred": moved_bytes,
            "files_transferred": moved_files,
            "is_ok": is_ok,
            "is_paused": is_paused,
            "faults": faults,
        }
        if (
            status != row.get("status")
            or nice != row.get("nice_status")
            or is_ok != row.get("is_ok")
            or is_paused != bool(row.get("is_paused"))
            or faults != _int(row.get("faults"))
        ):
            out.append(ev.TaskStateChanged(**common, fatal_error=_fatal(doc)))
        elif moved_bytes != _int(row.get("bytes_transferred")) or moved_files != _int(
            row.get("files_transferred")
        ):
            out.append(ev.TaskProgress(**common))
    return out
