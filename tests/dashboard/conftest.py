"""Fixtures of the browser tests: one simulator, one daemon and one headless chromium per module.

Playwright drives Debian's ``chromium`` (its own browser download cannot work here); CI installs
it with apt (``.ci/run``). Without it the tests are skipped, saying why (no daemon is started
for nothing: the browser is each test's first fixture).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials

CHROMIUM = os.environ.get("ORBIT_CHROMIUM", "/usr/bin/chromium")
# The simulator retries a faulted task this often (simulated = real seconds here).
RETRY = 0.3
DAEMON_ENV = {
    # The browser's stream re-checks its session at each heartbeat: a revoked token's page
    # ends within one.
    "RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5",
    "RADICAL_ORBIT_MAX_BACKOFF": "1.5",
}


def _chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    root = tmp_path_factory.mktemp("sim")
    with Simulator(
        root=root, bytes_per_second=1_000_000, rate_limit=None, retry_interval=RETRY
    ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def daemon(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(
        state_dir=tmp_path_factory.mktemp("daemon") / "state",
        env={**sim.environ(), **DAEMON_ENV},
        poll_interval=0.2,
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    if executable is None:
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install .[dev]")
    with sync_api.sync_playwright() as playwright:
        # Playwright's own browser download cannot work here: Debian's chromium, and as
        # root (CI containers) without its sandbox.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def user(sim: Simulator) -> Credentials:
    return sim.add_user(f"u{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests write a screenshot of each view (ORBIT_DASHBOARD_SHOTS to keep them)."""
    chosen = os.environ.get("ORBIT_DASHBOARD_SHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("dashboard-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
