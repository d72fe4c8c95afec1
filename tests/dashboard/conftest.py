"""Fixtures of the browser tests: one headless chromium per module, beside the simulator and the
daemon of tests/conftest.py.

Playwright drives Debian's ``chromium`` (its own browser download cannot work here); CI installs
it with apt (``.ci/run``). Without it the tests are skipped, saying why (no daemon is started
for nothing: the browser is each test's first fixture).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("ORBIT_CHROMIUM", "/usr/bin/chromium")


def _chromium() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


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


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests write a screenshot of each view (ORBIT_DASHBOARD_SHOTS to keep them)."""
    chosen = os.environ.get("ORBIT_DASHBOARD_SHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("dashboard-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
