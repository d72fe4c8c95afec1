"""Fixtures: one simulator (tests/conftest.py), one bridge and three endpoint daemons linked to
it per module.

Every process is real: the bridge and the daemons run as subprocesses, the daemons connect
out to the bridge over WebSocket, and clients cross the bridge over real HTTP/WebSocket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from bridge_helpers import ENDPOINTS, ISSUED, Site, start_endpoint, wait_until

from radical.orbit.bridge.launcher import BridgeProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials


@pytest.fixture(scope="module")
def link_speed() -> float:
    # 5 s for the 1 MB file: long enough to cancel or to kill something.
    return 200_000.0


@pytest.fixture(scope="module")
def site(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    bridge = BridgeProcess(state_dir=tmp_path_factory.mktemp("bridge"))
    result = Site(bridge=bridge)
    for name in ENDPOINTS:
        result.enrollments[name] = bridge.add_endpoint(name)
    result.tokens["alice"] = bridge.add_client("alice")
    result.tokens["bob"] = bridge.add_client("bob")
    result.tokens["carol"] = bridge.add_client("carol", ["site-a"])
    bridge.start()
    try:
        for name in ENDPOINTS:
            result.endpoints[name] = start_endpoint(
                sim, bridge, tmp_path_factory.mktemp(name), name, result.enrollments[name]
            )
        wait_until(result.all_online, what="three endpoints online")
        yield result
    finally:
        for daemon in result.endpoints.values():
            daemon.stop()
        bridge.stop()


@pytest.fixture
def user(sim: Simulator) -> Credentials:
    creds = sim.add_user(f"u{uuid.uuid4().hex[:10]}")
    ISSUED.append(creds)
    return creds
