"""Constants and helpers shared by the client tests (imported by conftest and the tests)."""

from __future__ import annotations

from pathlib import Path

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

SRC = TUTORIAL_COLLECTION_1
DST = TUTORIAL_COLLECTION_2
GODATA = "/home/share/godata/"
# Slow enough that a 1 MB file takes seconds (to cancel, to see progress), fast enough that
# the 141-byte godata folder lands at once.
BYTES_PER_SECOND = 200_000.0
DAEMON_ENV = {"RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5", "RADICAL_ORBIT_LOG_LEVEL": "warning"}


def start_daemon(sim: Simulator, state_dir: Path, **env: str) -> DaemonProcess:
    return DaemonProcess(
        state_dir=state_dir, env={**sim.environ(), **DAEMON_ENV, **env}, poll_interval=0.2
    ).start()


def godata_items(dest: str = "/~/out/") -> list[dict[str, object]]:
    return [{"source": GODATA, "destination": dest, "recursive": True}]
