"""The poller's asyncio shell: one loop per session with a credential, performing the sweeps
that :mod:`.plan` decides.

A sweep reads the session's non-terminal tasks from the ledger, asks Globus for them with
``task_list`` and ``filter=task_id:a,b,...`` (up to 100 ids per request, so N tasks cost
ceil(N/100) requests instead of N), and appends what :func:`.diff.diff` finds. A session's
sweeps never overlap: its loop awaits each sweep before waiting for the next.
:func:`.plan.plan_sweep` says which tasks, in which batches and which need a catch-up;
:func:`.plan.next_pace` what the sweep's :class:`.plan.Outcome` means for the next one.

Faults: the poll client retries an answered 429 or 5xx once and a timeout never
(:mod:`..globus.ops`). A 5xx left after that fails its one request; the sweep goes on with
the next batch, and the tasks it could not observe come first next sweep (PARTIAL). A 429,
a timeout or no answer ends the sweep (asking about other tasks now would only add load).
Nothing is recorded for a task Globus did not describe, and a task is never marked FAILED
because Globus could not be asked. A 401 records ``credential_expired`` once, the loop
stops, tasks keep their state, and ``ensure()`` (called on re-registration) starts it
again, catching up every task.

Catch-up: the poller remembers when it last observed each open task (``observed``, the
planner's input). A task unobserved for ``CATCH_UP_GAP`` intervals or more (the first sweep
of a loop, after a daemon restart or a re-registration; a backoff; repeated failures) may
have changed while nobody watched. When such a task's state is found changed, the sweep
also fetches its Globus event list and records, in order, the transitions it made
meanwhile (:func:`.catchup.catch_up`), not only the state it is in now. A task whose event
list cannot be had now (a temporary failure, or beyond the sweep's catch-up allowance)
stays as it was in the ledger and first in line next sweep; those caught up stay caught
up. A task whose state is unchanged is not asked about (a round trip such as ACTIVE ->
INACTIVE -> ACTIVE entirely inside the gap stays unseen).

Trouble (:mod:`.trouble`): every observed open task's events get its ``needs_attention``;
an episode's start and end are recorded once each. When a task's ``faults`` grew, its newest
error event is fetched (``task_event_list``; ``task_pause_info`` for a task just paused),
as ``Use.CATCH_UP`` of the credential's budget and within what the sweep's catch-up
allowance has left (:meth:`.plan.SweepPlan.take_details`: tasks starting an episode first),
and rides on the state change. A task whose trouble policy says it is doomed is cancelled
once through the durable cancel path, with the reason. When Globus refuses a ``task_list``
filter as too long, the plan re-batches the rest of the sweep smaller
(:meth:`.plan.SweepPlan.after_refusal`) and later sweeps keep that size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...ledger import TaskRow
from ...ledger import events as ev
from ...ledger.errors import RejectedEvent
from ..globus.budget import Use
from ..globus.ops import (
    GlobusOps,
    SessionClients,
    is_auth_failure,
    is_rate_limited,
    is_server_error,
    is_transient,
    retry_after,
)
from ..runtime.logs import get_logger
from ..runtime.metrics import SWEEP_SECONDS
from ..service.sessions import Session, SessionRegistry
from ..service.store import Store
from .catchup import catch_up
from .diff import diff
from .plan import (
    BATCH,
    CATCH_UP_CONCURRENCY,
    CATCH_UP_GAP,
    CATCH_UP_RATE,
    EVENT_PAGE,
    Outcome,
    Pace,
    SweepPlan,
    SweepResult,
    catch_up_allowance,
    next_pace,
    plan_sweep,
    sweep_allowance,
    sweep_cost,
)
from .trouble import STALL_AFTER, follow_batch, newest_error, pause_message

__all__ = ["BATCH", "CATCH_UP_CONCURRENCY", "CATCH_UP_GAP", "CATCH_UP_RATE", "Poller"]

log = get_logger(__name__)

# Events asked for to find a task's newest error: it is among the newest few, as a fault is
# logged when it happens (the list is newest first).
ERROR_PAGE = 10

# Cancels a task on the owner's behalf: (session, task_id, reason).
Canceller = Callable[[Session, str, str], Awaitable[Any]]


class _Batch:
    """What one batch's observation found: the events, and why the sweep must end."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.stop: BaseException | None = None  # ends the sweep (auth, 429, no answer)
        self.server_error: BaseException | None = None  # its tasks wait for the next sweep
        self.caught_up = 0  # event lists fetched (catch-ups and trouble details)
        self.recorded: list[dict[str, Any]] = []  # documents of the tasks recorded now


