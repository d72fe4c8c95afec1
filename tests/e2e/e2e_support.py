"""Helpers for the cross-layer tests: the real simulator, the real daemon process, waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

__all__ = [
    "C1",
    "C2",
    "DAEMON_ENV",
    "POLL",
    "fresh_access_token",
    "start_daemon",
    "wait_until",
]

C1 = TUTORIAL_COLLECTION_1
C2 = TUTORIAL_COLLECTION_2
# Short intervals so "the daemon has caught up" is a matter of a second, not of minutes.
POLL = 0.2
DAEMON_ENV = {
    "RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.5",
    "RADICAL_ORBIT_MAX_BACKOFF": "1.5",
    "RADICAL_ORBIT_LOG_LEVEL": "info",
}


def start_daemon(state_dir: Path, sim: Simulator, **env: str) -> DaemonProcess:
    return DaemonProcess(
        state_dir=state_dir, env={**sim.environ(), **DAEMON_ENV, **env}, poll_interval=POLL
    ).start()


def fresh_access_token(sim: Simulator, creds: Credentials) -> str:
    """A new access token for the user, obtained like a native app does (refresh grant).

    Retries through injected 5xx/429 storms, as a user's login would.
    """
    for _ in range(50):
        answer = httpx.post(
            sim.url + "/v2/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": creds.refresh_token,
                "client_id": creds.client_id,
            },
            timeout=10 * UNIT,
        )
        if answer.status_code < 429:
            break
        time.sleep(0.05)
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def wait_until(check: Callable[[], list[str]], *, timeout: float, interval: float = 0.1) -> None:
    """Call ``check`` (a list of problems, empty when fine) until it is empty or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        problems = check()
        if not problems:
            return
        if time.monotonic() >= deadline:
            shown = "\n  ".join(problems[:20])
            raise AssertionError(
                f"not settled after {timeout} s ({len(problems)} problems):\n  {shown}"
            )
        time.sleep(interval)


def describe(value: Any) -> str:
    return repr(value)[:300]
