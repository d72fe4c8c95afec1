"""Retention end to end: `orbit-globus-endpoint prune` and `retention_days` delete the events
of finished tasks, their rows stay, and a client behind the pruned range is told."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from client_helpers import DST, SRC, Cli, godata_items, start_daemon

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT


@pytest.fixture
def own_daemon(
    sim: Simulator, user: Credentials, tmp_path: Path
) -> Iterator[tuple[DaemonProcess, GlobusClient]]:
    """A daemon of the test's own (it stops it and prunes its ledger) and a client with a
    session of the user in it."""
    daemon = start_daemon(sim, tmp_path / "state")
    try:
        with GlobusClient(daemon.url, daemon.token) as globus:
            globus.register_session(access_token=user.access_token, local_collection=DST)
            yield daemon, globus
    finally:
        daemon.stop()


def test_prune_keeps_task_rows_and_tells_a_client_behind_the_range(
    own_daemon: tuple[DaemonProcess, GlobusClient],
    user: Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon, globus = own_daemon
    old = globus.submit_transfer(SRC, "local", godata_items("/~/old/"), label="old")
    row = globus.task_wait(old["task_id"], timeout=30 * UNIT)
    assert row["status"] == "SUCCEEDED"
    daemon.stop()
    cutoff = datetime.fromtimestamp(time.time() + 1).isoformat(timespec="seconds")
    time.sleep(0)  # the cut-off is after the task's completion
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "radical.orbit.daemon",
            "prune",
            "--before",
            cutoff,
            "--state-dir",
            str(daemon.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tasks"] == 1 and summary["events"] >= 3
    daemon.start()
    assert globus.get_task(old["task_id"]) == row
    assert globus.history(task_id=old["task_id"])["events"] == []
    with globus.events(since=0) as stream:
        stream.get(timeout=2 * UNIT)  # the heartbeat, then the session's events
        assert stream.pruned_through == summary["pruned_through"]
    with globus.events(since=summary["pruned_through"]) as stream:
        stream.get(timeout=1 * UNIT)
        assert stream.pruned_through is None
    # The command line's watch resyncs from the task rows and ends.
    cli = Cli(monkeypatch, daemon, user)
    cli.session = globus.session_id
    code, out, err = cli.run("watch", "--after", "0", "--until-done", "--timeout", "30")
    assert code == 0, err
    assert "pruned" in err and old["task_id"][:8] in out and "SUCCEEDED" in out


def test_the_daemon_prunes_by_itself_with_retention_days(
    own_daemon: tuple[DaemonProcess, GlobusClient],
) -> None:
    daemon, globus = own_daemon
    sub = globus.submit_transfer(SRC, "local", godata_items("/~/ret/"), label="ret")
    globus.task_wait(sub["task_id"], timeout=30 * UNIT)
    daemon.stop()
    # One second of retention: the task finished longer ago than that at the start.
    time.sleep(1.1)
    daemon.env["RADICAL_ORBIT_RETENTION_DAYS"] = str(1 / 86400)
    daemon.start()
    deadline = time.monotonic() + 20 * UNIT
    while globus.history(task_id=sub["task_id"])["events"]:
        assert time.monotonic() < deadline, "the daemon did not prune"
        time.sleep(0.1)
    assert globus.get_task(sub["task_id"])["status"] == "SUCCEEDED"
