"""The daemon's HTTP API as data: one function per route, and one answer decoder.

Nothing here does I/O. Each function returns a :class:`Call` (method, path, query, JSON
body); the sync and async clients send it with their own HTTP library and hand the answer to
:func:`decode_answer`, so both flavours share every route, every parameter rule and the error
translation, and differ only in how bytes move.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from ..protocol import BATCH_PARAM, ErrorCode, is_terminal
from .errors import (
    ArgumentError,
    AuthenticationError,
    DaemonUnavailable,
    NoSessionError,
    ProtocolError,
    RequestError,
    SubmitPendingError,
    TaskFailed,
    TaskNeedsAttention,
    TaskWaitTimeout,
    error_from_response,
)

__all__ = [
    "Call",
    "Credential",
    "cancel_task",
    "credential_error",
    "decode_answer",
    "delete",
    "endpoint_search",
    "finish_wait",
    "generate_submission_id",
    "get_endpoint",
    "get_session",
    "get_task",
    "history",
    "history_page",
    "list_endpoints",
    "list_of",
    "list_sessions",
    "list_tasks",
    "ls",
    "mkdir",
    "needs_credential_again",
    "poll_call",
    "polled_row",
    "register_session",
    "rename",
    "retry_delays",
    "retry_submit",
    "stops_wait",
    "submit_transfer",
    "task_events",
    "task_of",
    "task_row",
    "task_wait",
    "transfer_options",
    "unregister_session",
    "websocket_url",
]

# The wait route holds the request open for up to its timeout; the HTTP read timeout must
# outlast it by this much so a slow answer is not mistaken for a dead daemon.
WAIT_GRACE_SECONDS = 10.0

Query = dict[str, str | int | float]


@dataclass(frozen=True)
class Call:
    """One HTTP request to the daemon, before any I/O."""

    method: str
    path: str
    params: Query = field(default_factory=dict)
    body: dict[str, Any] | None = None
    # None: the client's default timeout applies.
    read_timeout: float | None = None


def _seg(value: str) -> str:
    """Quote a path segment so a task id or path can never escape its place in the route."""
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"expected a non-empty string, got {value!r}")
    quoted = quote(value, safe="")
    # "." and ".." would be removed as dot segments by URL normalisation.
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _session(session_id: str | None) -> str:
    if not session_id:
        raise NoSessionError(
            "this GlobusClient has no session: call register_session(...) first, or pass"
            " session_id= for a session registered earlier"
        )
    return f"/globus/sessions/{_seg(session_id)}"


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _epoch(value: datetime | str | float | None) -> float | None:
    """Seconds since the epoch, as the history route wants; naive datetimes are UTC."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ArgumentError(
                f"{value!r} is not a time: give a datetime, epoch seconds or ISO 8601 text"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ArgumentError(f"{value!r} is not a time: give a datetime, epoch seconds or ISO text")


def list_endpoints() -> Call:
    return Call("GET", "/endpoints")


def dashboard_link() -> Call:
    return Call("POST", "/dashboard/api/link")


def register_session(
    *,
    access_token: str | None,
    refresh_token: str | None,
    client_id: str | None,
    local_collection: str | None,
    session_id: str | None,
    policy: Mapping[str, Any] | None = None,
) -> Call:
    body = _drop_none(
        {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "client_id": client_id,
            "local_collection": local_collection,
            "session_id": session_id,
            "policy": dict(policy) if policy else None,
        }
    )
    return Call("POST", "/globus/sessions", body=body)


def list_sessions() -> Call:
    return Call("GET", "/globus/sessions")


def get_session(session_id: str | None) -> Call:
    return Call("GET", _session(session_id))


