"""examples/example_globus.py against the simulator, and the README's demo end to end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from client_helpers import DST, SRC

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_globus", EXAMPLES / "example_globus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_defaults_are_the_globus_tutorial_collections() -> None:
    cfg = load_example().settings({})
    assert cfg["source"] == SRC == "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"
    assert cfg["destination"] == DST == "31ce9ba0-176d-45a5-add3-f37d233ba47d"
    assert cfg["source_path"] == "/home/share/godata/"
    assert cfg["destination_path"] == "/~/endpoint-globus-demo/"


def test_example_runs_against_the_daemon(
    daemon: DaemonProcess,
    sim: Simulator,
    user: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {
        "RADICAL_ORBIT_URL": daemon.url,
        "RADICAL_ORBIT_TOKEN": daemon.token,
        "GLOBUS_ACCESS_TOKEN": user.access_token,
        "ORBIT_EXAMPLE_DST_PATH": "/~/example-out/",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_example().main() == 0
    out = capsys.readouterr().out
    assert "submitted task" in out
    assert "SUCCEEDED" in out and "(task_state_changed)" in out
    assert "file1.txt" in out.split("destination ")[-1]
    landed = sim.local_path(DST, "/~/example-out/", username=user.username)
    assert sorted(p.name for p in landed.iterdir()) == ["file1.txt", "file2.txt", "file3.txt"]


def test_demo_runs_end_to_end_in_under_a_minute(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RADICAL_ORBIT_", "GLOBUS_"))}
    env["HOME"] = str(tmp_path)  # a fresh user: no daemon state, no Globus config
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90 * UNIT,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 60
    lines = done.stdout.splitlines()
    progress = [line for line in lines if "(task_progress)" in line]
    assert len(progress) >= 3, done.stdout  # progress was visible along the way
    assert any("status" in line and "SUCCEEDED" in line for line in lines)
    assert "transfer SUCCEEDED" in lines[-1]
