"""The poller: one loop per session with a credential, one bulk sweep per interval.

A sweep reads the session's non-terminal tasks from the ledger, asks Globus for all of them
with ``task_list`` and ``filter=task_id:a,b,...`` (up to 100 ids per request, so N tasks cost
ceil(N/100) requests instead of N), and appends what :func:`.diff.diff` finds. A session's
sweeps never overlap: its loop awaits each sweep before sleeping.

Faults: the poll client retries an answered 429 or 5xx once and a timeout never
(:mod:`.globus_ops`). A 5xx left after that fails its one request; the sweep goes on with
the next batch, and the tasks it could not observe come first next sweep ("partial", at the
normal interval). A 429, a timeout or no answer ends the sweep: one interval more before the
next if some requests had gone through ("stopped"), else the loop backs off, doubling up to
``max_backoff`` ("unknown"). Nothing is recorded for a task Globus did not describe, and a
task is never marked FAILED because Globus could not be asked. A 401 records
``credential_expired`` once, the loop stops, tasks keep their state, and ``ensure()``
(called on re-registration) starts it again, catching up every task.

Catch-up: the poller remembers when it last observed each open task. A task unobserved for
``CATCH_UP_GAP`` intervals or more (the first sweep of a loop, after a daemon restart or a
re-registration; a backoff; repeated failures) may have changed while nobody watched. When
such a task's state is found changed, the sweep also fetches its Globus event list and
records, in order, the transitions it made meanwhile (:func:`.catchup.catch_up`), not only
the state it is in now, at most ``CATCH_UP_RATE`` event lists per second per session (inside
Globus's per-user request budget). A task whose event list cannot be had for a temporary
reason stays as it was in the ledger and first in line next sweep; those caught up stay
caught up. A task whose state is unchanged is not asked about (a round trip such as
ACTIVE -> INACTIVE -> ACTIVE entirely inside the gap stays unseen).

Trouble (:mod:`.trouble`): every observed open task's events get its ``needs_attention``;
an episode's start and end are recorded once each. When a task's ``faults`` grew, its newest
error event is fetched (``task_event_list``; ``task_pause_info`` for a task just paused;
at most ``TROUBLE_RATE`` per second per session and ``TROUBLE_RATE`` x interval per sweep,
tasks starting an episode first) and rides on the state change. A task whose trouble policy
says it is doomed is cancelled once through the durable cancel path, with the reason. When
Globus refuses a ``task_list`` filter as too long, the batch shrinks (to the maximum the
answer names, else by half) for this sweep and the following ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ...ledger import events as ev
from ...ledger.errors import RejectedEvent
from ..globus.ops import (
    GlobusOps,
    SessionClients,
    is_auth_failure,
    is_server_error,
    is_transient,
)
from ..runtime.logs import get_logger
from ..service.sessions import Session, SessionRegistry
from ..service.store import Store
from .catchup import catch_up
from .diff import diff
from .trouble import (
    STALL_AFTER,
    field,
    filter_refused,
    follow,
    newest_error,
    pause_message,
    smaller_batch,
)

__all__ = [
    "BATCH",
    "CATCH_UP_CONCURRENCY",
    "CATCH_UP_GAP",
    "CATCH_UP_RATE",
    "TROUBLE_RATE",
    "Poller",
]

log = get_logger(__name__)

# Task ids per task_list request; Globus pages at most 1000 documents, but long filters
# make long URLs, and 100 ids (~3.7 kB) stays well inside every proxy's limit.
BATCH = 100
# Event lists fetched at once by a catch-up sweep: after a restart every finished task needs
# one, and Globus rate-limits a user at about 20 requests per second.
CATCH_UP_CONCURRENCY = 4
# Event lists a catch-up sweep starts per second. Concurrency alone does not bound the rate
# (4 at a time at 50 ms each is 80/s: the fault soak saw a session back from a long backoff
# fetch ~190 in a few seconds and its user refused by Globus's 20/s limit); the session's
# polls and submits share that budget.
CATCH_UP_RATE = 8.0
# A task unobserved for this many poll intervals or more gets the catch-up when found
# changed. Shorter gaps (a failed request, one backoff step) are like a normal interval:
# asking for event lists after each would cost more requests than the faults saved, and a
# soak with 15% errors fell thousands of tasks behind that way.
CATCH_UP_GAP = 4
# Events per event_list request (Globus pages at most 1000); the newest come first, and only
# those after the ledger's last observation matter.
EVENT_PAGE = 1000
# Error fetches a sweep starts per second (one task_event_list per task whose faults grew,
# one task_pause_info per task just paused). They run after the catch-up, never beside it,
# so a session stays at this rate plus its polls, inside Globus's ~20/s per user. A sweep
# makes at most TROUBLE_RATE x interval of them, tasks just starting to need attention
# first, so 100 tasks failing at once delay no sweep by more than an interval; the others
# are recorded without their error this time and get it at their next fault.
TROUBLE_RATE = 8.0
# Events asked for to find the newest error: it is among the newest few, as a fault is
# logged when it happens (the list is newest first).
ERROR_PAGE = 10

# Cancels a task on the owner's behalf: (session, task_id, reason).
Canceller = Callable[[Session, str, str], Awaitable[Any]]


class _Pacer:
    """Spaces the request starts of one catch-up batch ``1/rate`` seconds apart; batches run
    one after the other and a session's sweeps never overlap, so the session keeps the pace."""

    def __init__(self, rate: float) -> None:
        self._step = 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self._step
        if start > now:
            await asyncio.sleep(start - now)


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
        self.stall_after = stall_after
        self._cancel = cancel
        # Task ids per task_list request; shrinks when Globus refuses a filter as too long.
        self.batch = BATCH
        # Per session: tasks this process already cancelled by policy (never twice), and the
        # trouble details the current sweep may still fetch.
        self._policy_cancels: dict[str, set[str]] = {}
        self._details_left: dict[str, int] = {}
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        # Per session: when a sweep last observed each open task, and when its previous
        # sweep started (monotonic); a new loop starts with neither (see catch-up).
        self._seen: dict[str, dict[str, float]] = {}
        self._sweep_started: dict[str, float] = {}
        self.sweeps = 0
        self.requests = 0
        self.last_sweep_requests = 0

    def ensure(self, session: Session) -> None:
        """Make sure the session's loop runs (after registration or re-registration)."""
        loop = self._loops.get(session.sid)
        if loop is not None and not loop.done():
            self.wake(session.sid)
            return
        self._wake[session.sid] = asyncio.Event()
        self._loops[session.sid] = asyncio.create_task(
            self._run(session), name=f"poller-{session.sid[:8]}"
        )

    def wake(self, sid: str) -> None:
        """Sweep soon instead of at the end of the interval (e.g. after a cancel)."""
        event = self._wake.get(sid)
        if event is not None:
            event.set()

    def stop(self, sid: str) -> None:
        loop = self._loops.pop(sid, None)
        self._seen.pop(sid, None)
        self._sweep_started.pop(sid, None)
        self._policy_cancels.pop(sid, None)
        self._details_left.pop(sid, None)
        # Every session closed would otherwise leave its Event behind for good.
        self._wake.pop(sid, None)
        if loop is not None:
            loop.cancel()

    async def close(self) -> None:
        loops = list(self._loops.values())
        self._loops.clear()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _run(self, session: Session) -> None:
        failures = 0
        # A new loop: the daemon just started, or the session was re-registered after its
        # credential stopped working. Either way nobody watched its tasks for a while.
        self._seen.pop(session.sid, None)
        self._sweep_started.pop(session.sid, None)
        while session.usable and self._sessions.find(session.sid) is session:
            started = time.monotonic()
            try:
                outcome = await self.sweep(session)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed", sid=session.sid)
                outcome = "error"
            if outcome == "expired":
                # Not usable: the loop ends here and ensure() starts a new one at
                # re-registration. Usable: it was registered again during this sweep.
                continue
            if outcome in ("unknown", "error"):
                # Globus answered nothing useful: back off, doubling.
                failures += 1
                delay = min(self.max_backoff, self.interval * 2**failures)
            elif outcome == "stopped":
                # Some went through before a 429 or a timeout: one step back, no more.
                failures = 0
                delay = min(self.max_backoff, self.interval * 2)
            else:
                failures = 0
                delay = max(0.0, self.interval - (time.monotonic() - started))
            wake = self._wake.get(session.sid)
            if wake is None:
                return  # stopped
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
            wake.clear()

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

    async def sweep(self, session: Session) -> str:
        """One pass over the session's open tasks: "ok", "partial" (some requests failed
        with a server error, the rest went through), "stopped" (ended by a 429 or a timeout
        after some went through), "idle", "unknown" (nothing went through) or "expired"."""
        sid = session.sid
        started = time.monotonic()
        rows = {str(r["task_id"]): r for r in await self._store.open_tasks(sid)}
        self.sweeps += 1
        self.last_sweep_requests = 0
        self._details_left[sid] = max(1, int(TROUBLE_RATE * self.interval))
        seen = self._seen.setdefault(sid, {})
        # A task first listed now was submitted after the previous sweep read the ledger:
        # unobserved since then at most (since ever, in a loop's first sweep).
        previous = self._sweep_started.get(sid, float("-inf"))
        self._sweep_started[sid] = started
        for task_id in seen.keys() - rows.keys():
            del seen[task_id]
        for task_id in rows:
            seen.setdefault(task_id, previous)
        stale_before = started - CATCH_UP_GAP * self.interval
        if not rows:
            return "idle"
        clients = session.clients
        if clients is None or session.expired:
            return "expired"
        # The least recently observed first, so a sweep cut short never starves the same ones.
        ids = sorted(rows, key=lambda t: (seen[t], t))
        went_through = 0
        failure: BaseException | None = None
        start = 0
        while start < len(ids):
            batch = ids[start : start + self.batch]
            self.requests += 1
            self.last_sweep_requests += 1
            asked = time.monotonic()
            try:
                page: Any = await self._ops.run(
                    clients.poll.task_list, filter=f"task_id:{','.join(batch)}", limit=len(batch)
                )
            except Exception as exc:
                if len(batch) > 1 and filter_refused(
                    http_status=getattr(exc, "http_status", None),
                    code=getattr(exc, "code", None),
                    message=getattr(exc, "message", None),
                ):
                    self.batch = smaller_batch(len(batch), message=getattr(exc, "message", None))
                    log.warning("task_list filter refused as too long", batch=self.batch)
                    continue  # the same tasks, fewer per request
                start += len(batch)
                failure = failure or exc
                if is_server_error(exc):
                    continue  # one request failed; the next batch may well go through
                return await self._failed(session, exc, what="poll", progress=went_through > 0)
            start += len(batch)
            went_through += 1
            docs = list(page.get("DATA") or [])
            events, stop, trouble = await self._observe(
                clients, rows, docs, seen=seen, asked=asked, stale_before=stale_before
            )
            observed = [d for d in docs if seen.get(str(d.get("task_id"))) == asked]
            events, cancels = await self._follow(session, clients, rows, observed, events)
            if events:
                await self._append(events)
            for task_id, reason in cancels:
                await self._cancel_by_policy(session, task_id, reason)
            if stop is not None:
                return await self._failed(session, stop, what="event list", progress=True)
            failure = failure or trouble
        if failure is None:
            return "ok"
        if not went_through:
            return await self._failed(session, failure, what="poll", progress=False)
        log.info(
            "poll partly failed, the rest next sweep",
            sid=sid,
            status=getattr(failure, "http_status", None),
            error=type(failure).__name__,
        )
        return "partial"

    async def _follow(
        self,
        session: Session,
        clients: SessionClients,
        rows: dict[str, dict[str, Any]],
        docs: list[dict[str, Any]],
        events: list[ev.Event],
    ) -> tuple[list[ev.Event], list[tuple[str, str]]]:
        """The batch's events with the trouble of each observed task (:func:`.trouble.follow`),
        and the (task_id, reason) pairs its policy cancels."""
        now = time.time()
        by_task: dict[str | None, list[ev.Event]] = {}
        for event in events:
            by_task.setdefault(getattr(event, "task_id", None), []).append(event)
        grown = [
            d
            for d in docs
            if int(d.get("faults") or 0) > int(field(rows[str(d["task_id"])], "faults") or 0)
            and d.get("status") in ("ACTIVE", "INACTIVE")
        ]
        paused = [
            str(d["task_id"])
            for d in docs
            if d.get("is_paused") is True and not field(rows[str(d["task_id"])], "is_paused")
        ]
        # Tasks whose episode starts now first: their first notification says why.
        grown.sort(key=lambda d: field(rows[str(d["task_id"])], "needs_attention") is not None)
        left = self._details_left.get(session.sid, 0)
        paused = paused[:left]
        grown = grown[: max(0, left - len(paused))]
        self._details_left[session.sid] = left - len(paused) - len(grown)
        errors, pauses = await self._trouble_details(
            clients, [str(d["task_id"]) for d in grown], paused
        )
        out: list[ev.Event] = []
        cancels: list[tuple[str, str]] = []
        done = self._policy_cancels.setdefault(session.sid, set())
        for doc in docs:
            task_id = str(doc["task_id"])
            found, cancel = follow(
                rows[task_id],
                doc,
                by_task.pop(task_id, []),
                now=now,
                stall_after=self.stall_after,
                error=errors.get(task_id),
                pause_message=pauses.get(task_id),
            )
            out.extend(found)
            if cancel is not None and task_id not in done and self._cancel is not None:
                done.add(task_id)
                cancels.append((task_id, cancel))
        for rest in by_task.values():
            out.extend(rest)
        return out, cancels

    async def _trouble_details(
        self, clients: SessionClients, grown: list[str], paused: list[str]
    ) -> tuple[dict[str, ev.TaskError], dict[str, str]]:
        """The newest error event of each task in ``grown`` (its faults grew) and the pause
        message of each task in ``paused`` (just paused), paced at ``TROUBLE_RATE``. A task
        whose details cannot be had now is left without (its state is still recorded); an
        auth failure or a rate limit stops the remaining requests."""
        gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
        pace = _Pacer(TROUBLE_RATE)
        stopped: list[BaseException] = []
        errors: dict[str, ev.TaskError] = {}
        pauses: dict[str, str] = {}

        async def one(task_id: str, what: str) -> None:
            async with gate:
                await pace.wait()
                if stopped:
                    return
                self.requests += 1
                self.last_sweep_requests += 1
                try:
                    answer: Any = await (
                        self._ops.run(clients.poll.task_event_list, task_id, limit=ERROR_PAGE)
                        if what == "error"
                        else self._ops.run(clients.poll.task_pause_info, task_id)
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
    ) -> str:
        """The outcome of a sweep ended by ``exc``: "expired", "stopped" (after some
        requests went through) or "unknown"."""
        if is_auth_failure(exc):
            if await self._sessions.mark_expired(
                session, "Globus refused the session's credential while polling"
            ):
                log.warning("polling stopped: credential expired", sid=session.sid)
            return "expired"
        log.log(
            logging.INFO if is_transient(exc) else logging.WARNING,
            f"{what} failed, backing off",
            sid=session.sid,
            status=getattr(exc, "http_status", None),
            error=type(exc).__name__,
        )
        return "stopped" if progress else "unknown"

    async def _observe(
        self,
        clients: SessionClients,
        rows: dict[str, dict[str, Any]],
        docs: list[dict[str, Any]],
        *,
        seen: dict[str, float],
        asked: float,
        stale_before: float,
    ) -> tuple[list[ev.Event], BaseException | None, BaseException | None]:
        """A batch's events, as Globus described the tasks at ``asked``. A task unobserved
        since before ``stale_before`` whose state changed also gets the transitions of its
        Globus event list (catch-up). ``seen`` is updated for each task recorded. Returns the
        events, the failure that ends the sweep (auth, rate limit, no answer: asking about
        other tasks now would only add load) and the first server error (its task stays as
        it was, for the next sweep)."""
        out: list[ev.Event] = []
        changed: list[dict[str, Any]] = []
        for doc in docs:
            task_id = str(doc["task_id"])
            found = diff(rows, [doc])
            if seen[task_id] < stale_before and any(
                isinstance(e, ev.TaskStateChanged) for e in found
            ):
                changed.append(doc)
            else:
                out.extend(found)
                seen[task_id] = asked
        gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)
        pace = _Pacer(CATCH_UP_RATE)
        stops: list[BaseException] = []
        server_errors: list[BaseException] = []

        async def one(doc: dict[str, Any]) -> list[ev.Event]:
            task_id = str(doc["task_id"])
            row = rows[task_id]
            async with gate:
                await pace.wait()
                if stops:
                    return []  # left for the next sweep
                self.requests += 1
                self.last_sweep_requests += 1
                try:
                    listing: Any = await self._ops.run(
                        clients.poll.task_event_list, row["task_id"], limit=EVENT_PAGE
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
                        task_id=row["task_id"],
                        status=getattr(exc, "http_status", None),
                    )
                    seen[task_id] = asked
                    return diff(rows, [doc])
            known_at = await self._store.observed_at(task_id, created_seq=int(row["created_seq"]))
            seen[task_id] = asked
            return catch_up(
                row,
                doc,
                list(listing.get("DATA") or []),
                known_at=known_at if known_at is not None else float("-inf"),
            )

        for found in await asyncio.gather(*(one(doc) for doc in changed)):
            out.extend(found)
        return out, stops[0] if stops else None, server_errors[0] if server_errors else None
