"""Constants and helpers shared by the client tests (imported by conftest and the tests)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from radical.orbit.client.cli import main
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials

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


class Cli:
    """Runs main(argv) in-process with the daemon's URL/token in the environment."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, daemon: DaemonProcess, user: Credentials):
        monkeypatch.setenv("RADICAL_ORBIT_URL", daemon.url)
        monkeypatch.setenv("RADICAL_ORBIT_TOKEN", daemon.token)
        monkeypatch.setenv("GLOBUS_ACCESS_TOKEN", user.access_token)
        for name in ("RADICAL_ORBIT_SESSION", "GLOBUS_REFRESH_TOKEN", "GLOBUS_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)
        self.session: str | None = None

    def run(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        # "--session=SID": a session id may start with "-", which argparse would take for
        # an option in "--session SID".
        prefix = [f"--session={self.session}"] if self.session else []
        code = main([*prefix, *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def json(self, *argv: str) -> Any:
        code, out, err = self.run("--format", "json", *argv)
        assert code == 0, err
        return json.loads(out)
