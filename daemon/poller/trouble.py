"""Pure core of "trouble is news": what the poller adds to a task's events when it is in
trouble, and when it cancels one on the owner's behalf.

Globus keeps a task whose source is missing, whose permissions are wrong or whose endpoint
is unreachable ACTIVE, with ``is_ok`` false, ``nice_status`` naming the error and ``faults``
counting the retries, until its deadline (docs.globus.org/api/transfer/task/#task_fields;
globus-cli issue 1056, Parsl issue 436): a client waiting for FAILED may wait days. A paused
task stays ACTIVE with ``is_paused``; INACTIVE means an expired credential (Transfer docs,
"task behavior"). This module turns a task document into:

- ``needs_attention``: why the task needs attention now (:func:`attention_reason`),
  recorded on every state and progress event of the task, plus one ``task_needs_attention``
  event when an episode begins and one ``task_recovered`` when it ends (:func:`follow`);
- the newest error of a task's Globus event list (:func:`newest_error`), which the poller
  fetches only when ``faults`` grew;
- a cancel reason when the task's :class:`~radical.orbit.ledger.events.TroublePolicy` says
  the task is doomed (:func:`policy_cancel`), once per task (:func:`follow_batch`, which
  does all of the above for one ``task_list`` batch);
- which tasks' details a sweep fetches (:func:`details_wanted`, within the share of the
  sweep's event lists that :mod:`.plan` leaves it);
- a smaller ``task_list`` batch when Globus refuses a filter as too long
  (:func:`smaller_batch`).

No I/O, no clock: the time is passed in, and hypothesis tests drive it directly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Set
from typing import Any

from ...ledger import events as ev
from ...protocol import OPEN_STATUSES, is_terminal
from .catchup import event_time

__all__ = [
    "STALL_AFTER",
    "attention_message",
    "attention_reason",
    "details_wanted",
    "field",
    "filter_refused",
    "follow",
    "follow_batch",
    "newest_error",
    "pause_message",
    "policy_cancel",
    "smaller_batch",
]

# Seconds without a byte or file moved before an ACTIVE task counts as stalled. Globus itself
# gives a progressing task 72 h after its last progress before its deadline (Transfer docs,
# "task behavior"); it documents no "stalled" signal, so this is ours, configurable.
STALL_AFTER = 3600.0


def field(row: Any, name: str) -> Any:
    """A field of a ledger task row, given as a dict or as a typed ``TaskRow``."""
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def attention_reason(
    doc: Mapping[str, Any], *, progress_time: float, now: float, stall_after: float | None
) -> ev.AttentionReason | None:
    """Why the task described by ``doc`` needs attention at ``now``, or None.

    INACTIVE first (nothing moves until the credential is renewed), then a pause (an
    administrator's decision: retrying is pointless), then a retried error, then no progress
    since ``progress_time`` for ``stall_after`` seconds (None: never stalled)."""
    status = doc.get("status")
    if status == "INACTIVE":
        return "inactive"
    if status != "ACTIVE":
        return None
    if doc.get("is_paused") is True:
        return "paused"
    if doc.get("is_ok") is False:
        return "erroring"
    if stall_after is not None and now - progress_time >= stall_after:
        return "stalled"
    return None


# INACTIVE: "The task has been suspended and will not continue without intervention.
# Currently, only credential expiration will cause this state" (docs.globus.org/api/transfer/
# task/#task_fields, "status").
INACTIVE_MESSAGE = (
    "a credential of an endpoint of this task expired; Globus resumes the task once it is "
    "renewed (re-activate the collection or give consent again in the Globus web app)"
)


def attention_message(
    reason: ev.AttentionReason,
    doc: Mapping[str, Any],
    *,
    error: ev.TaskError | None,
    pause_message: str | None,
    stall_after: float | None,
) -> str:
    """What the owner of a task that needs attention for ``reason`` should know."""
    if reason == "inactive":
        return INACTIVE_MESSAGE
    if reason == "paused":
        return pause_message or "paused by an administrator of one of the task's collections"
    if reason == "erroring":
        if error is not None:
            text = f"{error.code}: {error.description}" if error.description else error.code
            return f"{text} ({error.details})" if error.details else text
        return f"Globus retries: {doc.get('nice_status') or 'an error'}"
    minutes = (stall_after or 0.0) / 60.0
    return f"no bytes or files moved for {minutes:g} min"


def newest_error(events: Iterable[Mapping[str, Any]]) -> ev.TaskError | None:
    """The newest error event of a Globus event list (``is_error`` true), or None.

    Globus lists events newest first and stamps them to the second; among events of the same
    second the earlier in the list is the newer."""
    best: tuple[float, int, Mapping[str, Any]] | None = None
    items = list(events)
    for index, event in enumerate(items):
        if not isinstance(event, Mapping) or event.get("is_error") is not True:
            continue
        when = event_time(event.get("time"))
        key = (when if when is not None else float("-inf"), -index, event)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        return None
    event = best[2]
    time = event.get("time")
    return ev.TaskError(
        code=str(event.get("code") or "UNKNOWN"),
        description=str(event.get("description") or ""),
        details=str(event.get("details") or ""),
        time=time if isinstance(time, str) else None,
    )


def pause_message(info: Any) -> str | None:
    """The administrator's message of a ``task_pause_info`` document: its top-level
    ``message``, else the first rule's (docs: task page, "Limited pause rule document";
    globus-cli test fixture test_task_pause_info.py)."""
    if not isinstance(info, Mapping):
        return None
    message = info.get("message")
    if isinstance(message, str) and message:
        return message
    for rule in info.get("pause_rules") or ():
        if isinstance(rule, Mapping) and isinstance(rule.get("message"), str) and rule["message"]:
            return str(rule["message"])
    return None


def details_wanted(
    rows: Mapping[str, Any], docs: Iterable[Mapping[str, Any]], *, budget: int
) -> tuple[list[str], list[str]]:
    """Which tasks' details a sweep fetches, at most ``budget`` in all: (task ids whose
    ``faults`` grew: their newest error, task ids just paused: their pause message). Pause
    messages first (one per pause), then the tasks whose episode starts now, so that each
    episode's first notification says why."""
    grown: list[tuple[bool, str]] = []
    paused: list[str] = []
    for doc in docs:
        task_id = str(doc.get("task_id"))
        row = rows.get(task_id)
        if row is None or doc.get("status") not in OPEN_STATUSES:
            continue
        if _int(doc.get("faults")) > _int(field(row, "faults")):
            grown.append((field(row, "needs_attention") is not None, task_id))
        if doc.get("is_paused") is True and not field(row, "is_paused"):
            paused.append(task_id)
    paused = paused[: max(0, budget)]
    grown.sort(key=lambda item: item[0])  # stable: within each group, the sweep's order
    return [t for _, t in grown[: max(0, budget - len(paused))]], paused


