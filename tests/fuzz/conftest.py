"""Fixtures of the hostile-input suite: one simulator, one real daemon process and an HTTP
client of it per module (settings in ``fuzz_support``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fuzz_support import HEARTBEAT, WS_QUEUE

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT


@pytest.fixture(scope="module")
def fuzz_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    # Generous task limits: fuzzed submits that Globus accepts must never hit a quota.
    with running_simulator(
        tmp_path_factory.mktemp("fuzz-sim"), max_active=10_000, max_pending=100_000
    ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def fuzz_daemon(
    tmp_path_factory: pytest.TempPathFactory, fuzz_sim: Simulator
) -> Iterator[DaemonProcess]:
    env = {
        **fuzz_sim.environ(),
        "RADICAL_ORBIT_WS_QUEUE_SIZE": str(WS_QUEUE),
        "RADICAL_ORBIT_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        # The simulator's limits are raised: the daemon's admission queue must know.
        "RADICAL_ORBIT_GLOBUS_MAX_PENDING": "100000",
        "RADICAL_ORBIT_ADMISSION_RATE": "0",
    }
    process = DaemonProcess(
        state_dir=tmp_path_factory.mktemp("fuzz-daemon") / "state",
        env=env,
        poll_interval=0.5,
        extra_args=["--log-level", "warning"],
    ).start()
    try:
        yield process
    finally:
        process.stop()
        # Whatever the fuzzers sent, the daemon must never have logged an unhandled error.
        log = process.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def http(fuzz_daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=fuzz_daemon.url, headers=fuzz_daemon.headers, timeout=60 * UNIT
    ) as c:
        yield c
