"""Errors raised by the endpoint daemon.

Hierarchy (every class carries the HTTP status and the error code it is answered with)::

    DaemonError                       500 InternalError
    ├── ConfigError (ValueError)      configuration that cannot be used (never answered; exit 2)
    ├── LedgerUnusable                the ledger file is damaged, empty or lost (never
    │                                 answered; the daemon does not start: exit 3)
    ├── BadRequest (ValueError)       400 BadRequest
    │   ├── LocalCollectionUnknown    400 LocalCollectionNotConfigured
    │   └── PayloadTooLarge           413 PayloadTooLarge (a submit over its byte budget)
    ├── Unauthorized                  401 Unauthorized (daemon token missing or wrong)
    ├── Forbidden                     403 Forbidden (a cross-site dashboard request)
    ├── NotFound (LookupError)        404 NotFound
    ├── MissingCredential             401 CredentialMissing (session known, credential not)
    ├── ExpiredCredential             401 CredentialExpired
    ├── RejectedCredential            401 CredentialRejected (refresh refused at register)
    ├── SubmitPending                 503 SubmitPending (recorded; the daemon keeps trying)
    ├── SubmitFailed                  409 SubmitFailed (a repeat of a submit Globus refused)
    ├── SubmissionIdConflict          409 SubmissionIdConflict (id used for another request)
    ├── QueueFull                     429 QueueFull (the session's admission queue is full)
    ├── CancelPending                 503 CancelPending (recorded; the daemon keeps trying)
    ├── StorageUnavailable            503 StorageUnavailable (the ledger cannot write: disk full)
    └── GlobusError                   4xx/502, code from Globus (ConsentRequired, ...)

The message of each error says what to fix. No error ever carries a credential: they are
built from our own words and from Globus error codes/messages, which never echo tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..protocol import ErrorCode

__all__ = [
    "BadRequest",
    "CancelPending",
    "ConfigError",
    "DaemonError",
    "ExpiredCredential",
    "Forbidden",
    "GlobusError",
    "LedgerUnusable",
    "LocalCollectionUnknown",
    "MissingCredential",
    "NotFound",
    "PayloadTooLarge",
    "QueueFull",
    "RejectedCredential",
    "StorageUnavailable",
    "SubmissionIdConflict",
    "SubmitFailed",
    "SubmitPending",
    "Unauthorized",
]


class DaemonError(Exception):
    """Root of all daemon errors; ``status``/``code`` say how it is answered over HTTP."""

    status: int = 500
    code: str = ErrorCode.INTERNAL
    # The daemon's exit status when this stops its start (docs/operations.md).
    exit_status: int = 2

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        # Extra JSON-able fields for the answer body (e.g. required_scopes).
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class _Explained(DaemonError):
    """An error raised with keyword values only: its message is ``template`` filled in with
    them, and those named in ``answered`` also go into the answer body."""

    template: ClassVar[str]
    answered: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values: Any) -> None:
        super().__init__(
            self.template.format(**values), **{name: values[name] for name in self.answered}
        )


class ConfigError(DaemonError, ValueError):
    code = ErrorCode.CONFIG


class LedgerUnusable(DaemonError):
    """The ledger cannot be used as it is; only an operator can say what to do with it.
    Its own exit status, so systemd does not restart into the same refusal."""

    exit_status = 3


class BadRequest(DaemonError, ValueError):
    status = 400
    code = ErrorCode.BAD_REQUEST


class LocalCollectionUnknown(BadRequest, _Explained):
    code = ErrorCode.LOCAL_COLLECTION_UNKNOWN
    template = (
        'collection "local" was requested but no local collection is configured: pass '
        "local_collection when registering the session (orbit-globus session register "
        "--local-collection UUID), start the daemon with "
        "--local-collection UUID (or RADICAL_ORBIT_GLOBUS_COLLECTION=UUID), run Globus "
        'Connect Personal, or write {{"local_collection": "UUID"}} to '
        "~/.radical/orbit/globus.json"
    )


class PayloadTooLarge(BadRequest):
    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE


class StorageUnavailable(DaemonError):
    """The ledger could not record something (disk full, I/O error); ``extra`` says what
    is known (e.g. the submission id and whether Globus has the task)."""

    status = 503
    code = ErrorCode.STORAGE_UNAVAILABLE


class Unauthorized(DaemonError):
    status = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(DaemonError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(DaemonError, LookupError):
    status = 404
    code = ErrorCode.NOT_FOUND


class MissingCredential(_Explained):
    status = 401
    code = ErrorCode.CREDENTIAL_MISSING
    answered = ("session_id",)
    template = (
        "session {session_id} has no Globus credential in this daemon process (it restarted): "
        "register it again (orbit-globus session register --session {session_id}, or POST "
        '/globus/sessions with {{"session_id": "{session_id}", "access_token": ...}}); '
        "its tasks stay tracked"
    )


class ExpiredCredential(_Explained):
    status = 401
    code = ErrorCode.CREDENTIAL_EXPIRED
    answered = ("session_id",)
    template = (
        "the Globus credential of session {session_id} expired or was revoked: register the "
        "session again with a fresh access_token (or refresh_token + client_id): "
        "orbit-globus session register --session {session_id}, or POST /globus/sessions with "
        '{{"session_id": "{session_id}", ...}}; its tasks stay tracked'
    )


class RejectedCredential(_Explained):
    status = 401
    code = ErrorCode.CREDENTIAL_REJECTED
    template = (
        "Globus refused the refresh token (expired, revoked or issued to another "
        "client_id): log in again and register the session with the new token"
    )


class SubmitPending(_Explained):
    status = 503
    code = ErrorCode.SUBMIT_PENDING
    answered = ("submission_id",)
    template = (
        "the submission {submission_id} is recorded but Globus did not answer ({reason}); "
        "the daemon resubmits it with the same submission_id (Globus runs it at most "
        "once) and announces the task with a task_submitted event: do not resubmit"
    )


class SubmitFailed(_Explained):
    status = 409
    code = ErrorCode.SUBMIT_FAILED
    answered = ("submission_id", "globus_code")
    template = (
        "the submission {submission_id} was refused by Globus earlier ({reason}); it will "
        "not be sent again: fix the request and submit it with a new submission_id"
    )


class SubmissionIdConflict(_Explained):
    """The same answer whoever used the id before (this token with another request, or
    another token): it tells nothing about the other request or its owner."""

    status = 409
    code = ErrorCode.SUBMISSION_ID_CONFLICT
    answered = ("submission_id",)
    template = (
        "submission_id {submission_id} was already used for a different request: a "
        "submission_id names one request; send a new one (or none: the daemon makes one)"
    )


class QueueFull(_Explained):
    status = 429
    code = ErrorCode.QUEUE_FULL
    answered = ("session_id", "limit")
    template = (
        "session {session_id} already has {limit} submits waiting for Globus (the daemon's "
        "admission_max_queued): wait for some to be sent (task_wait, or the "
        "submit_admitted notifications) and submit again, or raise admission_max_queued"
    )


class CancelPending(_Explained):
    status = 503
    code = ErrorCode.CANCEL_PENDING
    answered = ("task_id",)
    template = (
        "the cancel of task {task_id} is recorded but Globus did not answer ({reason}); "
        "the daemon keeps sending it and records the answer as a cancel_result event: "
        "no need to cancel again"
    )


class GlobusError(DaemonError):
    """A Globus API error, answered with a fitting status; ``globus_code`` is Globus's own."""

    code: str = ErrorCode.GLOBUS

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = ErrorCode.GLOBUS,
        globus_code: str | None,
        globus_status: int | None,
        **extra: Any,
    ) -> None:
        super().__init__(message, globus_code=globus_code, globus_status=globus_status, **extra)
        self.status = status
        self.code = code
