"""Pure core of the poller's decisions: what a sweep asks, and what its outcome means next.

From a session's open tasks, when each was last observed, the time and the outcome of the
last sweep, it decides:
- which tasks a sweep asks Globus about and in which ``task_list`` batches (the least
  recently observed first, at most ``allowance`` requests, so a sweep cut short or capped
  never starves the same tasks);
- which tasks found changed need their Globus event list first (catch-up, after a gap of
  ``CATCH_UP_GAP`` intervals), and how many of those one sweep may fetch;
- which tasks in trouble get their details (newest error, pause message; chosen by
  :func:`.trouble.details_wanted`) within what is left of that same allowance;
- how the rest of a sweep is batched when Globus refuses a ``task_list`` filter as too long
  (:meth:`SweepPlan.after_refusal`, by :func:`.trouble.filter_refused` and
  :func:`.trouble.smaller_batch`);
- what a sweep's :class:`Outcome` means for the next sweep: how long to wait at most, and
  whether it may come sooner when the credential's budget has room (:class:`Pace`).

No I/O, no clock of its own (every time is passed in, in any one clock): hypothesis tests
drive it directly. ``loop.py`` performs what it decides.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..globus.budget import CATCH_UP_RATE
from .trouble import details_wanted, filter_refused, smaller_batch

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
    # Task ids per batch, and task_list requests the sweep may send at most.
    batch: int
    allowance: int
    # When each open task was last observed (tasks never observed: ``unobserved_since``).
    observed: Mapping[str, float]
    # A task observed before this gets its event list when found changed (catch-up).
    stale_before: float
    # Event lists (catch-ups and trouble details, both ``Use.CATCH_UP`` of the budget) the
    # sweep may fetch at most; the other changed stale tasks wait, the other details are
    # left out (a task gets its newest error at its next fault).
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

    def take_details(
        self, rows: Mapping[str, Any], docs: Iterable[Mapping[str, Any]], *, spent: int
    ) -> tuple[list[str], list[str]]:
        """Of the observed ``docs``, the tasks whose trouble details the sweep fetches now,
        ``spent`` event lists having been fetched so far: (faults grew: newest error, just
        paused: pause message), in :func:`.trouble.details_wanted`'s order."""
        return details_wanted(rows, docs, budget=max(0, self.catch_ups - spent))

    def after_refusal(
        self,
        index: int,
        *,
        spent: int,
        http_status: int | None,
        code: str | None,
        message: str | None,
    ) -> SweepPlan | None:
        """The plan for the rest of the sweep after Globus refused batch ``index``, ``spent``
        task_list requests (the refused one included) having been sent: when the refusal
        says the filter names too many tasks, the same tasks from that batch on in smaller
        batches, as many as the allowance has left (the others come first next sweep);
        None for any other refusal."""
        refused = self.batches[index]
        if len(refused) < 2 or not filter_refused(
            http_status=http_status, code=code, message=message
        ):
            return None
        size = smaller_batch(len(refused), message=message)
        rest = [t for batch in self.batches[index:] for t in batch]
        room = max(0, self.allowance - spent)
        return dataclasses.replace(
            self,
            batches=self.batches[:index] + _split(rest[: room * size], size),
            batch=size,
        )


def _split(order: Sequence[str], size: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(order[i : i + size]) for i in range(0, len(order), size))


def sweep_allowance(*, rate: float, interval: float) -> int:
    """task_list requests one sweep may spend: what ``rate`` requests/s (the credential's
    budget) serves in one interval, at least ``MIN_SWEEP_REQUESTS``, so sweeps of a huge
    session end and leave the budget to others instead of running back to back."""
    return max(MIN_SWEEP_REQUESTS, math.floor(rate * interval))


def sweep_cost(open_tasks: int, *, allowance: int, batch: int = BATCH) -> int:
    """task_list requests a sweep of ``open_tasks`` in batches of ``batch`` costs (what an
    early sweep spends of the credential's share for them)."""
    return min(allowance, math.ceil(open_tasks / batch))


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
    batch: int = BATCH,
) -> SweepPlan:
    """The sweep for ``open_tasks`` at ``now``.

    ``observed`` maps task ids to when a sweep last observed them (from the poller's memory
    or a ledger projection, in the same clock as ``now``); a task missing from it has been
    unobserved since ``unobserved_since`` at most (the previous sweep's start, when it was
    not open yet; -inf when nobody watched, e.g. after a restart). The least recently
    observed come first, at most ``allowance`` batches of ``batch`` (``BATCH``, or less after
    Globus refused a filter as too long).
    """
    if allowance < 1:
        raise ValueError("a sweep needs an allowance of at least one request")
    if batch < 1:
        raise ValueError("a batch needs at least one task id")
    seen = {task_id: observed.get(task_id, unobserved_since) for task_id in open_tasks}
    order = sorted(seen, key=lambda t: (seen[t], t))[: allowance * batch]
    return SweepPlan(
        batches=_split(order, batch),
        batch=batch,
        allowance=allowance,
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
