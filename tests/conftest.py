"""Shared test configuration: hypothesis profiles, and the live stack's fixtures.

HYPOTHESIS_PROFILE selects one: "ci" (the default run, enough examples to find bugs in a few
minutes), "dev" (fast, for iterating), "long" (campaigns on demand).

The fixtures serve every folder that runs the real daemon against the simulator: one
simulator and one daemon per test module, a fresh simulator user and a client with a session
of it per test. A folder's conftest (or a module) overrides what it needs otherwise, e.g.
``link_speed`` for transfers that must last, or ``sim`` for other limits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from live_stack import RETRY, start_daemon
from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess, ManagedProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
# Daemons and bridges started by tests may take longer to listen on a busy machine too.
ManagedProcess.default_start_timeout = 20 * UNIT


@pytest.fixture(scope="module")
def link_speed() -> float:
    """Bytes per second of the simulator's transfers: small files land at once."""
    return 1_000_000.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, link_speed: float) -> Iterator[Simulator]:
    with Simulator(
        root=tmp_path_factory.mktemp("sim"),
        bytes_per_second=link_speed,
        rate_limit=None,
        retry_interval=RETRY,
    ) as simulator:
        big = simulator.local_path(TUTORIAL_COLLECTION_1, "/home/share/big/")
        big.mkdir(parents=True, exist_ok=True)
        # A transfer that lasts 1 MB / link_speed: long enough to cancel or to kill something.
        (big / "one_megabyte.bin").write_bytes(os.urandom(1_000_000))
        yield simulator


@pytest.fixture(scope="module")
def daemon(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = start_daemon(tmp_path_factory.mktemp("daemon") / "state", sim)
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
        client.register_session(access_token=user.access_token)
        yield client
