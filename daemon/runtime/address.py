"""Where the daemon listens, and keeping that address across restarts.

A client (a waiting ``task_wait``, an open event stream, a workflow's saved URL) holds the
daemon's URL; a daemon that came back on another port would strand it. So the port bound
at the first start is remembered in the state folder (file ``port``) and bound again at
every later start, unless one is configured. Each user's daemon still starts on a free
port the first time, so several daemons on one shared login node never fight over a fixed
default.

If the port to keep is taken, the start stops with a message saying so, or, with
``port_fallback``, takes a free port, remembers it and announces it in ``endpoint.json``,
which clients re-read when the old address stops answering.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DaemonError
from .private_files import write_private

__all__ = [
    "PORT_FILE",
    "Listening",
    "bind_tcp",
    "listen",
    "plan_port",
    "remember_port",
    "remembered_port",
]

PORT_FILE = "port"


def remembered_port(state_dir: Path) -> int | None:
    """The port an earlier start bound, or None (first start, or an unreadable file)."""
    try:
        text = (state_dir / PORT_FILE).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) <= 65535 else None


def remember_port(state_dir: Path, port: int) -> None:
    write_private(state_dir / PORT_FILE, f"{port}\n")


@dataclass(frozen=True)
class PortPlan:
    """The port to try and where that choice came from (for the messages)."""

    port: int
    origin: str  # "configured", "remembered" or "free"


def plan_port(*, configured: int | None, remembered: int | None) -> PortPlan:
    if configured is not None:
        return PortPlan(configured, "configured" if configured else "free")
    if remembered is not None:
        return PortPlan(remembered, "remembered")
    return PortPlan(0, "free")


@dataclass(frozen=True)
class Listening:
    sock: socket.socket
    port: int
    # Set when the port to keep was taken and a free one was taken instead.
    moved_from: int | None = None


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, for a server to listen on; OSError when the
    address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP, and without it Nagle + delayed ACKs added ~40 ms to every answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # SO_REUSEADDR: a restarted daemon binds its port again although connections of the
    # previous process linger in TIME_WAIT; a port another process listens on stays taken.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def listen(*, host: str, configured: int | None, state_dir: Path, fallback: bool) -> Listening:
    """Bind the port to keep (configured, else remembered, else any free one) and remember it.

    Raises DaemonError naming the port, where it came from and what to do when it is taken.
    """
    plan = plan_port(configured=configured, remembered=remembered_port(state_dir))
    try:
        sock = bind_tcp(host, plan.port)
        moved_from = None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or plan.port == 0:
            raise DaemonError(f"cannot listen on {host}:{plan.port}: {exc.strerror}") from None
        if not fallback:
            where = (
                f"remembered in {state_dir / PORT_FILE} from an earlier start"
                if plan.origin == "remembered"
                else "configured"
            )
            raise ConfigError(
                f"cannot listen on {host}:{plan.port} ({where}): another process uses that "
                "port. Stop it, choose another with --port N (RADICAL_ORBIT_PORT), or allow a "
                "free port with port_fallback = true (RADICAL_ORBIT_PORT_FALLBACK=1); clients "
                "then find the new one in endpoint.json"
            ) from None
        try:
            sock = bind_tcp(host, 0)
        except OSError as again:
            raise DaemonError(f"cannot listen on {host}: {again.strerror}") from None
        moved_from = plan.port
    port = int(sock.getsockname()[1])
    # An explicit 0 means "a free port at every start": nothing to keep.
    if configured != 0:
        remember_port(state_dir, port)
    return Listening(sock=sock, port=port, moved_from=moved_from)
