"""One log line per thing an operator may have to act on, for alerting from the journal.

A commit sink of the ledger: it sees every committed event once, in seq order, and logs a
warning with an ``alert`` field for a task reaching FAILED or INACTIVE (Globus's "needs
attention": paused, permission denied, endpoint error, ...), a task starting to need
attention while ACTIVE (``task_needs_attention``: Globus retries an error, paused, stalled),
a submit Globus refused and a
session whose credential stopped working. Fields: ``alert``, ``task_id``, ``session_id``,
``label`` and ``code`` (Globus's fatal error code or nice_status, or our error code) and no
more: an event never holds a credential, and nothing else of it is copied.

:func:`alert_for` decides, without I/O; :class:`AlertLog` only writes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ...ledger.events import StoredEvent
from ..runtime.logs import get_logger

__all__ = ["AlertLog", "alert_for"]

log = get_logger("radical.orbit.alerts")

_TASK_KINDS = frozenset({"task_submitted", "delete_submitted", "task_state_changed"})
_ALERTING = {"FAILED": "task_failed", "INACTIVE": "task_inactive"}
# Tasks remembered with the status last alerted, so a task reported INACTIVE again (a new
# nice_status) gives a line only when its code changes.
_REMEMBERED = 10_000


def alert_for(stored: StoredEvent) -> dict[str, Any] | None:
    """The alert fields for one committed event, or None."""
    data = stored.data
    if stored.kind in _TASK_KINDS:
        alert = _ALERTING.get(str(data.get("status")))
        if alert is None:
            return None
        fatal = data.get("fatal_error")
        code = fatal.get("code") if isinstance(fatal, dict) else None
        return _alert(alert, stored, code or data.get("nice_status"))
    if stored.kind == "task_needs_attention" and data.get("needs_attention") != "inactive":
        # Globus retries an error, the task is paused or it stalled: still ACTIVE, so no
        # status alert above; INACTIVE already has its own (task_inactive).
        error = data.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return _alert("task_needs_attention", stored, code or data.get("needs_attention"))
    if stored.kind == "submit_failed":
        return _alert(
            "submit_failed", stored, data.get("code"), submission_id=data.get("submission_id")
        )
    if stored.kind == "credential_expired":
        return _alert("credential_expired", stored, "CredentialExpired")
    return None


def _alert(alert: str, stored: StoredEvent, code: Any, **more: Any) -> dict[str, Any]:
    """The fields every alert line has (a session's events have no task_id and no label)."""
    return {
        "alert": alert,
        "task_id": stored.task_id,
        "session_id": stored.session_id,
        "label": stored.data.get("label"),
        "code": code,
        **more,
    }


class AlertLog:
    """The ledger commit sink that writes the alert lines."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    def offer(self, events: list[StoredEvent]) -> None:
        for stored in events:
            fields = alert_for(stored)
            if fields is None:
                continue
            task_id = fields["task_id"]
            if task_id is not None:
                key = (fields["alert"], fields["code"])
                if self._last.get(task_id) == key:
                    continue
                self._last[task_id] = key
                self._last.move_to_end(task_id)
                if len(self._last) > _REMEMBERED:
                    self._last.popitem(last=False)
            log.warning(fields["alert"].replace("_", " "), seq=stored.seq, **fields)
