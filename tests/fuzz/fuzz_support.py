"""Settings and helpers shared by the hostile-input tests (imported by name, as the daemon
tests import ``daemon_helpers``; ``conftest`` is a name every test folder has).

The suite is bounded for CI: ``ORBIT_FUZZ_EXAMPLES`` (default 25) examples per route and
generation mode, and the WebSocket properties scale with it too. A longer campaign:
``ORBIT_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/fuzz -q``.
"""

from __future__ import annotations

import os

import httpx

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from timing import UNIT

EXAMPLES = int(os.environ.get("ORBIT_FUZZ_EXAMPLES", "25"))
# Small enough that a burst of events overflows it quickly (the slow-reader property).
WS_QUEUE = 64
# Frequent heartbeats: an accepted connection proves it is served within a second.
HEARTBEAT = 0.3


def assert_alive(process: DaemonProcess) -> None:
    """The daemon process still runs and answers an ordinary request."""
    assert process.running, process.log_tail()
    answer = httpx.get(process.url + "/endpoints", headers=process.headers, timeout=10 * UNIT)
    assert answer.status_code == 200, answer.text