def _policy(row: Mapping[str, Any]) -> ev.TroublePolicy | None:
    value = field(row, "policy")
    if isinstance(value, ev.TroublePolicy) or value is None:
        return value
    if isinstance(value, Mapping):
        return ev.TroublePolicy(
            max_faults=value.get("max_faults"),
            max_trouble_minutes=value.get("max_trouble_minutes"),
            fatal_codes=tuple(value.get("fatal_codes") or ()),
        )
    return None


def _error_code(value: Any) -> str | None:
    if isinstance(value, ev.TaskError):
        return value.code
    if isinstance(value, Mapping) and value.get("code"):
        return str(value["code"])
    return None


def policy_cancel(
    policy: ev.TroublePolicy | None,
    *,
    faults: int,
    error_code: str | None,
    trouble_since: float | None,
    now: float,
) -> str | None:
    """Why ``policy`` cancels a task now (a sentence for the ledger), or None."""
    if policy is None:
        return None
    if error_code is not None and error_code in policy.fatal_codes:
        return f"trouble policy: error {error_code} is in fatal_codes"
    if policy.max_faults is not None and faults >= policy.max_faults:
        return f"trouble policy: {faults} faults reached max_faults={policy.max_faults}" + (
            f" (newest error {error_code})" if error_code else ""
        )
    if policy.max_trouble_minutes is not None and trouble_since is not None:
        minutes = (now - trouble_since) / 60.0
        if minutes >= policy.max_trouble_minutes:
            return (
                f"trouble policy: needed attention for {minutes:.1f} min, "
                f"max_trouble_minutes={policy.max_trouble_minutes:g}"
            )
    return None


def _snapshot(doc: Mapping[str, Any], row: Any) -> dict[str, Any]:
    label = doc.get("label", field(row, "label"))
    is_ok = doc.get("is_ok")
    return {
        "owner": field(row, "owner"),
        "session_id": field(row, "session_id"),
        "task_id": str(field(row, "task_id")),
        "status": doc.get("status"),
        "nice_status": None if doc.get("nice_status") is None else str(doc["nice_status"]),
        "label": None if label is None else str(label),
        "bytes_transferred": _int(doc.get("bytes_transferred")),
        "files_transferred": _int(doc.get("files_transferred")),
        "is_ok": is_ok if isinstance(is_ok, bool) else None,
        "is_paused": doc.get("is_paused") is True,
        "faults": _int(doc.get("faults")),
    }


