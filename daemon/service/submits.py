"""Durable, exactly-once submits and cancels, idempotent under the client's submission_id.

The ledger gets ``submit_requested`` (with the submission_id) before Globus is called, and
``task_submitted``/``delete_submitted`` or ``submit_failed`` after; the client is answered
only then. A daemon that dies in between finds the submission pending at the next start and,
once the session has a credential again, sends the same document with the same
submission_id: Globus executes a submission id at most once (a repeat is answered
"Duplicate" with the original task_id), so one request yields one task whatever happens.

The client may choose the submission_id (as globus-sdk and the Transfer API let it). A submit
whose id the ledger knows is answered from the ledger, never sent again: the task when there
is one, ``QUEUED``/503 ``SubmitPending`` while Globus has not taken it, 409 ``SubmitFailed``
when Globus refused it. An id recorded for another request -- another token's, another
session's, or this token's with other contents -- gets 409 ``SubmissionIdConflict``, the same
answer in every case, so nothing about the other request or its owner leaks.

Every new submit goes through the admission queue (:mod:`.admission`): below Globus's limits
it is sent at once and answered ``{task_id, submission_id, status}`` as before; past them it is
queued and answered ``QUEUED``. Cancels follow the durable pattern with
``cancel_requested``/``cancel_result`` (503 CancelPending, retried in the background); a
queued submit is cancelled by taking it out of the queue (``submit_cancelled``), without Globus.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

from ...ledger import SubmissionRow, TaskRow
from ...ledger import events as ev
from ...ledger.errors import DuplicateSubmission, StorageError
from ...protocol import QUEUED, SUBMITTING
from ..errors import (
    CancelPending,
    DaemonError,
    NotFound,
    StorageUnavailable,
    SubmissionIdConflict,
    SubmitFailed,
    SubmitPending,
)
from ..globus.ops import GlobusOps, is_auth_failure, is_transient, map_error, refusal_code
from ..runtime.logs import get_logger
from . import admission_core
from .admission import Admission, globus_document
from .recording import Recorder
from .sessions import Session, SessionRegistry
from .store import Store

__all__ = ["Submitter", "globus_document", "submission_view"]

log = get_logger(__name__)

Request = ev.TransferRequest | ev.DeleteRequest
# How long a cancel waits for a send of the same submit under way before answering 503.
_SETTLE_SECONDS = 30.0


@contextlib.contextmanager
def _nothing_sent(action: str, **ids: str) -> Iterator[None]:
    """Recording a request failed on storage: nothing was sent to Globus, so the client may
    simply send it again."""
    try:
        yield
    except StorageError as exc:
        raise StorageUnavailable(
            f"the daemon could not record the {action} ({exc}); nothing was sent to Globus: "
            f"{action} again once the daemon's storage works (GET /ready)",
            **ids,
            sent=False,
        ) from None


def submission_view(row: SubmissionRow) -> dict[str, Any]:
    """A task-shaped answer for a submit that has no task yet (or never will)."""
    status = {"queued": QUEUED, "pending": SUBMITTING}.get(row.state, "FAILED")
    fatal = None
    if row.state == "cancelled":
        fatal = {"code": "CANCELED", "description": "cancelled while queued; never sent to Globus"}
    elif row.state == "failed":
        fatal = {"code": row.code or "SubmitFailed", "description": row.message or ""}
    request = row.request
    source: str | None
    destination: str | None
    if isinstance(request, ev.TransferRequest):
        source, destination = request.source, request.destination
    elif request is not None:
        source, destination = request.collection, None
    else:  # its submit_requested event is gone (pruned by hand)
        source = destination = None
    return {
        "task_id": row.task_id,
        "submission_id": row.submission_id,
        "session_id": row.session_id,
        "type": row.type,
        "status": status,
        "nice_status": None,
        "label": request.label if request is not None else None,
        "source": source,
        "destination": destination,
        "bytes_transferred": 0,
        "files_transferred": 0,
        "fatal_error": fatal,
        "request_time": row.request_time,
        "completion_time": None,
        "last_seq": row.last_seq,
    }


@dataclasses.dataclass(eq=False, kw_only=True)
class Submitter:
    store: Store
    sessions: SessionRegistry
    ops: GlobusOps
    max_backoff: float = 60.0
    limits: admission_core.AdmissionLimits | None = None
    submission_ids: str = "local"
    # Globus's answers the ledger could not take yet, recorded once the disk frees.
    _recorder: Recorder = dataclasses.field(init=False)
    admission: Admission = dataclasses.field(init=False)
    # Task ids whose cancel is being retried in the background (one loop per task).
    _cancel_retries: set[str] = dataclasses.field(default_factory=set, init=False)
    _background: set[asyncio.Task[None]] = dataclasses.field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._recorder = Recorder(max_backoff=self.max_backoff)
        self.admission = Admission(
            core=admission_core.AdmissionCore(self.limits),
            store=self.store,
            sessions=self.sessions,
            ops=self.ops,
            recorder=self._recorder,
        )

    def start(self) -> None:
        self.admission.start()

    # -- submission ids ------------------------------------------------------------------

    async def new_submission_id(self, session: Session) -> str:
        """A fresh submission id: a random UUID, or Globus's own (``submission_ids =
        "globus"``; GET /submission_id, what globus-sdk's get_submission_id asks)."""
        if self.submission_ids == "local":
            return str(uuid.uuid4())
        clients = session.require_clients()
        try:
            doc = await self.ops.run(clients.call, "get_submission_id")
        except Exception as exc:
            raise await self._failure(session, exc) from None
        return str(doc["value"])

    # -- submits -------------------------------------------------------------------------

    async def submit(
        self, session: Session, request: Request, *, submission_id: str | None = None
    ) -> dict[str, Any]:
        session.require_clients()
        if submission_id is not None:
            row = await self.store.submission(submission_id)
            if row is not None:
                return await self._repeat(session, row, request)
        else:
            submission_id = await self.new_submission_id(session)
        self.admission.core.check_room(session.session_id)
        try:
            with _nothing_sent("submit", submission_id=submission_id):
                await self.store.submit_requested(
                    session, submission_id=submission_id, request=request
                )
        except DuplicateSubmission:
            # The same id in two concurrent requests: the other one recorded it first.
            row = await self.store.submission(submission_id)
            assert row is not None
            return await self._repeat(session, row, request)
        return await self.admission.submit(session, submission_id, request)

    async def _repeat(
        self, session: Session, row: SubmissionRow, request: Request
    ) -> dict[str, Any]:
        """Answer a submit whose submission_id is recorded, from the record."""
        if (
            row.owner != session.owner
            or row.session_id != session.session_id
            or row.request != request
        ):
            raise SubmissionIdConflict(submission_id=row.submission_id)
        if row.state == "submitted" and row.task_id is not None:
            task = await self.store.task(row.task_id)
            return {
                "task_id": row.task_id,
                "submission_id": row.submission_id,
                "status": task.status if task is not None else "ACTIVE",
                "code": "Duplicate",
            }
        if row.state == "failed":
            raise SubmitFailed(
                submission_id=row.submission_id, globus_code=row.code, reason=row.message or ""
            )
        if row.state in ("queued", "cancelled"):
            view = submission_view(row)
            return {
                "task_id": None,
                "submission_id": row.submission_id,
                "status": view["status"],
                "code": "Duplicate",
            }
        raise SubmitPending(
            submission_id=row.submission_id,
            reason="it is being sent to Globus (or Globus's answer is being recorded)",
        )

    async def _failure(self, session: Session, exc: BaseException) -> DaemonError:
        if is_auth_failure(exc):
            await self.sessions.mark_expired(session, "Globus refused the credential")
        return map_error(exc, session_id=session.session_id)

    async def resume(self, session: Session) -> None:
        """After (re-)registration: the session's queue and pending cancels go on."""
        open_tasks = len(await self.store.open_tasks(session.session_id))
        await self.admission.resume(session, open_tasks)
        self._spawn(self._resume_cancels(session))

    async def _resume_cancels(self, session: Session) -> None:
        for task_id in await self.store.pending_cancels(session.session_id):
            try:
                await self.cancel(session, task_id, record_request=False)
            except DaemonError as exc:
                log.warning("pending cancel not sent", task_id=task_id, error=exc.code)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- task ids or submission ids ------------------------------------------------------

    async def lookup(self, session: Session, ident: str) -> TaskRow | SubmissionRow:
        """The session's task with this task id, or else the submission with this id (its
        task's row once Globus accepted it)."""
        row = await self.store.task(ident)
        if row is not None and row.session_id == session.session_id:
            return row
        sub = await self.store.submission(ident)
        if sub is not None and sub.session_id == session.session_id:
            if sub.task_id is not None:
                task = await self.store.task(sub.task_id)
                if task is not None:
                    return task
            return sub
        raise NotFound(f"no task or submission {ident!r} in session {session.session_id}")

    # -- cancels -------------------------------------------------------------------------

    async def cancel(
        self,
        session: Session,
        task_id: str,
        *,
        record_request: bool = True,
        background_retry: bool = True,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Cancel a task of the session (or a submit without a task, by its submission id);
        ``reason`` (recorded with the request) says why when the daemon cancels on its own."""
        found = await self.lookup(session, task_id)
        if isinstance(found, SubmissionRow):
            return await self._cancel_submission(session, found)
        task_id = found.task_id
        clients = session.require_clients()
        if record_request:
            with _nothing_sent("cancel", task_id=task_id):
                await self.store.cancel_requested(session, task_id=task_id, reason=reason)
        error: DaemonError | None = None
        try:
            result = await self.ops.run(clients.call, "cancel_task", task_id)
        except Exception as exc:
            if is_transient(exc):
                reason = f"{type(exc).__name__} {getattr(exc, 'http_status', '')}".strip()
                log.warning("cancel pending", task_id=task_id, reason=reason)
                if background_retry and task_id not in self._cancel_retries:
                    self._cancel_retries.add(task_id)
                    self._spawn(self._retry_cancel(session, task_id))
                raise CancelPending(task_id=task_id, reason=reason) from None
            error = await self._failure(session, exc)
            code, message = refusal_code(exc, error), error.message
        else:
            code = str(result.get("code") or "Canceled")
            message = str(result.get("message") or "")
        # A refusal is recorded as well as Globus's acceptance: either one answers the cancel.
        recorded = await self._recorder.record(
            "cancel_result",
            task_id,
            lambda: self.store.cancel_result(session, task_id=task_id, code=code, message=message),
        )
        if error is not None:
            raise error
        # Globus's answer is what the client needs; "recorded" says whether the ledger
        # has it yet (the daemon keeps trying).
        return {"task_id": task_id, "code": code, "message": message, "recorded": recorded}

    async def _cancel_submission(self, session: Session, row: SubmissionRow) -> dict[str, Any]:
        """Cancel a submit without a task: out of the queue if it is queued; after its send
        under way if it is being sent; else (Globus may have it) 503 until it has a task."""
        submission_id = row.submission_id
        if row.state == "queued" and await self.admission.take_out(submission_id):
            recorded = await self._recorder.record(
                "submit_cancelled",
                submission_id,
                lambda: self.store.submit_cancelled(session, submission_id=submission_id),
            )
            if not recorded:
                # Out of the queue already, so it is never sent by this process; the ledger
                # learns it once the disk frees (a restart before then would queue it again).
                raise StorageUnavailable(
                    f"the submission {submission_id} was taken out of the admission queue and "
                    "never sent to Globus, but the daemon could not record the cancel yet; it "
                    "keeps trying and then announces it with a submit_cancelled event",
                    submission_id=submission_id,
                    sent=False,
                )
            log.info("queued submission cancelled", submission_id=submission_id)
            return {
                "task_id": None,
                "submission_id": submission_id,
                "code": "Canceled",
                "message": "removed from the daemon's admission queue; never sent to Globus",
            }
        if row.state in ("failed", "cancelled"):
            return {
                "task_id": None,
                "submission_id": submission_id,
                "code": "NotSubmitted",
                "message": f"the submission is {row.state}: there is nothing to cancel",
            }
        if self.admission.core.in_flight(submission_id):
            try:
                await asyncio.wait_for(self.admission.settled(submission_id), _SETTLE_SECONDS)
            except TimeoutError:
                pass
            else:
                return await self.cancel(session, submission_id)
        raise SubmitPending(
            submission_id=submission_id,
            reason=(
                "it has no task id yet, so it cannot be cancelled now; cancel again once it has one"
            ),
        )

    async def _retry_cancel(self, session: Session, task_id: str) -> None:
        delay = 1.0
        try:
            while True:
                await asyncio.sleep(delay)
                if not session.usable:
                    return  # resent by resume() when the session is registered again
                if task_id not in await self.store.pending_cancels(session.session_id):
                    return  # answered meanwhile (e.g. the client cancelled again)
                try:
                    await self.cancel(
                        session, task_id, record_request=False, background_retry=False
                    )
                    return
                except CancelPending:
                    delay = min(self.max_backoff, delay * 2)
                except DaemonError:
                    return  # answered (and recorded), or the credential is gone
        finally:
            self._cancel_retries.discard(task_id)

    async def close(self) -> None:
        await self.admission.close()
        await self._recorder.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
