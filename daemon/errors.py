"""Errors raised by the endpoint daemon.

Hierarchy (every class carries the HTTP status and the error code it is answered with)::

    DaemonError                       500 InternalError
    ├── ConfigError (ValueError)      configuration that cannot be used (never answered)
    ├── BadRequest (ValueError)       400 BadRequest
    │   └── LocalCollectionUnknown    400 LocalCollectionNotConfigured
    ├── Unauthorized                  401 Unauthorized (daemon token missing or wrong)
    ├── NotFound (LookupError)        404 NotFound
    ├── CredentialMissing             401 CredentialMissing (session known, credential not)
    ├── CredentialExpired             401 CredentialExpired
    ├── CredentialRejected            401 CredentialRejected (refresh refused at register)
    ├── SubmitPending                 503 SubmitPending (recorded; the daemon keeps trying)
    ├── CancelPending                 503 CancelPending (recorded; the daemon keeps trying)
    └── GlobusError                   4xx/502, code from Globus (ConsentRequired, ...)

The message of each error says what to fix. No error ever carries a credential: they are
built from our own words and from Globus error codes/messages, which never echo tokens.
"""

from __future__ import annotations

from typing import Any

from ..protocol import ErrorCode

__all__ = [
    "BadRequest",
    "CancelPending",
    "ConfigError",
    "CredentialExpired",
    "CredentialMissing",
    "CredentialRejected",
    "DaemonError",
    "Forbidden",
    "GlobusError",
    "LocalCollectionUnknown",
    "NotFound",
    "SubmitPending",
    "Unauthorized",
]


class DaemonError(Exception):
    """Root of all daemon errors; ``status``/``code`` say how it is answered over HTTP."""

    status: int = 500
    code: str = ErrorCode.INTERNAL

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        # Extra JSON-able fields for the answer body (e.g. required_scopes).
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class ConfigError(DaemonError, ValueError):
    code = ErrorCode.CONFIG


class BadRequest(DaemonError, ValueError):
    status = 400
    code = ErrorCode.BAD_REQUEST


class LocalCollectionUnknown(BadRequest):
    code = ErrorCode.LOCAL_COLLECTION_UNKNOWN

    def __init__(self) -> None:
        super().__init__(
            'collection "local" was requested but no local collection is configured: pass '
            "local_collection when registering the session, start the daemon with "
            "--local-collection UUID (or RADICAL_ORBIT_GLOBUS_COLLECTION=UUID), run Globus "
            'Connect Personal, or write {"local_collection": "UUID"} to '
            "~/.radical/orbit/globus.json"
        )


class Unauthorized(DaemonError):
    status = 401
    code = ErrorCode.UNAUTHORIZED


class Forbidden(DaemonError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(DaemonError, LookupError):
    status = 404
    code = ErrorCode.NOT_FOUND


class CredentialMissing(DaemonError):
    status = 401
    code = ErrorCode.CREDENTIAL_MISSING

    def __init__(self, sid: str) -> None:
        super().__init__(
            f"session {sid} has no Globus credential in this daemon process (it restarted): "
            "register it again with POST /globus/sessions and "
            f'{{"sid": "{sid}", "access_token": ...}}; its tasks stay tracked',
            sid=sid,
        )


class CredentialExpired(DaemonError):
    status = 401
    code = ErrorCode.CREDENTIAL_EXPIRED

    def __init__(self, sid: str) -> None:
        super().__init__(
            f"the Globus credential of session {sid} expired or was revoked: register the "
            f'session again with POST /globus/sessions and {{"sid": "{sid}", ...}} holding a '
            "fresh access_token (or refresh_token + client_id); its tasks stay tracked",
            sid=sid,
        )


class CredentialRejected(DaemonError):
    status = 401
    code = ErrorCode.CREDENTIAL_REJECTED

    def __init__(self) -> None:
        super().__init__(
            "Globus refused the refresh token (expired, revoked or issued to another "
            "client_id): log in again and register the session with the new token"
        )


class SubmitPending(DaemonError):
    status = 503
    code = ErrorCode.SUBMIT_PENDING

    def __init__(self, submission_id: str, reason: str) -> None:
        super().__init__(
            f"the submission {submission_id} is recorded but Globus did not answer ({reason}); "
            "the daemon resubmits it with the same submission_id (Globus runs it at most "
            "once) and announces the task with a task_submitted event: do not resubmit",
            submission_id=submission_id,
        )


class CancelPending(DaemonError):
    status = 503
    code = ErrorCode.CANCEL_PENDING

    def __init__(self, task_id: str, reason: str) -> None:
        super().__init__(
            f"the cancel of task {task_id} is recorded but Globus did not answer ({reason}); "
            "the daemon keeps sending it and records the answer as a cancel_result event: "
            "no need to cancel again",
            task_id=task_id,
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