def credential_error(session_id: str, state: str) -> AuthenticationError:
    """What a waiter raises when the daemon holds no working credential for its session:
    its tasks are not followed, so waiting longer cannot end well."""
    why = (
        "has no Globus credential in the daemon (the daemon restarted)"
        if state == "missing"
        else "has an expired or revoked Globus credential"
    )
    code = "CredentialMissing" if state == "missing" else "CredentialExpired"
    return AuthenticationError(
        401,
        code,
        f"session {session_id} {why}, so the daemon is not following its tasks: register it again"
        f" with a fresh credential (orbit-globus session register --session {session_id} with"
        " GLOBUS_ACCESS_TOKEN, or GLOBUS_REFRESH_TOKEN and GLOBUS_CLIENT_ID, set; in Python"
        f" register_session(..., session_id='{session_id}')); its tasks stay tracked",
        info={"session_id": session_id, "credential": state},
    )


def unregister_session(session_id: str | None) -> Call:
    return Call("DELETE", _session(session_id))


def _items(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(items, Mapping | str | bytes):
        raise ArgumentError("items must be a list of {'source', 'destination', 'recursive'} dicts")
    return [dict(item) for item in items]


def submit_transfer(
    session_id: str | None,
    *,
    source: str,
    destination: str,
    items: Iterable[Mapping[str, Any]],
    label: str | None,
    sync_level: str | int | None,
    options: Mapping[str, Any],
    submission_id: str | None = None,
) -> Call:
    body = _drop_none(
        {
            "source": source,
            "destination": destination,
            "items": _items(items),
            "label": label,
            "sync_level": sync_level,
            **options,
            "submission_id": submission_id,
        }
    )
    return Call("POST", f"{_session(session_id)}/transfers", body=body)


def transfer_options(
    *,
    verify_checksum: bool | None,
    preserve_timestamp: bool | None,
    deadline: datetime | str | None,
    policy: Mapping[str, Any] | None = None,
    skip_source_errors: bool | None = None,
) -> dict[str, Any]:
    """The optional transfer fields (None: the daemon's default), as submit_transfer sends them;
    ``policy`` is a trouble policy (:func:`.trouble.policy_body`)."""
    return {
        "verify_checksum": verify_checksum,
        "preserve_timestamp": preserve_timestamp,
        "deadline": deadline.isoformat() if isinstance(deadline, datetime) else deadline,
        "policy": dict(policy) if policy else None,
        "skip_source_errors": skip_source_errors,
    }


def delete(
    session_id: str | None,
    *,
    collection: str,
    paths: Sequence[str] | str,
    recursive: bool,
    label: str | None,
    policy: Mapping[str, Any] | None = None,
    submission_id: str | None = None,
) -> Call:
    # A lone string is one path, not a sequence of one-letter paths.
    path_list = [paths] if isinstance(paths, str) else list(paths)
    body = _drop_none(
        {
            "collection": collection,
            "paths": path_list,
            "recursive": recursive,
            "label": label,
            "policy": dict(policy) if policy else None,
            "submission_id": submission_id,
        }
    )
    return Call("POST", f"{_session(session_id)}/deletes", body=body)


def generate_submission_id(session_id: str | None) -> Call:
    """A fresh submission id from the daemon (which makes it, or asks Globus for one)."""
    return Call("GET", f"{_session(session_id)}/submission_id")


def retry_submit(exc: BaseException) -> bool:
    """Whether a submit that failed with ``exc`` may be sent again with the same
    submission_id: the daemon was unreachable (down, restarting, the connection broke or
    timed out), answered SubmitPending (recorded, Globus has not answered yet) or 503
    StorageUnavailable (its ledger cannot write now, e.g. a full disk; docs/operations.md).
    The daemon answers a known submission_id from its ledger, so a repeat never submits
    twice."""
    if isinstance(exc, RequestError) and exc.code == ErrorCode.STORAGE_UNAVAILABLE:
        return True
    return isinstance(exc, DaemonUnavailable | SubmitPendingError)


def retry_delays(*, first: float = 0.2, factor: float = 2.0, cap: float = 5.0) -> Iterator[float]:
    """Seconds to sleep before each retry of a submit: 0.2, 0.4, ... up to ``cap``."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def poll_call(
    session_id: str | None,
    task_id: str,
    deadline: float,
    polling_interval: float,
    *,
    stop_on_attention: bool,
) -> Call | None:
    """The next request of a polling task_wait: the wait route for what is left of
    ``polling_interval`` before ``deadline`` (None: the deadline passed)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    wait = max(0.0, min(polling_interval, remaining))
    return task_wait(session_id, task_id, timeout=wait, stop_on_attention=stop_on_attention)


def polled_row(
    answer: Mapping[str, Any], *, stop_on_attention: bool, until_task: bool
) -> dict[str, Any] | None:
    """The row that ends a polling wait, from one wait-route answer (None: ask again).
    ``until_task``: a submission id's wait ends once Globus gave it a task id."""
    if answer.get("done") or stops_wait(answer, stop_on_attention=stop_on_attention):
        return task_row(answer)
    if until_task and task_of(answer) is not None:
        return task_row(answer)
    return None


def task_of(row: Mapping[str, Any]) -> str | None:
    """The task id of a get_task/wait answer (None: a submit without a task yet)."""
    task_id = row.get("task_id")
    return task_id if isinstance(task_id, str) and task_id else None


def get_task(session_id: str | None, task_id: str) -> Call:
    return Call("GET", f"{_session(session_id)}/tasks/{_seg(task_id)}")


def task_wait(
    session_id: str | None, task_id: str, *, timeout: float, stop_on_attention: bool = False
) -> Call:
    body: dict[str, Any] = {"timeout": timeout}
    if stop_on_attention:
        body["stop_on_attention"] = True
    return Call(
        "POST",
        f"{_session(session_id)}/tasks/{_seg(task_id)}/wait",
        body=body,
        read_timeout=timeout + WAIT_GRACE_SECONDS,
    )


def task_events(session_id: str | None, task_id: str, *, limit: int, offset: int) -> Call:
    """Globus's own event list of a task, relayed by the daemon (newest first)."""
    return Call(
        "GET",
        f"{_session(session_id)}/tasks/{_seg(task_id)}/events",
        params={"limit": limit, "offset": offset},
    )


def cancel_task(session_id: str | None, task_id: str) -> Call:
    return Call("POST", f"{_session(session_id)}/tasks/{_seg(task_id)}/cancel")


def list_tasks(session_id: str | None, *, limit: int, offset: int, status: str | None) -> Call:
    params: Query = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    return Call("GET", f"{_session(session_id)}/tasks", params=params)


def ls(session_id: str | None, *, collection: str, path: str | None) -> Call:
    params: Query = {"collection": collection}
    if path is not None:
        params["path"] = path
    return Call("GET", f"{_session(session_id)}/ls", params=params)


def mkdir(session_id: str | None, *, collection: str, path: str) -> Call:
    return Call(
        "POST", f"{_session(session_id)}/mkdir", body={"collection": collection, "path": path}
    )


def rename(session_id: str | None, *, collection: str, oldpath: str, newpath: str) -> Call:
    body = {"collection": collection, "oldpath": oldpath, "newpath": newpath}
    return Call("POST", f"{_session(session_id)}/rename", body=body)


def endpoint_search(session_id: str | None, *, filter_text: str | None, limit: int) -> Call:
    params: Query = {"limit": limit}
    if filter_text:
        params["filter_text"] = filter_text
    return Call("GET", f"{_session(session_id)}/endpoint_search", params=params)


def get_endpoint(session_id: str | None, collection: str) -> Call:
    return Call("GET", f"{_session(session_id)}/endpoints/{_seg(collection)}")


def history(
    *,
    session_id: str | None,
    task_id: str | None,
    status: str | None,
    label: str | None,
    since: datetime | str | float | None,
    until: datetime | str | float | None,
    after: int | None,
    limit: int | None,
    offset: int | None = None,
    view: str,
) -> Call:
    if view not in ("events", "tasks"):
        raise ArgumentError(f"view must be 'events' or 'tasks', not {view!r}")
    raw = {
        "session_id": session_id,
        "task_id": task_id,
        "status": status,
        "label": label,
        "since": _epoch(since),
        "until": _epoch(until),
        "after": after,
        "limit": limit,
        "offset": offset,
        "view": view,
    }
    return Call("GET", "/globus/history", params=_drop_none(raw))


def websocket_url(
    base_url: str,
    *,
    since: int | None,
    session_id: str | None,
    task_id: str | None,
    topic: str | None,
    batch: bool = False,
) -> str:
    """The ``/ws`` URL for a stream resuming after ``since`` with the given filters;
    ``batch`` asks for the replay in batch messages (``radical.orbit.protocol.BATCH_TYPE``)."""
    if base_url.startswith("https://"):
        ws_base = "wss://" + base_url[len("https://") :]
    elif base_url.startswith("http://"):
        ws_base = "ws://" + base_url[len("http://") :]
    else:
        ws_base = base_url
    query = _drop_none(
        {
            "since": since,
            "session_id": session_id,
            "task_id": task_id,
            "topic": topic,
            BATCH_PARAM: 1 if batch else None,
        }
    )
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{ws_base.rstrip('/')}/ws{suffix}"


def decode_answer(
    call: Call, status: int, content: bytes, *, headers: Mapping[str, str] | None = None
) -> Any:
    """Return the answer's JSON document, or raise the :mod:`errors` class its status calls for."""
    try:
        document: Any = json.loads(content) if content else None
    except ValueError:
        document = None
        if status < 400:
            raise ProtocolError(
                f"{call.method} {call.path}: the daemon answered {status} with a body that is"
                " not JSON; is the URL really an orbit daemon?"
            ) from None
    if status >= 400:
        raise error_from_response(status, document, headers=headers)
    if status == 204 or document is None:
        return {}
    return document


class Credential:
    """A Globus credential the client keeps in memory to re-register its session.

    A daemon that restarted has the session (its ledger remembers it) but not the
    credential (only ever in memory); the client hands it over again. Never shown by repr.
    """

    __slots__ = ("_fields",)

    def __init__(self, **fields: str | None) -> None:
        self._fields = {k: v for k, v in fields.items() if v is not None}

    def __repr__(self) -> str:
        return f"Credential({', '.join(sorted(self._fields))}: <hidden>)"

    def register(self, session_id: str | None) -> Call:
        return register_session(
            access_token=self._fields.get("access_token"),
            refresh_token=self._fields.get("refresh_token"),
            client_id=self._fields.get("client_id"),
            local_collection=None,
            session_id=session_id,
        )


def needs_credential_again(exc: RequestError, call: Call) -> bool:
    """Whether ``exc`` says the daemon lost the session's credential (it restarted)."""
    return exc.code == "CredentialMissing" and call.path != "/globus/sessions"


def list_of(document: Any, key: str) -> list[dict[str, Any]]:
    values = document.get(key) if isinstance(document, Mapping) else None
    if not isinstance(values, list):
        raise ProtocolError(f"the daemon's answer has no {key!r} list")
    return values


def history_page(page: Any) -> tuple[list[dict[str, Any]], int | None]:
    """The events of one history page and the ``after`` of the next (None: that was the last)."""
    events = list_of(page, "events")
    after = page.get("next_after")
    return events, (after if events and after is not None else None)


def task_row(document: Any) -> dict[str, Any]:
    row = dict(document)
    row.pop("done", None)
    return row


def stops_wait(row: Mapping[str, Any], *, stop_on_attention: bool) -> bool:
    """Whether task_wait is over for a row or a notification's data."""
    if is_terminal(row.get("status")):
        return True
    return stop_on_attention and row.get("needs_attention") is not None


def finish_wait(
    row: dict[str, Any],
    task_id: str,
    timeout: float,
    *,
    raise_on_failure: bool,
    stop_on_attention: bool = False,
) -> dict[str, Any]:
    """The end of task_wait, shared by both flavours: a finished row, or the fitting error."""
    if not is_terminal(row.get("status")):
        if stop_on_attention and row.get("needs_attention") is not None:
            raise TaskNeedsAttention(task_id, row)
        raise TaskWaitTimeout(task_id, timeout, row)
    if raise_on_failure and row.get("status") == "FAILED":
        raise TaskFailed(row)
    return row
