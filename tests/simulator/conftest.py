"""Fixtures of the simulator tests: a running simulator, a user, SDK clients aimed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import globus_sdk
import pytest

from radical.orbit.simulator import Credentials, Simulator
from radical.orbit.simulator.testing import running_simulator


@pytest.fixture
def sim_options() -> dict[str, object]:
    """Override in a test module to start the simulator with other options."""
    return {}


@pytest.fixture
def sim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_options: dict[str, object]
) -> Iterator[Simulator]:
    with running_simulator(tmp_path, **sim_options) as simulator:
        for key, value in simulator.environ().items():
            monkeypatch.setenv(key, value)
        yield simulator


@pytest.fixture
def alice(sim: Simulator) -> Credentials:
    return sim.add_user("alice")


@pytest.fixture
def tc(alice: Credentials) -> globus_sdk.TransferClient:
    """A TransferClient built after the environment points at the simulator."""
    return globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(alice.access_token)
    )
