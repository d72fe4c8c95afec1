"""orbit-globus: an endpoint daemon that orchestrates Globus transfers.

The client API lives here (``from radical.orbit import BridgeClient``); the daemon,
ledger and Globus simulator are the subpackages ``radical.orbit.daemon``,
``radical.orbit.ledger`` and ``radical.orbit.simulator``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from radical.orbit.client import (
    ArgumentError,
    AsyncEventStream,
    AsyncGlobusClient,
    AsyncSubscription,
    AuthenticationError,
    BadRequestError,
    BridgeClient,
    ConfigurationError,
    ConflictError,
    ConsentRequiredError,
    DaemonUnavailable,
    EndpointClient,
    EventStream,
    GlobusClient,
    GlobusError,
    NoSessionError,
    NotFoundError,
    OrbitError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RequestError,
    StreamClosed,
    SubmitPendingError,
    Subscription,
    TaskFailed,
    TaskWaitTimeout,
)
from radical.orbit.client import errors as errors

__all__ = [
    "ArgumentError",
    "AsyncEventStream",
    "AsyncGlobusClient",
    "AsyncSubscription",
    "AuthenticationError",
    "BadRequestError",
    "BridgeClient",
    "ConfigurationError",
    "ConflictError",
    "ConsentRequiredError",
    "DaemonUnavailable",
    "EndpointClient",
    "EventStream",
    "GlobusClient",
    "GlobusError",
    "NoSessionError",
    "NotFoundError",
    "OrbitError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitedError",
    "RequestError",
    "StreamClosed",
    "SubmitPendingError",
    "Subscription",
    "TaskFailed",
    "TaskWaitTimeout",
    "__version__",
    "errors",
]
