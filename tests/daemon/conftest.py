"""Fixtures: a real simulator, the real daemon process, real HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from daemon_helpers import Session, client, daemon_process, new_user, register

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with running_simulator(tmp_path) as simulator:
        yield simulator


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[Simulator]:
    """Tasks stay ACTIVE for 2 s, so faults can hit them while they run."""
    with running_simulator(tmp_path, min_task_seconds=2.0, max_active=50, max_pending=2000) as s:
        yield s


@pytest.fixture
def daemon(tmp_path: Path, sim: Simulator) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path, sim) as process:
        yield process


@pytest.fixture
def slow_daemon(tmp_path: Path, slow_sim: Simulator) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path, slow_sim) as process:
        yield process


@pytest.fixture
async def aclient(daemon: DaemonProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=daemon.url, headers=daemon.headers, timeout=30 * UNIT
    ) as c:
        yield c


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for a module whose tests do not disturb each other."""
    with running_simulator(tmp_path_factory.mktemp("shared")) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def shared_daemon(
    tmp_path_factory: pytest.TempPathFactory, shared_sim: Simulator
) -> Iterator[DaemonProcess]:
    with daemon_process(tmp_path_factory.mktemp("shared-daemon"), shared_sim) as process:
        yield process


def _session_on(process: DaemonProcess, simulator: Simulator) -> Iterator[Session]:
    with client(process) as http:
        yield http, register(http, new_user(simulator))


@pytest.fixture
def session(daemon: DaemonProcess, sim: Simulator) -> Iterator[Session]:
    """A new user's session on the test's own daemon, and a client to reach it."""
    yield from _session_on(daemon, sim)


@pytest.fixture
def slow_session(slow_daemon: DaemonProcess, slow_sim: Simulator) -> Iterator[Session]:
    """A new user's session on a daemon whose tasks run for 2 s, and a client to reach it."""
    yield from _session_on(slow_daemon, slow_sim)


@pytest.fixture
def shared_session(shared_daemon: DaemonProcess, shared_sim: Simulator) -> Iterator[Session]:
    """A new user's session on the module's shared daemon, and a client to reach it."""
    yield from _session_on(shared_daemon, shared_sim)
