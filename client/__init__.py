"""Client of the orbit endpoint daemon: library, event stream with replay, and CLI.

Start with :class:`BridgeClient`::

    bc = BridgeClient()                      # finds the local daemon and its token
    globus = bc.get_endpoint_client(bc.list_endpoints()[0]).get_plugin("globus")
    globus.register_session(access_token="...")

:class:`GlobusClient` blocks; :class:`AsyncGlobusClient` is its asyncio twin. Errors are in
:mod:`radical.orbit.client.errors`, all under :class:`OrbitError`.
"""

from __future__ import annotations

from .aio import AsyncGlobusClient
from .async_stream import AsyncEventStream, AsyncSubscription
from .bridge import BridgeClient, EndpointClient
from .errors import (
    ArgumentError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConsentRequiredError,
    DaemonUnavailable,
    GlobusError,
    NoSessionError,
    NotFoundError,
    OrbitError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RequestError,
    SubmitPendingError,
    TaskFailed,
    TaskNeedsAttention,
    TaskWaitTimeout,
)
from .globus import GlobusClient
from .stream import StreamClosed
from .sync_stream import EventStream, Subscription

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
    "TaskNeedsAttention",
    "TaskWaitTimeout",
]
