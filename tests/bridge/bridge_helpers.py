"""Constants and helpers shared by the bridge tests: a bridge and endpoints enrolled on it."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from radical.orbit.bridge.launcher import BridgeProcess
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials

SRC = TUTORIAL_COLLECTION_1
DST = TUTORIAL_COLLECTION_2
GODATA = "/home/share/godata/"
ENDPOINTS = ("site-a", "site-b", "site-c")
DAEMON_ENV = {"RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5", "RADICAL_ORBIT_LOG_LEVEL": "warning"}
# One scalable time unit for every wait in these tests (a loaded machine may raise it).
UNIT = float(os.environ.get("ORBIT_TEST_TIME_UNIT", "1.0"))


def start_endpoint(
    sim: Simulator,
    bridge: BridgeProcess,
    state_dir: Path,
    name: str,
    enrollment: str,
    *,
    ca_bundle: str | None = None,
    **env: str,
) -> DaemonProcess:
    link = {"RADICAL_ORBIT_BRIDGE_URL": bridge.url, "RADICAL_ORBIT_BRIDGE_TOKEN": enrollment}
    if ca_bundle is not None:
        link["RADICAL_ORBIT_BRIDGE_CA_BUNDLE"] = ca_bundle
    return DaemonProcess(
        state_dir=state_dir,
        env={**sim.environ(), **DAEMON_ENV, **link, **env},
        poll_interval=0.2,
        name=name,
    ).start()


def wait_until(check: Callable[[], bool], *, within: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within * UNIT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def online(bridge_url: str, token: str, *, verify: str | None = None) -> dict[str, bool]:
    """Endpoint name -> online, as the bridge lists them (``verify``: a CA bundle)."""
    answer = httpx.get(
        bridge_url + "/endpoints",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=verify) if verify else True,
        trust_env=False,
    )
    answer.raise_for_status()
    return {e["name"]: e["online"] for e in answer.json()["endpoints"]}


def godata_items(dest: str = "/~/out/") -> list[dict[str, object]]:
    return [{"source": GODATA, "destination": dest, "recursive": True}]


@dataclass
class Site:
    """A bridge, its enrolled endpoints and the client tokens made on it."""

    bridge: BridgeProcess
    endpoints: dict[str, DaemonProcess] = field(default_factory=dict)
    enrollments: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def all_online(self) -> bool:
        return all(online(self.bridge.url, self.tokens["alice"]).values())


# Every credential handed out, so a test can search the bridge's files for them.
ISSUED: list[Credentials] = []
