"""The admission queue's asyncio shell: it performs what :mod:`.admission_core` decides.

Every submit, once its ``submit_requested`` is durable, enters its session's lane here. The
core's plan says which submits go to Globus now and which wait; this shell records the
waiting ones (``submit_queued``) and answers their clients ``QUEUED``, sends the others in
the executor, records what Globus made of them, and feeds the core the ledger's commits
(a task submitted or finished changes the session's count of unfinished tasks). A timer
wakes it when the core says a lane could send again.

A queued submit is taken out with ``submit_dequeued`` before it is sent, so a crash in
between leaves it pending and it is resent with the same submission_id (Globus runs a
submission id once); only submits that are still queued can be cancelled without Globus.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import globus_sdk

from ...ledger import events as ev
from ...ledger.errors import RejectedEvent, StorageError
from ...protocol import QUEUED, EventKind, is_terminal
from ..errors import DaemonError, StorageUnavailable, SubmitPending
from ..globus.ops import GlobusOps, is_auth_failure, is_transient, map_error, refusal_code
from ..runtime.logs import get_logger
from .admission_core import AdmissionCore, Item, Outcome
from .recording import Recorder
from .sessions import Session, SessionRegistry
from .store import Store, StoredEvent

__all__ = ["Admission", "Gate", "globus_document", "is_limit_refusal"]

log = get_logger(__name__)

Request = ev.TransferRequest | ev.DeleteRequest
T = TypeVar("T")


def globus_document(request: Request, submission_id: str) -> dict[str, Any]:
    """The Globus submit body for a recorded request (the same bytes on every resubmit)."""
    if isinstance(request, ev.TransferRequest):
        tdata = globus_sdk.TransferData(
            source_endpoint=request.source,
            destination_endpoint=request.destination,
            label=request.label if request.label is not None else globus_sdk.MISSING,
            submission_id=submission_id,
            sync_level=request.sync_level if request.sync_level else globus_sdk.MISSING,
            verify_checksum=request.verify_checksum,
            preserve_timestamp=request.preserve_timestamp,
            deadline=request.deadline if request.deadline else globus_sdk.MISSING,
            skip_source_errors=request.skip_source_errors or globus_sdk.MISSING,
        )
        for item in request.items:
            tdata.add_item(item.source, item.destination, recursive=item.recursive)
        return dict(tdata)
    ddata = globus_sdk.DeleteData(
        endpoint=request.collection,
        label=request.label if request.label is not None else globus_sdk.MISSING,
        submission_id=submission_id,
        recursive=request.recursive,
    )
    for path in request.paths:
        ddata.add_item(path)
    return dict(ddata)


def is_limit_refusal(exc: BaseException) -> tuple[Outcome, float, str] | None:
    """(outcome, retry_after, code) when Globus refused a submit for one of its limits.

    409 with a code naming the pending-task limit: Globus's docs name the limit (100 pending
    tasks, docs.globus.org/api/transfer/task_behavior) but not the error code; the code
    ``PendingTasksLimitExceeded`` is what the measured runs of issue 14 got (and what the
    simulator sends). 429 is the request rate, answered only after the SDK's own retries
    (globus_sdk/transport/retry_config.py), with its ``Retry-After`` when given.
    """
    if not isinstance(exc, globus_sdk.GlobusAPIError) or isinstance(exc, globus_sdk.AuthAPIError):
        return None
    code = str(exc.code or "")
    if exc.http_status == 409 and "PendingTasksLimit" in code:
        return Outcome.LIMITED, 0.0, code
    if exc.http_status == 429:
        retry_after = 1.0
        raw = exc.headers.get("Retry-After") if exc.headers else None
        if raw is not None:
            with contextlib.suppress(ValueError):
                retry_after = float(raw)
        return Outcome.THROTTLED, retry_after, code or "RequestLimitExceeded"
    return None


class Gate:
    """Spaces a session's submits at least ``1 / rate`` apart at the moment each leaves for
    Globus, in the thread that sends it. The plan paces what it hands out, but sends can
    bunch up on their way (a slow ledger write, a busy thread pool, a loaded machine); the
    gate is the last step, so Globus never sees more than ``rate`` of them in a second."""

    def __init__(self, rate: float) -> None:
        self._spacing = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._last = float("-inf")

    def call(self, fn: Callable[..., T], /, *args: Any) -> T:
        if self._spacing:
            with self._lock:
                wait = self._last + self._spacing - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # in a globus thread, holding only this session's gate
                self._last = time.monotonic()
        return fn(*args)


@dataclass(eq=False)
class _Entry:
    session: Session
    request: Request
    # The client's request held for the answer (None: nobody waits, e.g. after a restart).
    waiter: asyncio.Future[dict[str, Any]] | None = None
    # Recording submit_queued, awaited before the submit is dequeued.
    recording: asyncio.Task[None] | None = None
    was_queued: bool = False


@dataclass(eq=False, kw_only=True)
class Admission:
    """Performs the core's plans: records, sends and answers the submits of every lane."""

    core: AdmissionCore
    store: Store
    sessions: SessionRegistry
    ops: GlobusOps
    recorder: Recorder
    _entries: dict[str, _Entry] = field(default_factory=dict, init=False)
    # Sends under way: done when Globus answered and the answer is recorded.
    _sending: dict[str, asyncio.Future[None]] = field(default_factory=dict, init=False)
    _gates: dict[str, Gate] = field(default_factory=dict, init=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False)
    _background: set[asyncio.Task[Any]] = field(default_factory=set, init=False)
    _closed: bool = field(default=False, init=False)

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self.store.attach(self)

    async def close(self) -> None:
        self._closed = True
        self.store.detach(self)
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def offer(self, events: list[StoredEvent]) -> None:
        """The ledger's commits (a CommitSink): keep the lanes' task counts current."""
        changed = False
        for stored in events:
            session_id = stored.session_id
            if session_id is None:
                continue
            if stored.kind in (EventKind.TASK_SUBMITTED, EventKind.DELETE_SUBMITTED):
                if not is_terminal(stored.data.get("status")):
                    self.core.task_opened(session_id)
                    changed = True
            elif stored.kind == EventKind.TASK_STATE_CHANGED and is_terminal(
                stored.data.get("status")
            ):
                self.core.task_finished(session_id)
                changed = True
        if changed:
            self._step()

    async def resume(self, session: Session, open_tasks: int) -> None:
        """After (re-)registration: the session's lane may send again; submits the ledger
        holds as unanswered (from before a restart) join it in their order."""
        self.core.set_open_tasks(session.session_id, open_tasks)
        for row in await self.store.open_submissions(session.session_id):
            entry = self._entries.get(row.submission_id)
            if entry is not None:
                entry.session = session
                continue
            if row.submission_id in self.core:
                continue
            if row.request is None:
                # Its submit_requested event is gone (pruned by hand): nothing to send.
                log.error("open submission without its request", submission_id=row.submission_id)
                continue
            self._entries[row.submission_id] = _Entry(session=session, request=row.request)
            queued = row.state == "queued"
            self.core.add(
                session.session_id,
                Item(row.submission_id, queued=queued, maybe_sent=not queued),
            )
            self._entries[row.submission_id].was_queued = queued
            log.info("submission resumed", submission_id=row.submission_id, state=row.state)
        for entry in self._entries.values():
            if entry.session.session_id == session.session_id:
                entry.session = session
        self.core.set_usable(session.session_id, True)
        self._step()

    def forget_session(self, session_id: str) -> None:
        self.core.drop_lane(session_id)
        for submission_id in [
            k for k, e in self._entries.items() if e.session.session_id == session_id
        ]:
            entry = self._entries.pop(submission_id)
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_exception(
                    SubmitPending(submission_id=submission_id, reason="the session was closed")
                )

    # -- submits -------------------------------------------------------------------------

    async def submit(
        self, session: Session, submission_id: str, request: Request
    ) -> dict[str, Any]:
        """Admit a recorded submit; the answer once it was sent or queued."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = self._entries.get(submission_id)
        if entry is not None and submission_id in self.core:
            # A re-registration's resume found it pending in the ledger first: wait for that.
            entry.waiter, entry.session = waiter, session
        else:
            self._entries[submission_id] = _Entry(session=session, request=request, waiter=waiter)
            self.core.add(session.session_id, Item(submission_id))
        self._step()
        return await waiter

    def _resolve(self, entry: _Entry, answer: dict[str, Any] | BaseException) -> None:
        waiter, entry.waiter = entry.waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(answer, BaseException):
            waiter.set_exception(answer)
        else:
            waiter.set_result(answer)

    def _step(self) -> None:
        """Ask the core what to do now and start doing it."""
        if self._closed:
            return
        now = time.monotonic()
        plan = self.core.plan(now)
        for _sid, item, why in plan.queue:
            entry = self._entries.get(item.submission_id)
            if entry is None:
                continue
            entry.recording = self._spawn(self._record_queued(item.submission_id, why))
        for _sid, item in plan.send:
            entry = self._entries.get(item.submission_id)
            if entry is None:
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._sending[item.submission_id] = done
            self._spawn(self._send(item, entry, done))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if plan.wake_at is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, plan.wake_at - now)
            self._timer = loop.call_later(delay, self._step)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _record_queued(self, submission_id: str, why: str) -> None:
        entry = self._entries.get(submission_id)
        if entry is None:
            return
        delay = 1.0
        while True:
            try:
                await self.store.submit_queued(
                    entry.session, submission_id=submission_id, reason=why
                )
            except RejectedEvent:
                log.info("submission not queued (already resolved)", submission_id=submission_id)
                return
            except StorageError as exc:
                # Recorded as requested (so resent after a restart), waiting in the queue
                # here; sent once its queued record is written and Globus has room.
                log.error("cannot record, retrying", what="submit_queued", error=str(exc))
                self._resolve(
                    entry,
                    StorageUnavailable(
                        f"the submission {submission_id} waits in the daemon's admission queue "
                        f"(Globus refused it for now: {why}) but the daemon could not record "
                        "that yet; it keeps trying and sends it in its turn: do not resubmit "
                        "(a repeat with the same submission_id is safe)",
                        submission_id=submission_id,
                        sent=False,
                    ),
                )
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
                if self._entries.get(submission_id) is not entry:
                    return  # taken out or resolved meanwhile
                continue
            break
        entry.was_queued = True
        log.info("submission queued", submission_id=submission_id, reason=why)
        self._resolve(
            entry,
            {"task_id": None, "submission_id": submission_id, "status": QUEUED, "code": why},
        )

    async def _send(self, item: Item, entry: _Entry, done: asyncio.Future[None]) -> None:
        submission_id = item.submission_id
        session = entry.session
        outcome, retry_after, code = Outcome.FAILED, 1.0, ""
        try:
            if item.queued:
                if entry.recording is not None:
                    await entry.recording
                await self.store.submit_dequeued(session, submission_id=submission_id)
                item.queued = False
            outcome, retry_after, code = await self._call_globus(submission_id, entry)
        except Exception as exc:  # a ledger failure: the submit stays pending, resent later
            log.error("submission send failed", submission_id=submission_id, error=repr(exc))
            outcome = Outcome.UNANSWERED
            if isinstance(exc, StorageError):
                self._resolve(
                    entry,
                    StorageUnavailable(
                        f"the daemon could not record the submission {submission_id} leaving "
                        f"its admission queue ({exc}); nothing was sent to Globus: it stays "
                        "queued and is sent once the disk frees",
                        submission_id=submission_id,
                        sent=False,
                    ),
                )
            else:
                self._resolve(
                    entry, SubmitPending(submission_id=submission_id, reason=type(exc).__name__)
                )
        finally:
            self._sending.pop(submission_id, None)
            if outcome in (Outcome.ACCEPTED, Outcome.FAILED):
                self._entries.pop(submission_id, None)
            self.core.done(
                submission_id, outcome, time.monotonic(), retry_after=retry_after, code=code
            )
            if not done.done():
                done.set_result(None)
            self._step()

    async def _call_globus(self, submission_id: str, entry: _Entry) -> tuple[Outcome, float, str]:
        session, request = entry.session, entry.request
        try:
            clients = session.require_clients()
        except DaemonError as exc:
            return await self._no_credential(submission_id, entry, exc)
        body = globus_document(request, submission_id)
        send = "submit_transfer" if isinstance(request, ev.TransferRequest) else "submit_delete"
        gate = self._gates.setdefault(session.session_id, Gate(self.core.limits.rate))
        try:
            result = await self.ops.submit(clients, send, body, pace=gate.call)
        except Exception as exc:
            return await self._refused(submission_id, entry, exc)
        task_id = str(result["task_id"])
        admitted = entry.was_queued
        recorded = await self.recorder.record(
            "task_submitted",
            submission_id,
            lambda: self.store.task_submitted(
                session,
                submission_id=submission_id,
                task_id=task_id,
                request=request,
                admitted=admitted,
            ),
        )
        if not recorded:
            # Globus has the task; the ledger will have it once the disk frees (or, after a
            # restart, when the pending submission is sent again and Globus answers
            # "Duplicate" with this task id). A client retry with another submission id
            # would make a second task.
            self._resolve(
                entry,
                StorageUnavailable(
                    f"Globus accepted the submission {submission_id} as task {task_id}, but the "
                    "daemon could not record it yet; it keeps trying and then announces the "
                    "task with a task_submitted event: do not resubmit",
                    submission_id=submission_id,
                    task_id=task_id,
                    sent=True,
                ),
            )
            return Outcome.ACCEPTED, 0.0, ""
        log.info("task submitted", task_id=task_id, submission_id=submission_id)
        self._resolve(
            entry,
            {
                "task_id": task_id,
                "submission_id": submission_id,
                "status": "ACTIVE",
                "code": str(result.get("code") or "Accepted"),
            },
        )
        return Outcome.ACCEPTED, 0.0, ""

    async def _refused(
        self, submission_id: str, entry: _Entry, exc: Exception
    ) -> tuple[Outcome, float, str]:
        session = entry.session
        limited = is_limit_refusal(exc)
        if limited is not None:
            # The client is answered QUEUED when the next plan records it as queued.
            log.info("submission refused for a limit", submission_id=submission_id, code=limited[2])
            return limited
        if is_transient(exc):
            reason = f"{type(exc).__name__} {getattr(exc, 'http_status', '')}".strip()
            log.warning("submit pending", submission_id=submission_id, reason=reason)
            self._resolve(entry, SubmitPending(submission_id=submission_id, reason=reason))
            return Outcome.UNANSWERED, 0.0, type(exc).__name__
        if is_auth_failure(exc):
            await self.sessions.mark_expired(session, "Globus refused the credential")
            return await self._no_credential(
                submission_id, entry, map_error(exc, session_id=session.session_id)
            )
        return await self._failed(
            submission_id, entry, exc, map_error(exc, session_id=session.session_id)
        )

    async def _no_credential(
        self, submission_id: str, entry: _Entry, error: DaemonError
    ) -> tuple[Outcome, float, str]:
        """The credential stopped working. A client waiting for this submit gets the error
        and the submit is recorded failed (it will not happen, as its answer says); one
        already answered QUEUED (or left by a restart) waits for the session to be
        registered again."""
        if entry.waiter is not None and not entry.waiter.done():
            return await self._failed(submission_id, entry, None, error)
        return Outcome.NO_CREDENTIAL, 0.0, error.code

    async def _failed(
        self, submission_id: str, entry: _Entry, exc: Exception | None, error: DaemonError
    ) -> tuple[Outcome, float, str]:
        session = entry.session
        code = refusal_code(exc, error)
        # Globus's refusal is answered either way; the ledger gets it once it can.
        await self.recorder.record(
            "submit_failed",
            submission_id,
            lambda: self.store.submit_failed(
                session,
                submission_id=submission_id,
                code=code,
                message=error.message,
            ),
        )
        self._resolve(entry, error)
        return Outcome.FAILED, 0.0, error.code

    # -- cancels -------------------------------------------------------------------------

    async def settled(self, submission_id: str) -> None:
        """Wait until a send of this submit under way has its answer recorded."""
        done = self._sending.get(submission_id)
        if done is not None:
            await asyncio.shield(done)

    async def take_out(self, submission_id: str) -> bool:
        """Remove a submit recorded as queued and not being sent; False when it cannot be
        (being sent, or Globus may already have it)."""
        if self.core.in_flight(submission_id) or self.core.remove(submission_id) is None:
            return False
        entry = self._entries.pop(submission_id, None)
        if entry is not None and entry.recording is not None:
            await entry.recording  # the cancel is recorded after the queued record
        self._step()
        return True
