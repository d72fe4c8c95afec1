"""Fixtures: the live stack of tests/conftest.py (one simulator and one real daemon process per
test module, a fresh user each test) with a slower link, a session with a local collection,
and the CLI.

The daemon runs as a subprocess (``DaemonProcess``) pointed at the in-process simulator, so
every client call below crosses real HTTP and WebSocket connections.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from client_helpers import BYTES_PER_SECOND, DST, Cli

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator.auth import Credentials


@pytest.fixture(scope="module")
def link_speed() -> float:
    return BYTES_PER_SECOND


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
