"""Pure core of the poller's decisions: what a sweep asks, and what its outcome means next.

From a session's open tasks, when each was last observed, the time and the outcome of the
last sweep, it decides:
- which tasks a sweep asks Globus about and in which ``task_list`` batches (the least
  recently observed first, at most ``allowance`` requests, so a sweep cut short or capped
  never starves the same tasks);
- which tasks found changed need their Globus event list first (catch-up, after a gap of
  ``CATCH_UP_GAP`` intervals), and how many of those one sweep may fetch;
- what a sweep's :class:`Outcome` means for the next sweep: how long to wait at most, and
  whether it may come sooner when the credential's budget has room (:class:`Pace`).

No I/O, no clock of its own (every time is passed in, in any one clock): hypothesis tests
drive it directly. ``loop.py`` performs what it decides.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping

from ..globus.budget import CATCH_UP_RATE

__all__ = [
    "BATCH",
    "CATCH_UP_CONCURRENCY",
    "CATCH_UP_GAP",
    "CATCH_UP_RATE",
    "EVENT_PAGE",
    "MIN_SWEEP_REQUESTS",
    "THROTTLE_WINDOW",
    "Outcome",
    "Pace",
    "SweepPlan",
    "SweepResult",
    "catch_up_allowance",
    "next_pace",
    "plan_sweep",
    "sweep_allowance",
    "sweep_cost",
]

# Task ids per task_list request; Globus pages at most 1000 documents, but long filters
# make long URLs, and 100 ids (~3.7 kB) stays well inside every proxy's limit.
BATCH = 100
# Event lists a catch-up fetches at once: after a restart every finished task needs one.
CATCH_UP_CONCURRENCY = 4
# A task unobserved for this many poll intervals or more gets the catch-up when found
# changed. Shorter gaps (a failed request, one backoff step) are like a normal interval:
# asking for event lists after each would cost more requests than the faults saved, and a
# soak with 15% errors fell thousands of tasks behind that way.
CATCH_UP_GAP = 4
# Events per event_list request (Globus pages at most 1000); the newest come first, and only
# those after the ledger's last observation matter.
EVENT_PAGE = 1000
# A sweep may always ask this many task_list requests (1,000 tasks), however short the
# interval; above that, what the credential's budget serves in one interval.
MIN_SWEEP_REQUESTS = 10
# Seconds Globus meters its per-user rate limit over (20 requests/s over 10 s windows,
# GLOBUS_BEHAVIOUR.md "Requests"): a 429 without Retry-After is over when the window is.
THROTTLE_WINDOW = 10.0


class Outcome(enum.Enum):
    """How a sweep ended."""

    OK = "ok"  # every request went through
    IDLE = "idle"  # no open task: nothing asked
    PARTIAL = "partial"  # some requests failed with a 5xx, the rest went through
    THROTTLED = "throttled"  # Globus refused a request for its rate limit (429)
    STOPPED = "stopped"  # no answer (timeout) after some requests went through
    UNKNOWN = "unknown"  # nothing went through (5xx everywhere, no answer)
    EXPIRED = "expired"  # the credential was refused: the loop ends
    ERROR = "error"  # the sweep itself failed (a bug): as UNKNOWN


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepResult:
    outcome: Outcome
    # Seconds Globus asked to wait (Retry-After of the 429 that ended a THROTTLED sweep).
    retry_after: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pace:
    """When the next sweep comes: after ``delay`` seconds at the latest (or when woken);
    with ``early``, sooner whenever the credential's budget for early sweeps has room."""

    delay: float
    early: bool
    failures: int  # sweeps in a row that got nothing through (feeds the doubling)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What one sweep asks: ``batches`` of task ids, one task_list request each."""

    batches: tuple[tuple[str, ...], ...]
    # When each open task was last observed (tasks never observed: ``unobserved_since``).
    observed: Mapping[str, float]
    # A task observed before this gets its event list when found changed (catch-up).
    stale_before: float
    # Event lists the sweep may fetch at most; the other changed stale tasks wait.
    catch_ups: int

    @property
    def requests(self) -> int:
        """task_list requests of the plan (event lists come on top, ``catch_ups`` at most)."""
        return len(self.batches)

    def wants_catch_up(self, task_id: str) -> bool:
        """True when ``task_id``, found changed, may have changed more than once unseen."""
        return self.observed[task_id] < self.stale_before

    def take_catch_ups(self, changed: Iterable[str], *, spent: int) -> tuple[list[str], list[str]]:
        """Of the stale ``changed`` tasks, those whose event list the sweep fetches now,
        ``spent`` having been fetched so far, the least recently observed first; and those
        left for later sweeps (their ledger state stays as it is, and they stay stale)."""
        room = max(0, self.catch_ups - spent)
        order = sorted(changed, key=lambda t: (self.observed[t], t))
        return order[:room], order[room:]


