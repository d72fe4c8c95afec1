"""Errors raised by the bridge.

Hierarchy (every class carries the HTTP status and the error code it is answered with)::

    BridgeError                         500 InternalError
    ├── ConfigError (ValueError)        configuration that cannot be used (never answered)
    ├── BadRequest (ValueError)         400 BadRequest
    ├── Unauthorized                    401 Unauthorized (client or enrollment token wrong)
    ├── Forbidden                       403 Forbidden (a dashboard request from another site)
    ├── EndpointNotFound (LookupError)  404 EndpointNotFound (unknown, or not for this token)
    ├── EndpointOffline                 503 EndpointOffline (enrolled, not connected now)
    ├── RelayTimeout (TimeoutError)     504 RelayTimeout (the endpoint did not answer in time)
    └── ProtocolViolation               a link peer sent a frame that breaks the protocol

Messages say what to fix and name the endpoint; none carries a token or a request body
(which may hold a Globus credential in transit).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "BridgeError",
    "ConfigError",
    "EndpointNotFound",
    "EndpointOffline",
    "Forbidden",
    "ProtocolViolation",
    "RelayTimeout",
    "Unauthorized",
]


class BridgeError(Exception):
    """Root of all bridge errors; ``status``/``code`` say how it is answered over HTTP."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class ConfigError(BridgeError, ValueError):
    code = "ConfigError"


class BadRequest(BridgeError, ValueError):
    status = 400
    code = "BadRequest"


class Unauthorized(BridgeError):
    status = 401
    code = "Unauthorized"


class Forbidden(BridgeError):
    status = 403
    code = "Forbidden"


class EndpointNotFound(BridgeError, LookupError):
    status = 404
    code = "EndpointNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no endpoint {name!r} for this token; GET /endpoints lists the ones it may use",
            endpoint=name,
        )


class EndpointOffline(BridgeError):
    status = 503
    code = "EndpointOffline"

    def __init__(self, name: str, detail: str = "it is not connected to the bridge") -> None:
        super().__init__(f"endpoint {name!r} is offline: {detail}; retry later", endpoint=name)


class RelayTimeout(BridgeError, TimeoutError):
    status = 504
    code = "RelayTimeout"

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(f"endpoint {name!r} did not answer within {seconds:g} s", endpoint=name)


class ProtocolViolation(BridgeError):
    code = "ProtocolViolation"