class Poller:
    def __init__(
        self,
        *,
        store: Store,
        sessions: SessionRegistry,
        ops: GlobusOps,
        interval: float,
        max_backoff: float = 60.0,
        stall_after: float | None = STALL_AFTER,
        cancel: Canceller | None = None,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._ops = ops
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self._allowance = sweep_allowance(rate=ops.request_rate, interval=interval)
        self.stall_after = stall_after
        self._cancel = cancel
        # Task ids per task_list request; shrinks when Globus refuses a filter as too long.
        self.batch = BATCH
        # Per session: tasks this process already cancelled by policy (never twice, also
        # across the session's loops).
        self._policy_cancels: dict[str, set[str]] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        # Per session: when a sweep last observed each open task, and when its previous
        # sweep started (monotonic); a new loop starts with neither (see catch-up).
        self._observed: dict[str, dict[str, float]] = {}
        self._sweep_started: dict[str, float] = {}
        self._open: dict[str, int] = {}
        self.sweeps = 0
        self.requests = 0
        self.last_sweep_requests = 0

    def ensure(self, session: Session) -> None:
        """Make sure the session's loop runs (after registration or re-registration)."""
        loop = self._loops.get(session.session_id)
        if loop is not None and not loop.done():
            self.wake(session.session_id)
            return
        self._wake[session.session_id] = asyncio.Event()
        self._loops[session.session_id] = asyncio.create_task(
            self._run(session), name=f"poller-{session.session_id[:8]}"
        )

    def running(self, session_id: str) -> bool:
        """Whether the session's loop is alive (for the daemon's readiness)."""
        loop = self._loops.get(session_id)
        return loop is not None and not loop.done()

    def wake(self, session_id: str) -> None:
        """Sweep soon instead of at the end of the interval (e.g. after a cancel)."""
        event = self._wake.get(session_id)
        if event is not None:
            event.set()

    def stop(self, session_id: str) -> None:
        loop = self._loops.pop(session_id, None)
        self._forget(session_id)
        self._policy_cancels.pop(session_id, None)
        # Every session closed would otherwise leave its Event behind for good.
        self._wake.pop(session_id, None)
        if loop is not None:
            loop.cancel()

    def _forget(self, session_id: str) -> None:
        self._observed.pop(session_id, None)
        self._sweep_started.pop(session_id, None)
        self._open.pop(session_id, None)

    async def close(self) -> None:
        loops = list(self._loops.values())
        self._loops.clear()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _run(self, session: Session) -> None:
        failures = 0
        early = False
        # A new loop: the daemon just started, or the session was re-registered after its
        # credential stopped working. Either way nobody watched its tasks for a while.
        self._forget(session.session_id)
        while session.usable and self._sessions.find(session.session_id) is session:
            started = time.monotonic()
            try:
                result = await self.sweep(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed", session_id=session.session_id)
                result = SweepResult(outcome=Outcome.ERROR)
            SWEEP_SECONDS.labels(outcome=result.outcome.value).observe(time.monotonic() - started)
            pace = next_pace(
                result,
                failures=failures,
                elapsed=time.monotonic() - started,
                interval=self.interval,
                max_backoff=self.max_backoff,
                open_tasks=self._open.get(session.session_id, 0),
                throttle_window=self._ops.rate_window,
            )
            failures = pace.failures
            clients = session.clients
            if not early and clients is not None and clients.gate is not None:
                cost = sweep_cost(
                    self._open.get(session.session_id, 0),
                    allowance=self._allowance,
                    batch=self.batch,
                )
                clients.gate.swept(cost)
            if result.outcome is Outcome.EXPIRED:
                # Not usable: the loop ends here and ensure() starts a new one at
                # re-registration. Usable: it was registered again during this sweep.
                continue
            wake = self._wake.get(session.session_id)
            if wake is None:
                return  # stopped
            early = await self._pause(session, pace, wake)

    async def _pause(self, session: Session, pace: Pace, wake: asyncio.Event) -> bool:
        """Wait as ``pace`` says, or until woken; with ``pace.early``, also until the
        credential's share for early sweeps has room for this session's next sweep (then
        True: that share paid for it)."""
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(wake.wait())]
        gate = session.clients.gate if session.clients is not None else None
        if pace.early and gate is not None:
            cost = sweep_cost(
                self._open.get(session.session_id, 0), allowance=self._allowance, batch=self.batch
            )
            waits.append(asyncio.ensure_future(gate.early_sweep(cost)))
        try:
            await asyncio.wait(waits, timeout=pace.delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        wake.clear()
        early = waits[-1]
        return len(waits) > 1 and early.done() and not early.cancelled()

    async def _append(self, events: list[Any]) -> None:
        try:
            await self._store.append_many(events)
        except RejectedEvent:
            # One refused change (e.g. a task ended by a concurrent writer) must not hold
            # back the others: append them one by one, skipping what the fold refuses.
            for event in events:
                try:
                    await self._store.append_many([event])
                except RejectedEvent as exc:
                    log.warning(
                        "change not recorded",
                        task_id=getattr(event, "task_id", None),
                        reason=type(exc).__name__,
                    )

    def _plan(self, session_id: str, rows: dict[str, TaskRow], started: float) -> SweepPlan:
        observed = self._observed.setdefault(session_id, {})
        # A task first listed now was submitted after the previous sweep read the ledger:
        # unobserved since then at most (since ever, in a loop's first sweep).
        previous = self._sweep_started.get(session_id, float("-inf"))
        self._sweep_started[session_id] = started
        for task_id in observed.keys() - rows.keys():
            del observed[task_id]
        self._open[session_id] = len(rows)
        plan = plan_sweep(
            rows,
            observed=observed,
            unobserved_since=previous,
            now=started,
            interval=self.interval,
            allowance=self._allowance,
            catch_ups=catch_up_allowance(interval=self.interval),
            batch=self.batch,
        )
        # Keep "unobserved since" of the tasks this sweep may not observe.
        for task_id, at in plan.observed.items():
            observed.setdefault(task_id, at)
        return plan

    async def sweep(self, session: Session) -> SweepResult:
        """One pass over the session's open tasks, as :func:`.plan.plan_sweep` plans it."""
        session_id = session.session_id
        started = time.monotonic()
        rows = {r.task_id: r for r in await self._store.open_tasks(session_id)}
        self.sweeps += 1
        self.last_sweep_requests = 0
        plan = self._plan(session_id, rows, started)
        if not rows:
            return SweepResult(outcome=Outcome.IDLE)
        clients = session.clients
        if clients is None or session.expired:
            return SweepResult(outcome=Outcome.EXPIRED)
        went_through = 0
        caught_up = 0
        sent = 0
        failure: BaseException | None = None
        index = 0
        while index < len(plan.batches):
            batch = plan.batches[index]
            sent += 1
            self.requests += 1
            self.last_sweep_requests += 1
            asked = time.monotonic()
            try:
                page: Any = await self._ops.request(
                    clients,
                    Use.POLL,
                    "task_list",
                    filter=f"task_id:{','.join(batch)}",
                    limit=len(batch),
                )
            except Exception as exc:
                smaller = plan.after_refusal(
                    index,
                    spent=sent,
                    http_status=getattr(exc, "http_status", None),
                    code=getattr(exc, "code", None),
                    message=getattr(exc, "message", None),
                )
                if smaller is not None:
                    plan, self.batch = smaller, smaller.batch
                    log.warning("task_list filter refused as too long", batch=self.batch)
                    continue  # the same tasks, fewer per request
                index += 1
                failure = failure or exc
                if is_server_error(exc):
                    continue  # one request failed; the next batch may well go through
                return await self._failed(session, exc, what="poll", progress=went_through > 0)
            index += 1
            went_through += 1
            found = await self._observe(
                clients,
                plan,
                rows,
                list(page.get("DATA") or []),
                observed=self._observed[session_id],
                asked=asked,
                spent=caught_up,
            )
            caught_up += found.caught_up
            events, cancels, fetched = await self._follow(
                session, clients, plan, rows, found, spent=caught_up
            )
            caught_up += fetched
            if events:
                await self._append(events)
            for task_id, reason in cancels:
                await self._cancel_by_policy(session, task_id, reason)
            if found.stop is not None:
                return await self._failed(session, found.stop, what="event list", progress=True)
            failure = failure or found.server_error
        if failure is None:
            return SweepResult(outcome=Outcome.OK)
        if not went_through:
            return await self._failed(session, failure, what="poll", progress=False)
        log.info(
            "poll partly failed, the rest next sweep",
            session_id=session_id,
            status=getattr(failure, "http_status", None),
            error=type(failure).__name__,
        )
        return SweepResult(outcome=Outcome.PARTIAL)

    async def _follow(
        self,
        session: Session,
        clients: SessionClients,
        plan: SweepPlan,
        rows: dict[str, TaskRow],
        found: _Batch,
        *,
        spent: int,
    ) -> tuple[list[ev.Event], list[tuple[str, str]], int]:
        """The batch's events with the trouble of each task it recorded
        (:func:`.trouble.follow_batch`), the (task_id, reason) pairs a policy cancels now,
        and how many detail requests were sent (the plan chose them, ``spent`` event lists
        having been fetched so far this sweep)."""
        grown, paused = plan.take_details(rows, found.recorded, spent=spent)
        errors, pauses = await self._trouble_details(clients, grown, paused)
        done = self._policy_cancels.setdefault(session.session_id, set())
        events, cancels = follow_batch(
            rows,
            found.recorded,
            found.events,
            now=time.time(),
            stall_after=self.stall_after,
            errors=errors,
            pauses=pauses,
            cancelled=done,
        )
        if self._cancel is None:
            cancels = []
        done.update(task_id for task_id, _ in cancels)
        return events, cancels, len(grown) + len(paused)

    async def _trouble_details(
        self, clients: SessionClients, grown: list[str], paused: list[str]
    ) -> tuple[dict[str, ev.TaskError], dict[str, str]]:
        """The newest error event of each task in ``grown`` (its faults grew) and the pause
        message of each task in ``paused`` (just paused), as ``Use.CATCH_UP`` of the
        credential's budget (its cap paces them like the catch-up's event lists). A task
        whose details cannot be had now is left without (its state is still recorded); an
        auth failure or a rate limit stops the remaining requests."""
        gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
        stopped: list[BaseException] = []
        errors: dict[str, ev.TaskError] = {}
        pauses: dict[str, str] = {}

        async def one(task_id: str, what: str) -> None:
            async with gate:
                if stopped:
                    return
                self.requests += 1
                self.last_sweep_requests += 1
                try:
                    answer: Any = await (
                        self._ops.request(
                            clients, Use.CATCH_UP, "task_event_list", task_id, limit=ERROR_PAGE
                        )
                        if what == "error"
                        else self._ops.request(clients, Use.CATCH_UP, "task_pause_info", task_id)
                    )
                except Exception as exc:
                    if is_auth_failure(exc) or is_transient(exc):
                        stopped.append(exc)
                    log.info(
                        f"{what} details unavailable",
                        task_id=task_id,
                        status=getattr(exc, "http_status", None),
                    )
                    return
            if what == "error":
                error = newest_error(list(answer.get("DATA") or []))
                if error is not None:
                    errors[task_id] = error
            elif message := pause_message(answer.data if hasattr(answer, "data") else answer):
                pauses[task_id] = message

        await asyncio.gather(*(one(t, "error") for t in grown), *(one(t, "pause") for t in paused))
        return errors, pauses

    async def _cancel_by_policy(self, session: Session, task_id: str, reason: str) -> None:
        assert self._cancel is not None
        log.warning("cancelling by trouble policy", task_id=task_id, reason=reason)
        try:
            await self._cancel(session, task_id, reason)
        except Exception as exc:
            # A pending cancel is retried by the submitter; anything else is in its record.
            log.warning("policy cancel not answered", task_id=task_id, error=type(exc).__name__)

    async def _failed(
        self, session: Session, exc: BaseException, *, what: str, progress: bool
    ) -> SweepResult:
        """The result of a sweep ended by ``exc`` after ``progress`` (some requests went
        through) or none."""
        if is_auth_failure(exc):
            if await self._sessions.mark_expired(
                session, "Globus refused the session's credential while polling"
            ):
                log.warning("polling stopped: credential expired", session_id=session.session_id)
            return SweepResult(outcome=Outcome.EXPIRED)
        log.log(
            logging.INFO if is_transient(exc) else logging.WARNING,
            f"{what} failed, backing off",
            session_id=session.session_id,
            status=getattr(exc, "http_status", None),
            error=type(exc).__name__,
        )
        if is_rate_limited(exc):
            return SweepResult(outcome=Outcome.THROTTLED, retry_after=retry_after(exc))
        return SweepResult(outcome=Outcome.STOPPED if progress else Outcome.UNKNOWN)

    async def _observe(
        self,
        clients: SessionClients,
        plan: SweepPlan,
        rows: dict[str, TaskRow],
        docs: list[dict[str, Any]],
        *,
        observed: dict[str, float],
        asked: float,
        spent: int,
    ) -> _Batch:
        """A batch's events, as Globus described the tasks at ``asked``. A task the plan
        wants caught up whose state changed also gets the transitions of its Globus event
        list, within the plan's allowance (``spent`` so far this sweep). Each task recorded
        counts as observed at ``asked``."""
        out = _Batch()
        recorded: set[str] = set()
        changed: dict[str, dict[str, Any]] = {}
        for doc in docs:
            task_id = str(doc["task_id"])
            if task_id not in rows:
                continue
            found = diff(rows, [doc])
            if plan.wants_catch_up(task_id) and any(
                isinstance(e, ev.TaskStateChanged) for e in found
            ):
                changed[task_id] = doc
            else:
                out.events.extend(found)
                recorded.add(task_id)
                observed[task_id] = asked
        now, later = plan.take_catch_ups(list(changed), spent=spent)
        if later:
            log.info("catch-up continues next sweep", tasks=len(later))
        out.caught_up = len(now)
        # The credential's budget paces them (CATCH_UP_RATE at most); this bounds how many
        # wait for it at once.
        gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
        stops: list[BaseException] = []
        server_errors: list[BaseException] = []

        async def one(doc: dict[str, Any]) -> list[ev.Event]:
            task_id = str(doc["task_id"])
            row = rows[task_id]
            async with gate:
                if stops:
                    return []  # left for the next sweep
                self.requests += 1
                self.last_sweep_requests += 1
                try:
                    listing: Any = await self._ops.request(
                        clients, Use.CATCH_UP, "task_event_list", task_id, limit=EVENT_PAGE
                    )
                except Exception as exc:
                    if is_server_error(exc):
                        server_errors.append(exc)
                        return []
                    if is_auth_failure(exc) or is_transient(exc):
                        stops.append(exc)
                        return []
                    # Globus will not list its events (e.g. deleted history): the current
                    # state is all that can be recorded.
                    log.warning(
                        "task events unavailable",
                        task_id=task_id,
                        status=getattr(exc, "http_status", None),
                    )
                    observed[task_id] = asked
                    recorded.add(task_id)
                    return diff(rows, [doc])
            observed[task_id] = asked
            recorded.add(task_id)
            # The ledger's last record of Globus's view of the task, kept by its fold.
            return catch_up(row, doc, list(listing.get("DATA") or []), known_at=row.observed_time)

        for found in await asyncio.gather(*(one(changed[task_id]) for task_id in now)):
            out.events.extend(found)
        out.recorded = [doc for doc in docs if str(doc["task_id"]) in recorded]
        out.stop = stops[0] if stops else None
        out.server_error = server_errors[0] if server_errors else None
        return out