def sweep_allowance(*, rate: float, interval: float) -> int:
    """task_list requests one sweep may spend: what ``rate`` requests/s (the credential's
    budget) serves in one interval, at least ``MIN_SWEEP_REQUESTS``, so sweeps of a huge
    session end and leave the budget to others instead of running back to back."""
    return max(MIN_SWEEP_REQUESTS, math.floor(rate * interval))


def sweep_cost(open_tasks: int, *, allowance: int) -> int:
    """task_list requests a sweep of ``open_tasks`` costs (what an early sweep spends of the
    credential's share for them)."""
    return min(allowance, math.ceil(open_tasks / BATCH))


def catch_up_allowance(*, interval: float) -> int:
    """Event lists one sweep may fetch: ``CATCH_UP_RATE`` for one interval, so a catch-up of
    thousands of tasks spreads over sweeps that keep observing the others."""
    return max(CATCH_UP_CONCURRENCY, math.ceil(CATCH_UP_RATE * interval))


def plan_sweep(
    open_tasks: Iterable[str],
    *,
    observed: Mapping[str, float],
    unobserved_since: float,
    now: float,
    interval: float,
    allowance: int,
    catch_ups: int,
) -> SweepPlan:
    """The sweep for ``open_tasks`` at ``now``.

    ``observed`` maps task ids to when a sweep last observed them (from the poller's memory
    or a ledger projection, in the same clock as ``now``); a task missing from it has been
    unobserved since ``unobserved_since`` at most (the previous sweep's start, when it was
    not open yet; -inf when nobody watched, e.g. after a restart). The least recently
    observed come first, at most ``allowance`` batches of ``BATCH``.
    """
    if allowance < 1:
        raise ValueError("a sweep needs an allowance of at least one request")
    seen = {task_id: observed.get(task_id, unobserved_since) for task_id in open_tasks}
    order = sorted(seen, key=lambda t: (seen[t], t))[: allowance * BATCH]
    batches = tuple(tuple(order[i : i + BATCH]) for i in range(0, len(order), BATCH))
    return SweepPlan(
        batches=batches,
        observed=seen,
        stale_before=now - CATCH_UP_GAP * interval,
        catch_ups=catch_ups,
    )


def next_pace(
    result: SweepResult,
    *,
    failures: int,
    elapsed: float,
    interval: float,
    max_backoff: float,
    open_tasks: int,
    throttle_window: float = THROTTLE_WINDOW,
) -> Pace:
    """What ``result`` means for the next sweep of a session, ``elapsed`` seconds after the
    last one started, with ``failures`` sweeps in a row before it that got nothing through.

    - OK: the rest of the interval, and sooner when the budget allows (only with open tasks:
      an idle session costs nothing);
    - IDLE, PARTIAL: the rest of the interval (the failed batches come first next time);
    - THROTTLED: what Globus asked for (Retry-After), else the end of its rate window
      (``throttle_window``);
      throttling is about the rate, not an outage, so nothing doubles;
    - STOPPED: one more interval;
    - UNKNOWN, ERROR: doubling from the interval, up to ``max_backoff``;
    - EXPIRED: at once (the loop ends unless the session was registered again meanwhile).
    Every delay is at most ``max(interval, max_backoff)``.
    """
    ceiling = max(interval, max_backoff)
    outcome = result.outcome
    if outcome is Outcome.EXPIRED:
        return Pace(delay=0.0, early=False, failures=failures)
    if outcome in (Outcome.UNKNOWN, Outcome.ERROR):
        failures += 1
        # 2**failures overflows a float past ~1000 failures in a row; the cap is reached by then.
        step = interval * 2 ** min(failures, 64)
        return Pace(delay=min(ceiling, step), early=False, failures=failures)
    if outcome is Outcome.THROTTLED:
        wait = result.retry_after if result.retry_after is not None else throttle_window
        return Pace(delay=min(ceiling, max(0.0, wait)), early=False, failures=0)
    if outcome is Outcome.STOPPED:
        return Pace(delay=min(ceiling, interval * 2), early=False, failures=0)
    rest = min(interval, max(0.0, interval - elapsed))
    return Pace(delay=rest, early=outcome is Outcome.OK and open_tasks > 0, failures=0)
