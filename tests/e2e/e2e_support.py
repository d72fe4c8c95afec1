"""Helpers for the cross-layer tests: the two collections, fresh access tokens, waits, and the
runner of the state machines (the live stack itself: tests/live_stack.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials
from timing import LONG, UNIT

__all__ = [
    "C1",
    "C2",
    "fresh_access_token",
    "run_machine",
    "wait_until",
]

C1 = TUTORIAL_COLLECTION_1
C2 = TUTORIAL_COLLECTION_2


def run_machine(machine: type[RuleBasedStateMachine], *, max_examples: int, steps: int) -> float:
    """Run a state machine over the real processes; the seconds it took."""
    started = time.monotonic()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # Each step costs real time: report a failing run as found instead of shrinking
            # it for many minutes (the "long" profile shrinks).
            phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if LONG else []),
            print_blob=True,
        ),
    )
    return time.monotonic() - started


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
