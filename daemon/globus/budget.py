"""Pure core of a credential's request budget: who may send the next Globus request, when.

Globus rate-limits each user: 20 Transfer API requests per second, metered over 10 s
windows, a 429 beyond (GLOBUS_BEHAVIOUR.md "Requests", from the Globus FAQ as quoted by
third parties; the simulator meters the same way). The daemon keeps one budget per
credential that every request of that credential passes: submits, cancels and file
operations (:attr:`Use.SUBMIT`), the poller's sweeps (:attr:`Use.POLL`) and its catch-up
event lists and trouble details (:attr:`Use.CATCH_UP`).

- A token bucket: ``rate`` per second with ``burst`` at most saved up, so any ``T``
  seconds carry at most ``burst + rate * T`` requests. From Globus's limit ``L`` over a
  ``W``-second window, :meth:`RequestBudget.for_limit` takes ``rate = 0.9 L`` and
  ``burst = 0.1 L W`` (18/s, 20 for the defaults): every window of ``W`` seconds stays
  within ``L W`` even when its start is unlucky, and the 10% kept back pays for the
  SDK's own retries of failed requests, which pass the budget once.
- Shares: when more than one use waits, the requests go out in proportion to their
  weights (start-time fair queueing: each use's virtual clock advances ``1/weight`` per
  request and the use furthest behind goes next), so a burst of submits cannot starve
  polling, nor a huge sweep the submits. A use that waited for nothing saves no credit.
- Caps: a use may have its own bucket on top (catch-up event lists: ``CATCH_UP_RATE``),
  so it never takes more than that even when nothing else waits.
- Hold: a 429 with Retry-After stops every grant of the credential until then.

No I/O, no clock: every method takes ``now``. ``gate.py`` waits on it with asyncio.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import math
from collections.abc import Mapping

__all__ = ["CATCH_UP_RATE", "DEFAULT_SHARES", "Bucket", "RequestBudget", "Share", "Use"]


class Use(enum.Enum):
    """What a Globus request is for: each use has its share of the credential's budget."""

    SUBMIT = "submit"  # submits, cancels, file operations: someone waits for the answer
    POLL = "poll"  # the poller's task_list sweeps
    # task_event_list after a gap, and a troubled task's details (its newest error events,
    # task_pause_info): both per-task lookups a sweep adds to its polls, under one cap.
    CATCH_UP = "catch_up"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Share:
    weight: float
    cap: float | None = None  # requests/s at most, whatever else waits


# Event lists a credential may fetch per second (a cap on top of the share below). The fault
# soak once saw a session back from a long backoff fetch ~190 in a few seconds and its user
# refused by Globus's 20/s limit.
CATCH_UP_RATE = 8.0

# Weights when uses compete: the submits (someone waits for each answer) get half, polls
# and catch-ups a quarter each: at 18/s, 4.5 task_list requests/s (450 tasks polled per
# second) and as many event lists, whatever burst of submits comes.
DEFAULT_SHARES = {
    Use.SUBMIT: Share(weight=2.0),
    Use.POLL: Share(weight=1.0),
    Use.CATCH_UP: Share(weight=1.0, cap=CATCH_UP_RATE),
}


class Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``capacity`` saved. A take needs
    one whole token and may leave the level below zero (a sweep of ten requests taken at
    once), which later takes then wait out: the average stays ``rate``."""

    def __init__(self, *, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a bucket needs rate > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
            self._updated = now

    def ready(self, now: float) -> bool:
        self._refill(now)
        return self.level >= 1.0 - 1e-9

    def ready_at(self, now: float) -> float:
        """The earliest time a take succeeds (``now`` if it would now)."""
        self._refill(now)
        missing = 1.0 - self.level
        return now if missing <= 1e-9 else now + missing / self.rate

    def drain(self, now: float, cost: float) -> None:
        """Spend up to ``cost`` of what is saved up, never into debt."""
        self._refill(now)
        if self.level > 0:
            self.level = max(0.0, self.level - cost)

    def take(self, now: float, cost: float = 1.0) -> bool:
        if not self.ready(now):
            return False
        self.level -= cost
        return True


class RequestBudget:
    """One credential's budget. Waiters ``ask`` for a request and get a ticket; ``grant``
    says which tickets may go now; ``wake_at`` when to call ``grant`` again."""

    def __init__(
        self, *, rate: float, burst: float, shares: Mapping[Use, Share], now: float
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.shares = dict(shares)
        self._main = Bucket(rate=rate, capacity=burst, now=now)
        self._caps = {
            use: Bucket(rate=share.cap, capacity=1.0, now=now)
            for use, share in self.shares.items()
            if share.cap is not None
        }
        self._queues: dict[Use, collections.deque[int]] = {
            use: collections.deque() for use in self.shares
        }
        self._virtual = {use: 0.0 for use in self.shares}
        self._clock = 0.0  # virtual time of the last grant
        self._tickets = itertools.count(1)
        self._use_of: dict[int, Use] = {}
        self.held_until = -math.inf

    @classmethod
    def for_limit(
        cls,
        *,
        limit: float,
        window: float,
        shares: Mapping[Use, Share],
        now: float,
        headroom: float = 0.1,
    ) -> RequestBudget:
        """A budget that keeps every ``window`` seconds under ``limit * window`` requests."""
        if limit <= 0 or window <= 0 or not 0 < headroom < 1:
            raise ValueError("need limit > 0, window > 0 and 0 < headroom < 1")
        return cls(
            rate=limit * (1 - headroom),
            burst=max(1.0, limit * window * headroom),
            shares=shares,
            now=now,
        )

    def guaranteed(self, use: Use) -> float:
        """Requests/s ``use`` gets at least while every use waits (its cap aside)."""
        total = sum(share.weight for share in self.shares.values())
        return self.rate * self.shares[use].weight / total

    @property
    def waiting(self) -> int:
        return len(self._use_of)

    def ask(self, use: Use) -> int:
        """Queue one request of ``use``; its ticket."""
        queue = self._queues[use]
        if not queue:
            # A use that waited for nothing saves no credit: it joins at the current time.
            self._virtual[use] = max(self._virtual[use], self._clock)
        ticket = next(self._tickets)
        queue.append(ticket)
        self._use_of[ticket] = use
        return ticket

    def withdraw(self, ticket: int) -> None:
        """A waiter gave up (cancelled): its ticket leaves the queue."""
        use = self._use_of.pop(ticket, None)
        if use is not None:
            self._queues[use].remove(ticket)

    def hold(self, *, until: float) -> None:
        """Globus asked to wait (Retry-After): nothing is granted before ``until``."""
        self.held_until = max(self.held_until, until)

    def _eligible(self, now: float) -> list[Use]:
        return [
            use
            for use, queue in self._queues.items()
            if queue and (use not in self._caps or self._caps[use].ready(now))
        ]

    def grant(self, *, now: float) -> list[int]:
        """Tickets whose request may go now, in order."""
        granted: list[int] = []
        while now >= self.held_until and self._main.ready(now):
            eligible = self._eligible(now)
            if not eligible:
                break
            use = min(eligible, key=lambda u: (self._virtual[u], u.value))
            ticket = self._queues[use].popleft()
            del self._use_of[ticket]
            self._main.take(now)
            if use in self._caps:
                self._caps[use].take(now)
            self._clock = self._virtual[use]
            self._virtual[use] += 1.0 / self.shares[use].weight
            granted.append(ticket)
        return granted

    def wake_at(self, *, now: float) -> float | None:
        """When ``grant`` may grant next; None when nobody waits."""
        waiting = [use for use, queue in self._queues.items() if queue]
        if not waiting:
            return None
        soonest_use = min(
            self._caps[use].ready_at(now) if use in self._caps else now for use in waiting
        )
        return max(now, self.held_until, self._main.ready_at(now), soonest_use)
