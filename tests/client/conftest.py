"""Fixtures: one simulator and one real daemon process per test module, a fresh user each test.

The daemon runs as a subprocess (``DaemonProcess``) pointed at the in-process simulator, so
every client call below crosses real HTTP and WebSocket connections.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from client_helpers import BYTES_PER_SECOND, DST, SRC, Cli, start_daemon

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    root = tmp_path_factory.mktemp("sim")
    with Simulator(root=root, bytes_per_second=BYTES_PER_SECOND, rate_limit=None) as simulator:
        big = simulator.local_path(SRC, "/home/share/big/")
        big.mkdir(parents=True, exist_ok=True)
        (big / "one_megabyte.bin").write_bytes(os.urandom(1_000_000))
        yield simulator


@pytest.fixture(scope="module")
def daemon(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = start_daemon(sim, tmp_path_factory.mktemp("daemon"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def user(sim: Simulator) -> Credentials:
    return sim.add_user(f"u{uuid.uuid4().hex[:10]}")


@pytest.fixture
def globus(daemon: DaemonProcess, user: Credentials) -> Iterator[GlobusClient]:
    with GlobusClient(daemon.url, daemon.token) as client:
        client.register_session(access_token=user.access_token, local_collection=DST)
        yield client


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, daemon: DaemonProcess, user: Credentials) -> Cli:
    runner = Cli(monkeypatch, daemon, user)
    code, out, err = runner.run("session", "register", "--local-collection", DST)
    assert code == 0, err
    runner.session = out.split("RADICAL_ORBIT_SESSION=")[1].strip()
    return runner