def follow(
    row: Any,
    doc: Mapping[str, Any],
    found: Iterable[ev.Event],
    *,
    now: float,
    stall_after: float | None,
    error: ev.TaskError | None = None,
    pause_message: str | None = None,
) -> tuple[list[ev.Event], str | None]:
    """The events to record for one observed task, and a cancel reason or None.

    ``row`` is the task's ledger row (a dict or a ``TaskRow``), ``doc`` its Globus document
    as observed, ``found`` what the diff (or the catch-up) made of it, ``error`` the newest
    error event when ``faults`` grew and ``pause_message`` the administrator's message when
    the task was just paused (both fetched by the caller). Every state and progress event
    gets the current ``needs_attention``; the last one that counts new faults gets
    ``error``; an episode's start adds ``task_needs_attention`` and its end
    ``task_recovered``. Finished tasks (in the ledger or in Globus) get nothing added.
    """
    events = list(found)
    if is_terminal(field(row, "status")) or is_terminal(doc.get("status")):
        return events, None
    moved = _int(doc.get("bytes_transferred")) != _int(field(row, "bytes_transferred")) or _int(
        doc.get("files_transferred")
    ) != _int(field(row, "files_transferred"))
    progress_time = now if moved else float(field(row, "progress_time") or now)
    # A delete moves no bytes or files the task document counts: it never "stalls".
    if field(row, "type") == "DELETE":
        stall_after = None
    reason = attention_reason(doc, progress_time=progress_time, now=now, stall_after=stall_after)
    faults = _int(doc.get("faults"))
    new_fault = faults > _int(field(row, "faults"))
    last_counting = max(
        (
            i
            for i, e in enumerate(events)
            if isinstance(e, ev.TaskStateChanged) and e.faults > _int(field(row, "faults"))
        ),
        default=None,
    )
    out: list[ev.Event] = []
    for index, event in enumerate(events):
        if isinstance(event, ev.TaskStateChanged):
            attach = error if index == last_counting else None
            event = dataclasses.replace(event, needs_attention=reason, error=attach)
        elif isinstance(event, ev.TaskProgress):
            event = dataclasses.replace(event, needs_attention=reason)
        out.append(event)
    before = field(row, "needs_attention")
    snapshot = _snapshot(doc, row)
    if before is None and reason is not None:
        out.append(
            ev.TaskNeedsAttention(
                **snapshot,
                needs_attention=reason,
                error=error if new_fault else None,
                attention_message=attention_message(
                    reason,
                    doc,
                    error=error,
                    pause_message=pause_message,
                    stall_after=stall_after,
                ),
            )
        )
        since: float | None = now
    elif before is not None and reason is None:
        started = field(row, "attention_since")
        seconds = max(0.0, now - float(started)) if started is not None else 0.0
        out.append(ev.TaskRecovered(**snapshot, after=before, seconds=seconds))
        since = None
    else:
        since = field(row, "attention_since") if reason is not None else None
        if reason is not None and since is None:
            since = now
    cancel = policy_cancel(
        _policy(row),
        faults=faults,
        error_code=_error_code(error) if new_fault and error else _error_code(field(row, "error")),
        trouble_since=since,
        now=now,
    )
    return out, cancel


def follow_batch(
    rows: Mapping[str, Any],
    docs: Iterable[Mapping[str, Any]],
    found: Iterable[ev.Event],
    *,
    now: float,
    stall_after: float | None,
    errors: Mapping[str, ev.TaskError],
    pauses: Mapping[str, str],
    cancelled: Set[str],
) -> tuple[list[ev.Event], list[tuple[str, str]]]:
    """:func:`follow` for every task of one batch: ``docs`` the documents of the tasks
    observed (recorded) now, ``found`` the batch's events, ``errors`` and ``pauses`` the
    details fetched. Returns the events to record (those of tasks not in ``docs`` as they
    were) and the (task_id, reason) pairs a policy cancels now, leaving out the tasks in
    ``cancelled`` (already cancelled by policy: never twice)."""
    by_task: dict[str | None, list[ev.Event]] = {}
    for event in found:
        by_task.setdefault(getattr(event, "task_id", None), []).append(event)
    out: list[ev.Event] = []
    cancels: list[tuple[str, str]] = []
    for doc in docs:
        task_id = str(doc["task_id"])
        events, reason = follow(
            rows[task_id],
            doc,
            by_task.pop(task_id, []),
            now=now,
            stall_after=stall_after,
            error=errors.get(task_id),
            pause_message=pauses.get(task_id),
        )
        out.extend(events)
        if reason is not None and task_id not in cancelled:
            cancels.append((task_id, reason))
    for rest in by_task.values():
        out.extend(rest)
    return out, cancels


_AT_MOST = re.compile(r"at most (\d+)", re.IGNORECASE)


def filter_refused(*, http_status: int | None, code: str | None, message: str | None) -> bool:
    """Whether Globus refused a ``task_list`` request because its filter names too many
    tasks. Globus documents no maximum for ``task_list`` (``endpoint_manager_task_list``
    documents 50 ids) nor the error it would give: a 400 that blames the filter, or a URL
    too long for a proxy (413/414), count."""
    if http_status in (413, 414):
        return True
    if http_status != 400:
        return False
    text = f"{code or ''} {message or ''}".lower()
    return "filter" in text


def smaller_batch(current: int, *, message: str | None) -> int:
    """The batch size to try after a refusal: the maximum the message names, if it names one
    below ``current``, else half; never below 1."""
    match = _AT_MOST.search(message or "")
    if match is not None:
        named = int(match.group(1))
        if 1 <= named < current:
            return named
    return max(1, current // 2)
