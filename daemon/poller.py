"""The poller: one loop per session with a credential, one bulk sweep per interval.

A sweep reads the session's non-terminal tasks from the ledger, asks Globus for all of them
with ``task_list`` and ``filter=task_id:a,b,...`` (up to 100 ids per request, so N tasks cost
ceil(N/100) requests instead of N), and appends what :func:`.diff.diff` finds. A session's
sweeps never overlap: its loop awaits each sweep before sleeping.

Faults: 429/5xx/timeouts mean "unknown": nothing is recorded and the loop backs off
(doubling, capped); a task is never marked FAILED because Globus could not be asked. A 401
records ``credential_expired`` once, the loop stops, tasks keep their state, and
``ensure()`` (called on re-registration) starts it again, catching up every task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from radical.orbit.ledger.errors import RejectedEvent

from .diff import diff
from .globus_ops import GlobusOps, is_auth_failure, is_transient
from .logs import get_logger
from .sessions import Session, SessionRegistry
from .store import Store

__all__ = ["BATCH", "Poller"]

log = get_logger(__name__)

# Task ids per task_list request; Globus pages at most 1000 documents, but long filters
# make long URLs, and 100 ids (~3.7 kB) stays well inside every proxy's limit.
BATCH = 100


class Poller:
    def __init__(
        self,
        *,
        store: Store,
        sessions: SessionRegistry,
        ops: GlobusOps,
        interval: float,
        max_backoff: float = 60.0,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._ops = ops
        self.interval = interval
        self.max_backoff = max(max_backoff, interval)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
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
                failures += 1
                delay = min(self.max_backoff, self.interval * 2**failures)
            else:
                failures = 0
                delay = max(0.0, self.interval - (time.monotonic() - started))
            wake = self._wake[session.sid]
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
        """One pass over the session's open tasks: "ok", "idle", "unknown" or "expired"."""
        rows = {str(r["task_id"]): r for r in await self._store.open_tasks(session.sid)}
        self.sweeps += 1
        self.last_sweep_requests = 0
        if not rows:
            return "idle"
        clients = session.clients
        if clients is None or session.expired:
            return "expired"
        ids = sorted(rows)
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            self.requests += 1
            self.last_sweep_requests += 1
            try:
                page: Any = await self._ops.run(
                    clients.poll.task_list, filter=f"task_id:{','.join(batch)}", limit=len(batch)
                )
            except Exception as exc:
                if is_auth_failure(exc):
                    if await self._sessions.mark_expired(
                        session, "Globus refused the session's credential while polling"
                    ):
                        log.warning("polling stopped: credential expired", sid=session.sid)
                    return "expired"
                if is_transient(exc):
                    log.info(
                        "poll unknown, backing off",
                        sid=session.sid,
                        status=getattr(exc, "http_status", None),
                        error=type(exc).__name__,
                    )
                    return "unknown"
                log.warning(
                    "poll failed",
                    sid=session.sid,
                    error=type(exc).__name__,
                    status=getattr(exc, "http_status", None),
                )
                return "unknown"
            docs = list(page.get("DATA") or [])
            events = diff(rows, docs)
            if events:
                await self._append(events)
        return "ok"
