"""Fixtures of the hostile-input suite: one simulator and one real daemon process per module.

The suite is bounded for CI: ``ORBIT_FUZZ_EXAMPLES`` (default 25) examples per route and
generation mode, and the WebSocket properties scale with it too. A longer campaign:
``ORBIT_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/fuzz -q``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from radical.orbit.daemon.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator

EXAMPLES = int(os.environ.get("ORBIT_FUZZ_EXAMPLES", "25"))
# Small enough that a burst of events overflows it quickly (the slow-reader property).
WS_QUEUE = 64
HEARTBEAT = 0.3


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
        # Frequent heartbeats: an accepted connection proves it is served within a second.
        "RADICAL_ORBIT_HEARTBEAT_INTERVAL": str(HEARTBEAT),
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


def assert_alive(process: DaemonProcess) -> None:
    """The daemon process still runs and answers an ordinary request."""
    assert process.running, process.log_tail()
    answer = httpx.get(process.url + "/endpoints", headers=process.headers, timeout=10)
    assert answer.status_code == 200, answer.text
