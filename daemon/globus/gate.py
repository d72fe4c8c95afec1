"""The asyncio wait on a credential's request budget (:mod:`.budget` decides, this waits).

``GlobusOps`` keeps one :class:`BudgetGate` per credential and passes every Globus request
of that credential through :meth:`BudgetGate.acquire`; the poller also asks it whether a
sweep may come before its interval (:meth:`BudgetGate.early_sweep`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .budget import Bucket, RequestBudget, Use

__all__ = ["BudgetGate"]


class BudgetGate:
    def __init__(
        self,
        budget: RequestBudget,
        *,
        early_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self._clock = clock
        # Sweeps before the interval: a cap of their own, only spent by sessions that have
        # unfinished tasks (the poller asks only then); 0 turns early sweeps off.
        self._early = Bucket(rate=early_rate, capacity=1.0, now=clock()) if early_rate > 0 else None
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0

    async def acquire(self, use: Use) -> None:
        """Wait until one request of ``use`` may go."""
        ticket = self.budget.ask(use)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = future
        self._pump()
        try:
            await future
        except asyncio.CancelledError:
            if self._waiters.pop(ticket, None) is not None:
                self.budget.withdraw(ticket)
                self._pump()
            raise

    def throttled(self, retry_after: float | None) -> None:
        """Globus answered 429: nothing of this credential goes before its Retry-After."""
        if retry_after is not None and retry_after > 0:
            self.budget.hold(until=self._clock() + retry_after)
            self._pump()

    async def early_sweep(self, cost: int) -> None:
        """Wait until the credential's share for early sweeps allows one of ``cost``
        requests, and spend it. Never returns when early sweeps are off."""
        if self._early is None:
            await asyncio.Event().wait()
            return
        while True:
            now = self._clock()
            if self._early.take(now, cost=float(cost)):
                return
            await asyncio.sleep(self._early.ready_at(now) - now)

    def swept(self, cost: int) -> None:
        """A sweep came at its interval: what the early share saved up meanwhile is spent on
        it, so an early sweep does not follow it at once."""
        if self._early is not None:
            self._early.drain(self._clock(), float(cost))

    def _pump(self) -> None:
        now = self._clock()
        for ticket in self.budget.grant(now=now):
            future = self._waiters.pop(ticket)
            if not future.done():
                future.set_result(None)
            self.granted += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wake = self.budget.wake_at(now=now)
        if wake is not None:
            loop = asyncio.get_running_loop()
            # A hair late rather than early: the bucket must have refilled when it runs.
            self._timer = loop.call_later(max(0.0, wake - now) + 1e-4, self._pump)
