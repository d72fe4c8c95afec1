"""Durable, exactly-once submits and cancels.

The ledger gets ``submit_requested`` (with the Globus submission_id) before Globus is
called, and ``task_submitted``/``delete_submitted`` or ``submit_failed`` after; the client
is answered only then. A daemon that dies in between finds the submission pending at the
next start and, once the session has a credential again, sends the same document with the
same submission_id: Globus executes a submission id at most once (a repeat is answered
"Duplicate" with the original task_id), so one request yields one task whatever happens.

Outcomes of a Globus call:
- accepted/duplicate: recorded, answered;
- definitive refusal (4xx except 408/429): ``submit_failed``, the mapped error is answered;
- no definitive answer (timeouts, 429, 5xx): the submission stays pending and is retried in
  the background with backoff; the client gets 503 SubmitPending naming the submission_id.
Cancels follow the same pattern with ``cancel_requested``/``cancel_result`` (503
CancelPending, retried in the background the same way).
"""

from __future__ import annotations

import asyncio
from typing import Any

import globus_sdk

from ...ledger import events as ev
from ...ledger.errors import RejectedEvent
from ..errors import CancelPending, DaemonError, NotFound, SubmitPending
from ..globus.ops import GlobusOps, is_auth_failure, is_transient, map_error
from ..runtime.logs import get_logger
from .sessions import Session, SessionRegistry
from .store import Store

__all__ = ["Submitter", "globus_document"]

log = get_logger(__name__)


def globus_document(
    request: ev.TransferRequest | ev.DeleteRequest, submission_id: str
) -> dict[str, Any]:
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


