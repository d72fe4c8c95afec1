"""Why a task is not done, in words: shared by task_wait's errors, ``watch`` and ``task show``.

Pure functions over a task row or a ``transfer_status`` notification (the same field names:
``status``, ``nice_status``, ``is_ok``, ``is_paused``, ``faults``, ``error``,
``needs_attention``, ``attention_message``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["INACTIVE_ADVICE", "error_text", "policy_body", "trouble_text"]

# Globus: INACTIVE "will not continue without intervention. Currently, only credential
# expiration will cause this state" (docs.globus.org/api/transfer/task/#task_fields).
INACTIVE_ADVICE = (
    "INACTIVE: an endpoint credential of this task expired; renew it (re-activate the "
    "collection or consent again in the Globus web app) and Globus resumes the task"
)


def error_text(error: Any) -> str | None:
    """``CODE: description (details)`` of a Globus error event document, or None."""
    if not isinstance(error, Mapping) or not error.get("code"):
        return None
    text = str(error["code"])
    if error.get("description"):
        text += f": {error['description']}"
    if error.get("details"):
        text += f" ({error['details']})"
    return text


def trouble_text(row: Mapping[str, Any]) -> str:
    """One line on what holds a task up; empty when nothing does."""
    parts: list[str] = []
    status = row.get("status")
    if status == "INACTIVE":
        parts.append(INACTIVE_ADVICE)
    elif row.get("is_paused"):
        message = row.get("attention_message") if row.get("needs_attention") == "paused" else None
        parts.append(f"paused: {message}" if message else "paused by an administrator")
    elif row.get("is_ok") is False:
        parts.append(f"Globus retries: {row.get('nice_status') or 'an error'}")
    elif row.get("needs_attention") == "stalled":
        parts.append(str(row.get("attention_message") or "stalled: no progress"))
    if not parts:
        return ""  # going well: past faults are history, not trouble
    faults = row.get("faults")
    if isinstance(faults, int) and faults > 0:
        parts.append(f"{faults} fault{'s' if faults != 1 else ''}")
    newest = error_text(row.get("error"))
    if newest:
        parts.append(f"newest error {newest}")
    return "; ".join(parts)


def policy_body(
    *,
    max_faults: int | None = None,
    max_trouble_minutes: float | None = None,
    fatal_codes: tuple[str, ...] | list[str] = (),
) -> dict[str, Any] | None:
    """The daemon's trouble policy body, or None when no condition is given."""
    body: dict[str, Any] = {}
    if max_faults is not None:
        body["max_faults"] = max_faults
    if max_trouble_minutes is not None:
        body["max_trouble_minutes"] = max_trouble_minutes
    if fatal_codes:
        body["fatal_codes"] = list(fatal_codes)
    return body or None
