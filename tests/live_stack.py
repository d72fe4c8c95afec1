"""The live stack of the cross-layer tests: the daemon process, with the short intervals that
make "the daemon has caught up" a matter of a second, pointed at a simulator.

The module-scoped fixtures in ``tests/conftest.py`` start one of each per test module; a test
that needs its own daemon (a restart, other settings) calls ``start_daemon``.
"""

from __future__ import annotations

from pathlib import Path

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator

__all__ = ["DAEMON_ENV", "POLL", "RETRY", "start_daemon"]

POLL = 0.2
DAEMON_ENV = {
    # The browser's stream and the client's re-check their session at each heartbeat: a
    # revoked token's stream ends within one.
    "RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5",
    "RADICAL_ORBIT_MAX_BACKOFF": "1.5",
    "RADICAL_ORBIT_LOG_LEVEL": "info",
}
# The simulator retries a faulted task this often (simulated = real seconds here).
RETRY = 0.3


def start_daemon(state_dir: Path, sim: Simulator, **env: str) -> DaemonProcess:
    return DaemonProcess(
        state_dir=state_dir, env={**sim.environ(), **DAEMON_ENV, **env}, poll_interval=POLL
    ).start()
