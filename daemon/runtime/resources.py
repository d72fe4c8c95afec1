"""Process resources: the file descriptor limit, and logs about running out of resources.

Every connection costs a file descriptor, and the soft limit most shells and systemd hand
out is 1024 while the hard limit allows far more: the daemon raises its soft limit to the
hard one at start (no privilege needed) and sizes its connection cap below it.

When a limit is reached all the same, asyncio logs "socket.accept() out of system
resource" at every failed accept, which a flood turned into 119 MB of log in 52 s: the
loop's exception handler here passes resource errors at most once per ``interval`` per
message, with the count of those it held back.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import time
from collections.abc import Callable
from typing import Any

from .logs import get_logger
from .throttle import Throttle

__all__ = ["ResourceErrorLog", "connection_budget", "raise_nofile_limit"]

log = get_logger(__name__)

# Descriptors kept for everything but client connections: the ledger (db, wal, shm per
# connection), the Globus HTTP pools, logs, the lock, sd_notify, the executors' pipes.
RESERVED_FDS = 256
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def connection_budget(*, wanted: int, nofile: int) -> int:
    """Connections the daemon may hold open with ``nofile`` descriptors (at least 16)."""
    return max(16, min(wanted, nofile - RESERVED_FDS))


def _is_resource_error(context: dict[str, Any]) -> bool:
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return True
    return "out of system resource" in str(context.get("message", ""))


class ResourceErrorLog:
    """An asyncio exception handler: resource errors rate-limited, the rest as before."""

    def __init__(
        self, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._throttle = Throttle(interval=interval, clock=clock)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not _is_resource_error(context):
            loop.default_exception_handler(context)
            return
        message = str(context.get("message", "resource error"))
        held = self._throttle.allow(message)
        if held is None:
            return
        exc = context.get("exception")
        log.error(
            "out of a system resource",
            message=message,
            error=f"{type(exc).__name__}: {exc}" if exc is not None else None,
            held_back=held,
            interval=self._throttle.interval,
        )
