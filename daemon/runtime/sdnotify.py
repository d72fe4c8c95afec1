"""Tell systemd how the daemon is doing: the ``sd_notify`` datagram protocol, no dependency.

systemd passes the path of an ``AF_UNIX`` datagram socket in ``NOTIFY_SOCKET`` (a leading
``@`` means the Linux abstract namespace). Each datagram carries newline-separated
``KEY=VALUE`` assignments. Outside systemd the variable is unset and every method here does
nothing, so the daemon calls it unconditionally.

How the daemon uses it (``Type=notify``, ``WatchdogSec=`` in the unit)::

    notifier = SystemdNotifier()
    ledger = await Ledger.open(path)                 # migrations may take long:
    ...                                              # notifier.extend_timeout(seconds=...)
    await server.start()                             # socket bound and listening
    notifier.ready(status=status_line(sessions=0, active_tasks=n, head_seq=await ledger.head()))
    watchdog = asyncio.create_task(watchdog_loop(notifier))
    ...                                              # each tick: notifier.status(status_line(...))
    notifier.stopping()                              # first thing on SIGTERM, before draining
    watchdog.cancel()

``READY=1`` goes out exactly once, after the ledger is open and the HTTP/WebSocket server
listens: systemd then orders dependent units after us and ``systemctl start`` returns.
``WATCHDOG=1`` must come from the event loop itself (``watchdog_loop``), never from a
thread, so that a blocked loop stops the pings and systemd restarts the service.

Sending never raises into the caller: a lost notification must not take the daemon down,
so failures are logged (once per failure streak) and the call returns ``False``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

__all__ = ["SystemdNotifier", "status_line", "watchdog_loop"]

log = structlog.stdlib.get_logger(__name__)

# A stuck service manager must not stall the event loop for long; the kernel queue of a
# datagram socket only fills up when systemd stops reading it.
_SEND_TIMEOUT = 0.5


def _socket_address(value: str | None) -> str | None:
    """The address to send to, or None when notifications are off or unsupported."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd >= 254 also hands out vsock: addresses (VMs); those need AF_VSOCK, which the
    # unit's RestrictAddressFamilies= forbids anyway.
    log.warning("sd_notify socket address not supported, notifications off", address=value)
    return None


def _watchdog_usec(environ: Mapping[str, str], *, pid: int) -> int | None:
    """WATCHDOG_USEC if the watchdog is on and meant for this process (WATCHDOG_PID)."""
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            log.warning("ignoring watchdog: WATCHDOG_PID is not a number", value=owner)
            return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring watchdog: WATCHDOG_USEC is not a number", value=raw)
        return None
    return usec if usec > 0 else None


def _one_line(text: str) -> str:
    # A newline would start a new assignment and could forge READY=1 or MAINPID=.
    return " ".join(text.splitlines())


def status_line(*, sessions: int, active_tasks: int, head_seq: int) -> str:
    """The STATUS= text shown by ``systemctl status``; one format for every caller."""
    return f"{sessions} sessions, {active_tasks} active tasks, ledger head {head_seq}"


class SystemdNotifier:
    """Sends state changes to the service manager; inert without ``NOTIFY_SOCKET``.

    ``environ`` defaults to ``os.environ`` (read once, here) and ``pid`` to ``os.getpid()``;
    both exist so tests can describe a service manager without touching the process.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None, pid: int | None = None):
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET"))
        self._watchdog_usec = _watchdog_usec(env, pid=os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._failing = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (NOTIFY_SOCKET is set and usable)."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True if it was handed over."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.settimeout(_SEND_TIMEOUT)
                self._socket = sock
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            if not self._failing:
                log.warning(
                    "sd_notify send failed",
                    message=assignments[0].partition("=")[0],
                    error=f"{type(exc).__name__}: {exc}",
                )
            self._failing = True
            return False
        if self._failing:
            log.info("sd_notify send works again")
            self._failing = False
        return True

    def ready(self, *, status: str | None = None) -> bool:
        """READY=1: the ledger is open and the server listens. Call once."""
        if status is None:
            return self.notify("READY=1")
        self._last_status = _one_line(status)
        return self.notify("READY=1", "STATUS=" + self._last_status)

    def status(self, text: str) -> bool:
        """STATUS=: free text for ``systemctl status`` (see ``status_line``).

        An unchanged text is not sent again, so the daemon may call this on every tick.
        """
        line = _one_line(text)
        if line == self._last_status:
            return True
        if self.notify("STATUS=" + line):
            self._last_status = line
            return True
        return False

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun; systemd stops expecting watchdog pings."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """RELOADING=1 before re-reading configuration; send ``ready()`` when done.

        MONOTONIC_USEC lets systemd >= 253 (``Type=notify-reload``) match the pair.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def extend_timeout(self, *, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC: a long step (migrations) needs this much more time."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}")

    def watchdog_ping(self) -> bool:
        """WATCHDOG=1: the event loop is alive. Use ``watchdog_loop`` rather than this."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is set."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def close(self) -> None:
        """Release the socket; later calls open a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def watchdog_loop(notifier: SystemdNotifier) -> None:
    """Ping the watchdog from this event loop until cancelled; returns at once if it is off.

    Run it as a task on the daemon's own loop: if a callback blocks the loop, the pings
    stop and systemd kills and restarts the service after WatchdogSec=.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    while True:
        notifier.watchdog_ping()
        await asyncio.sleep(interval)
