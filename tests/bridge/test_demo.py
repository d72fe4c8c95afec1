"""``python3 dev.py demo --bridge``: three endpoints behind one bridge, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(120)


def test_bridge_demo_moves_data_on_three_endpoints() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--bridge"],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for site in ("site-a", "site-b", "site-c"):
        assert f"{site}   online=True" in done.stdout
        assert f"[{site}] seq" in done.stdout
    assert "all transfers SUCCEEDED" in done.stdout
