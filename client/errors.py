"""Exceptions raised by the orbit-globus client.

Hierarchy::

    OrbitError                      root: catch this to catch everything below
    ├── ConfigurationError          no daemon URL or token could be found (also ValueError)
    │   └── NoSessionError          a session route was called before register_session
    ├── ArgumentError               an argument cannot be sent as given (also ValueError)
    ├── DaemonUnavailable           the daemon could not be reached (also ConnectionError)
    ├── ProtocolError               the daemon answered something that is not its API
    ├── RequestError                the daemon answered with an HTTP error status
    │   ├── BadRequestError         400 / 422: the request needs fixing (also ValueError)
    │   ├── AuthenticationError     401: daemon token or Globus credential rejected
    │   │   └── ConsentRequiredError    Globus wants consent for more scopes
    │   ├── PermissionDeniedError   403
    │   ├── NotFoundError           404: session, task, path or endpoint unknown (also LookupError)
    │   ├── ConflictError           409
    │   ├── RateLimitedError        429
    │   ├── GlobusError             502 / 503 / 504: Globus failed behind the daemon
    │   └── SubmitPendingError      503 SubmitPending: recorded, the daemon keeps submitting
    ├── TaskFailed                  task_wait(raise_on_failure=True) saw the task fail
    ├── TaskNeedsAttention          task_wait(stop_on_attention=True) saw the task in trouble
    └── TaskWaitTimeout             task_wait ran out of time (also TimeoutError)

Every :class:`RequestError` carries the daemon's ``status``, ``code`` and ``message`` and the
whole error document in ``info``. :func:`error_from_response` is the one place where an HTTP
error answer becomes one of these classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .trouble import trouble_text

__all__ = [
    "ArgumentError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "ConsentRequiredError",
    "DaemonUnavailable",
    "GlobusError",
    "NoSessionError",
    "NotFoundError",
    "OrbitError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "RequestError",
    "SubmitPendingError",
    "TaskFailed",
    "TaskNeedsAttention",
    "TaskWaitTimeout",
    "error_from_response",
]


class OrbitError(Exception):
    """Root of every exception the client raises on purpose."""


class ConfigurationError(OrbitError, ValueError):
    """The daemon's URL or token was not given and could not be discovered."""


class NoSessionError(ConfigurationError):
    """A session route was called on a GlobusClient that has no session yet."""


class ArgumentError(OrbitError, ValueError):
    """An argument is unusable before anything is sent (wrong type or value)."""


class DaemonUnavailable(OrbitError, ConnectionError):
    """The daemon did not answer: not running, wrong URL, or the connection broke."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"orbit daemon at {self.url} is unreachable: {self.reason}"


class ProtocolError(OrbitError):
    """The daemon's answer could not be understood (not JSON, wrong shape)."""


class RequestError(OrbitError):
    """The daemon answered a request with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.info: dict[str, Any] = dict(info or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class BadRequestError(RequestError, ValueError):
    """400 or 422: the request is malformed; the message says what to fix."""


class AuthenticationError(RequestError):
    """401: the daemon token, or the session's Globus credential, was rejected."""


class ConsentRequiredError(AuthenticationError):
    """Globus needs the user to consent to more scopes before it can act."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        required_scopes: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, info=info)
        self.required_scopes = list(required_scopes)

    def __str__(self) -> str:
        text = super().__str__()
        if not self.required_scopes:
            return text
        scopes = " ".join(self.required_scopes)
        return (
            f"{text} -- consent to these scopes, then register the session again with the"
            f" new token: {scopes} (for example: globus session consent '{scopes}')"
        )


class PermissionDeniedError(RequestError):
    """403: the credential is valid but may not do this."""


class NotFoundError(RequestError, LookupError):
    """404: no such session, task, endpoint or path (for this daemon token)."""


class ConflictError(RequestError):
    """409: the request conflicts with the current state."""


class RateLimitedError(RequestError):
    """429: too many requests; ``retry_after`` is the daemon's hint in seconds, if any."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, info=info)
        self.retry_after = retry_after


class GlobusError(RequestError):
    """502/503/504: Globus (or the path to it) failed; ``code`` is Globus's code."""