class Submitter:
    def __init__(
        self,
        *,
        store: Store,
        sessions: SessionRegistry,
        ops: GlobusOps,
        max_backoff: float = 60.0,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._ops = ops
        self._max_backoff = max_backoff
        # Submission ids being sent by this process, so a retry never races a first try.
        self._inflight: set[str] = set()
        # Task ids whose cancel is being retried in the background (one loop per task).
        self._cancel_retries: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    # -- submits -------------------------------------------------------------------------

    async def submit(
        self, session: Session, request: ev.TransferRequest | ev.DeleteRequest
    ) -> dict[str, Any]:
        clients = session.require_clients()
        try:
            # Asking Globus for the id first has no side effect: a failure here leaves
            # nothing pending.
            doc = await self._ops.run(clients.call, "get_submission_id")
        except Exception as exc:
            raise await self._failure(session, exc) from None
        submission_id = str(doc["value"])
        await self._store.submit_requested(
            owner=session.owner,
            session_id=session.sid,
            submission_id=submission_id,
            request=request,
        )
        return await self._send(session, submission_id, request, background_retry=True)

    async def _failure(self, session: Session, exc: BaseException) -> DaemonError:
        if is_auth_failure(exc):
            await self._sessions.mark_expired(session, "Globus refused the credential")
        return map_error(exc, sid=session.sid)

    async def _send(
        self,
        session: Session,
        submission_id: str,
        request: ev.TransferRequest | ev.DeleteRequest,
        *,
        background_retry: bool,
    ) -> dict[str, Any]:
        if submission_id in self._inflight:
            raise SubmitPending(submission_id, "it is being sent right now")
        self._inflight.add(submission_id)
        try:
            clients = session.require_clients()
            body = globus_document(request, submission_id)
            send = "submit_transfer" if isinstance(request, ev.TransferRequest) else "submit_delete"
            try:
                result = await self._ops.run(clients.call, send, body)
            except Exception as exc:
                if is_transient(exc):
                    reason = f"{type(exc).__name__} {getattr(exc, 'http_status', '')}".strip()
                    log.warning("submit pending", submission_id=submission_id, reason=reason)
                    if background_retry:
                        self._spawn(self._retry(session, submission_id, request))
                    raise SubmitPending(submission_id, reason) from None
                error = await self._failure(session, exc)
                await self._store.submit_failed(
                    owner=session.owner,
                    session_id=session.sid,
                    submission_id=submission_id,
                    code=str(getattr(exc, "code", None) or error.code),
                    message=error.message,
                )
                raise error from None
            task_id = str(result["task_id"])
            try:
                await self._store.task_submitted(
                    owner=session.owner,
                    session_id=session.sid,
                    submission_id=submission_id,
                    task_id=task_id,
                    request=request,
                )
            except RejectedEvent:
                # Already recorded by an earlier attempt whose answer we lost; fine.
                log.info("submission already recorded", submission_id=submission_id)
            log.info(
                "task submitted",
                task_id=task_id,
                submission_id=submission_id,
                code=result.get("code"),
            )
            return {
                "task_id": task_id,
                "submission_id": submission_id,
                "status": "ACTIVE",
                "code": str(result.get("code") or "Accepted"),
            }
        finally:
            self._inflight.discard(submission_id)

    async def _retry(
        self,
        session: Session,
        submission_id: str,
        request: ev.TransferRequest | ev.DeleteRequest,
    ) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            if not session.usable:
                return  # resumed by resume() when the session is registered again
            try:
                await self._send(session, submission_id, request, background_retry=False)
                return
            except SubmitPending:
                delay = min(self._max_backoff, delay * 2)
            except DaemonError:
                return  # recorded as failed (or credential gone): nothing left to retry

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def resume(self, session: Session) -> None:
        """After (re-)registration: resend pending submissions and cancels of the session."""
        self._spawn(self._resume(session))

    async def _resume(self, session: Session) -> None:
        for pending in await self._store.pending_submissions(session.sid):
            submission_id = pending.submission_id
            request = pending.request
            log.info("resubmitting pending submission", submission_id=submission_id)
            try:
                await self._send(session, submission_id, request, background_retry=True)
            except DaemonError as exc:
                log.warning(
                    "pending submission not sent", submission_id=submission_id, error=exc.code
                )
        for task_id in await self._store.pending_cancels(session.sid):
            try:
                await self.cancel(session, task_id, record_request=False)
            except DaemonError as exc:
                log.warning("pending cancel not sent", task_id=task_id, error=exc.code)

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
        """Cancel a task of the session; ``reason`` (recorded with the request) says why
        when the daemon cancels on its own."""
        row = await self._store.task(task_id)
        if row is None or row.session_id != session.sid:
            raise NotFound(f"no task {task_id!r} in session {session.sid}")
        clients = session.require_clients()
        if record_request:
            await self._store.cancel_requested(
                owner=session.owner, session_id=session.sid, task_id=task_id, reason=reason
            )
        try:
            result = await self._ops.run(clients.call, "cancel_task", task_id)
        except Exception as exc:
            if is_transient(exc):
                reason = f"{type(exc).__name__} {getattr(exc, 'http_status', '')}".strip()
                log.warning("cancel pending", task_id=task_id, reason=reason)
                if background_retry and task_id not in self._cancel_retries:
                    self._cancel_retries.add(task_id)
                    self._spawn(self._retry_cancel(session, task_id))
                raise CancelPending(task_id, reason) from None
            error = await self._failure(session, exc)
            await self._store.cancel_result(
                owner=session.owner,
                session_id=session.sid,
                task_id=task_id,
                code=str(getattr(exc, "code", None) or error.code),
                message=error.message,
            )
            raise error from None
        code = str(result.get("code") or "Canceled")
        message = str(result.get("message") or "")
        await self._store.cancel_result(
            owner=session.owner,
            session_id=session.sid,
            task_id=task_id,
            code=code,
            message=message,
        )
        return {"task_id": task_id, "code": code, "message": message}

    async def _retry_cancel(self, session: Session, task_id: str) -> None:
        delay = 1.0
        try:
            while True:
                await asyncio.sleep(delay)
                if not session.usable:
                    return  # resent by resume() when the session is registered again
                if task_id not in await self._store.pending_cancels(session.sid):
                    return  # answered meanwhile (e.g. the client cancelled again)
                try:
                    await self.cancel(
                        session, task_id, record_request=False, background_retry=False
                    )
                    return
                except CancelPending:
                    delay = min(self._max_backoff, delay * 2)
                except DaemonError:
                    return  # answered (and recorded), or the credential is gone
        finally:
            self._cancel_retries.discard(task_id)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