class SubmitPendingError(RequestError):
    """503 SubmitPending: the daemon recorded the submission but Globus has not answered yet.

    The daemon resubmits with the same ``submission_id`` (Globus runs it once) and announces
    the task with a ``task_submitted`` event: do not submit again.
    """

    @property
    def submission_id(self) -> str | None:
        value = self.info.get("submission_id")
        return value if isinstance(value, str) else None


class TaskFailed(OrbitError):
    """The awaited task ended FAILED; ``task`` is its final row."""

    def __init__(self, task: Mapping[str, Any]) -> None:
        super().__init__(task.get("task_id"))
        self.task: dict[str, Any] = dict(task)

    def __str__(self) -> str:
        fatal = self.task.get("fatal_error") or {}
        detail = ""
        if isinstance(fatal, Mapping) and fatal:
            detail = f": {fatal.get('code', '')} {fatal.get('description', '')}".rstrip()
        return f"task {self.task.get('task_id')} FAILED{detail}"


class TaskWaitTimeout(OrbitError, TimeoutError):
    """task_wait's timeout passed before the task finished; ``task`` is its last known row."""

    def __init__(self, task_id: str, timeout: float, task: Mapping[str, Any] | None) -> None:
        super().__init__(task_id, timeout)
        self.task_id = task_id
        self.timeout = timeout
        self.task: dict[str, Any] | None = dict(task) if task is not None else None

    def __str__(self) -> str:
        status = self.task.get("status") if self.task else "unknown"
        why = trouble_text(self.task) if self.task else ""
        nice = self.task.get("nice_status") if self.task else None
        if not why and nice not in (None, "OK"):
            why = str(nice)
        return f"task {self.task_id} still {status} after {self.timeout:g} s" + (
            f": {why}" if why else ""
        )


class TaskNeedsAttention(OrbitError):
    """task_wait stopped early: the task is not done and needs attention (``reason``:
    erroring, paused, inactive or stalled); ``task`` is its row."""

    def __init__(self, task_id: str, task: Mapping[str, Any]) -> None:
        super().__init__(task_id)
        self.task_id = task_id
        self.task: dict[str, Any] = dict(task)
        self.reason = str(task.get("needs_attention") or "")

    def __str__(self) -> str:
        why = trouble_text(self.task) or str(self.task.get("attention_message") or "")
        return f"task {self.task_id} needs attention ({self.reason})" + (f": {why}" if why else "")


_BY_STATUS: dict[int, type[RequestError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitedError,
    502: GlobusError,
    503: GlobusError,
    504: GlobusError,
}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _message_of(document: Mapping[str, Any], fallback: str) -> str:
    message = document.get("message")
    if isinstance(message, str) and message:
        return message
    # FastAPI validation errors arrive as {"detail": [...]} or {"detail": "text"}.
    detail = document.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
        if parts:
            return "; ".join(parts)
    return fallback


def error_from_response(
    status: int, document: Any, *, headers: Mapping[str, str] | None = None, reason: str = ""
) -> RequestError:
    """Build the exception for an HTTP error answer of the daemon.

    ``document`` is the decoded JSON body (or anything else when the body was not JSON).
    """
    doc: Mapping[str, Any] = document if isinstance(document, Mapping) else {}
    code = doc.get("error") or doc.get("code") or reason or f"HTTP{status}"
    code = str(code)
    message = _message_of(doc, reason or f"HTTP status {status}")
    scopes = doc.get("required_scopes")
    globus_code = str(doc.get("globus_code") or "")
    if "ConsentRequired" in (code + globus_code) or (isinstance(scopes, list) and scopes):
        return ConsentRequiredError(
            status,
            code,
            message,
            required_scopes=[str(s) for s in scopes] if isinstance(scopes, list) else [],
            info=doc,
        )
    if code == "SubmitPending":
        return SubmitPendingError(status, code, message, info=doc)
    if status == 429:
        return RateLimitedError(
            status, code, message, retry_after=_retry_after(headers or {}), info=doc
        )
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = GlobusError if status >= 500 else RequestError
    return cls(status, code, message, info=doc)
