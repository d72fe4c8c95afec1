"""The daemon's narrow view of the ledger: one method per thing the daemon records or reads.

Keeping every ledger call here means the routes, the submitter and the poller speak in
daemon terms (``submit_requested(...)``) and the ledger's event classes are built in one
place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypedDict

from ...ledger import Ledger, SessionRow, SubmissionRow, TaskRow
from ...ledger import events as ev
from ...ledger.errors import StorageError
from ...ledger.events import StoredEvent
from ...ledger.feed import CommitSink
from ...ledger.store import RawEvent
from ...protocol import OPEN_STATUSES
from ..runtime.metrics import LEDGER_APPEND_FAILURES, LEDGER_APPEND_SECONDS

__all__ = ["Owned", "RawEvent", "Store", "StoredEvent", "row_dict"]

_OPEN = OPEN_STATUSES


class Owned(Protocol):
    """Whose an event is: a session's owner (a daemon token id) and its session id."""

    owner: str
    session_id: str


class _Whose(TypedDict):
    owner: str
    session_id: str


def _whose(session: Owned) -> _Whose:
    """The fields every session event starts with."""
    return {"owner": session.owner, "session_id": session.session_id}


def row_dict(row: TaskRow) -> dict[str, Any]:
    """A ledger TaskRow as a JSON-able dict."""
    return dict(row.as_dict())


class Store:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        # The last storage failure (None while appends succeed): readiness reports it.
        self.storage_error: str | None = None

    async def _append(self, event: ev.Event) -> StoredEvent:
        return (await self._append_many([event]))[0]

    async def _append_many(self, events: Sequence[ev.Event]) -> list[StoredEvent]:
        try:
            with LEDGER_APPEND_SECONDS.time():
                stored = list(await self.ledger.append_many(list(events)))
        except StorageError as exc:
            LEDGER_APPEND_FAILURES.inc()
            self.storage_error = str(exc)
            raise
        self.storage_error = None
        return stored

    @classmethod
    async def open(cls, path: Path, *, min_seq: int = 0) -> Store:
        return cls(await Ledger.open(path, min_seq=min_seq))

    async def close(self) -> None:
        await self.ledger.close()

    async def head(self) -> int:
        return int(await self.ledger.head())

    # -- sessions ------------------------------------------------------------------------

    async def session_opened(
        self,
        *,
        owner: str,
        session_id: str,
        local_collection: str | None,
        auth: str,
        policy: ev.TroublePolicy | None = None,
    ) -> StoredEvent:
        return await self._append(
            ev.SessionOpened(
                owner=owner,
                session_id=session_id,
                local_collection=local_collection,
                auth="refresh_token" if auth == "refresh_token" else "access_token",
                policy=policy,
            )
        )

    async def session_closed(self, *, owner: str, session_id: str) -> StoredEvent:
        return await self._append(ev.SessionClosed(owner=owner, session_id=session_id))

    async def credential_expired(self, session: Owned, *, message: str) -> StoredEvent:
        return await self._append(ev.CredentialExpired(**_whose(session), message=message))

    async def open_sessions(self) -> list[SessionRow]:
        """Every session opened and not closed, oldest first."""
        return await self.ledger.open_sessions()

    # -- submits -------------------------------------------------------------------------

    async def submit_requested(
        self, session: Owned, *, submission_id: str, request: ev.TransferRequest | ev.DeleteRequest
    ) -> StoredEvent:
        kind: ev.TaskType = "TRANSFER" if isinstance(request, ev.TransferRequest) else "DELETE"
        return await self._append(
            ev.SubmitRequested(
                **_whose(session), submission_id=submission_id, type=kind, request=request
            )
        )

    async def task_submitted(
        self,
        session: Owned,
        *,
        submission_id: str,
        task_id: str,
        request: ev.TransferRequest | ev.DeleteRequest,
        admitted: bool = False,
    ) -> StoredEvent:
        """Record the task; ``admitted`` (it waited in the queue) adds the submit_admitted
        notification naming both ids, in the same transaction."""
        # The two kinds have the same fields; a delete's source is its collection.
        kind: type[ev.TaskSubmitted | ev.DeleteSubmitted]
        destination: str | None
        if isinstance(request, ev.TransferRequest):
            kind, source, destination = ev.TaskSubmitted, request.source, request.destination
        else:
            kind, source, destination = ev.DeleteSubmitted, request.collection, None
        event = kind(
            **_whose(session),
            submission_id=submission_id,
            task_id=task_id,
            type="TRANSFER" if kind is ev.TaskSubmitted else "DELETE",
            label=request.label,
            source=source,
            destination=destination,
            status="ACTIVE",
            policy=request.policy,
        )
        if not admitted:
            return await self._append(event)
        note = ev.SubmitAdmitted(**_whose(session), submission_id=submission_id, task_id=task_id)
        return (await self._append_many([event, note]))[0]

    async def submit_failed(
        self, session: Owned, *, submission_id: str, code: str, message: str
    ) -> StoredEvent:
        return await self._append(
            ev.SubmitFailed(
                **_whose(session), submission_id=submission_id, code=code, message=message
            )
        )

    async def pending_submissions(self, session_id: str | None = None) -> list[SubmissionRow]:
        return list(await self.ledger.pending_submissions(session_id=session_id))

    async def open_submissions(self, session_id: str | None = None) -> list[SubmissionRow]:
        """Submits Globus has not answered (pending or queued), in request order."""
        return list(await self.ledger.open_submissions(session_id=session_id))

    async def submission(self, submission_id: str) -> SubmissionRow | None:
        return await self.ledger.submission(submission_id)

    async def submit_queued(
        self, session: Owned, *, submission_id: str, reason: str
    ) -> StoredEvent:
        return await self.ledger.append(
            ev.SubmitQueued(**_whose(session), submission_id=submission_id, reason=reason)
        )

    async def submit_dequeued(self, session: Owned, *, submission_id: str) -> StoredEvent:
        return await self.ledger.append(
            ev.SubmitDequeued(**_whose(session), submission_id=submission_id)
        )

    async def submit_cancelled(self, session: Owned, *, submission_id: str) -> StoredEvent:
        return await self.ledger.append(
            ev.SubmitCancelled(**_whose(session), submission_id=submission_id)
        )

    # -- cancels -------------------------------------------------------------------------

    async def cancel_requested(
        self, session: Owned, *, task_id: str, reason: str | None = None
    ) -> StoredEvent:
        return await self._append(
            ev.CancelRequested(**_whose(session), task_id=task_id, reason=reason)
        )

    async def cancel_result(
        self, session: Owned, *, task_id: str, code: str, message: str
    ) -> StoredEvent:
        return await self._append(
            ev.CancelResult(**_whose(session), task_id=task_id, code=code, message=message)
        )

    async def pending_cancels(self, session_id: str) -> list[str]:
        """Task ids whose cancel was requested and never answered (a crash in between)."""
        return [row.task_id for row in await self.ledger.pending_cancels(session_id=session_id)]

    # -- tasks ---------------------------------------------------------------------------

    async def append_many(self, events: Sequence[ev.Event]) -> list[StoredEvent]:
        if not events:
            return []
        return await self._append_many(events)

    async def task(self, task_id: str) -> TaskRow | None:
        return await self.ledger.task(task_id)

    async def open_tasks(self, session_id: str) -> list[TaskRow]:
        """Every ACTIVE/INACTIVE task of a session (the poller's diff input); each row's
        ``observed_time`` is where a catch-up starts. One status at a time: each is then one
        range of the (session, status) index, however many finished tasks the session has."""
        out: list[TaskRow] = []
        page = 1000
        for status in _OPEN:
            offset = 0
            while True:
                rows = await self.ledger.tasks(
                    session_id=session_id, status=status, limit=page, offset=offset
                )
                out.extend(rows)
                offset += len(rows)
                if len(rows) < page:
                    break
        return out

    async def open_task_count(self) -> int:
        count = 0
        while True:
            rows = await self.ledger.tasks(status=_OPEN, limit=1000, offset=count)
            count += len(rows)
            if len(rows) < 1000:
                return count

    async def tasks(self, **filters: Any) -> list[TaskRow]:
        return list(await self.ledger.tasks(**filters))

    def events_since(self, seq: int, **filters: Any) -> AsyncIterator[StoredEvent]:
        return self.ledger.events_since(seq, **filters)

    def raw_events_since(self, seq: int, **filters: Any) -> AsyncIterator[RawEvent]:
        """Events with their data as stored JSON text (for serving them as they are)."""
        return self.ledger.raw_events_since(seq, **filters)

    def envelope_pages(self, seq: int, **filters: Any) -> AsyncIterator[list[tuple[int, str]]]:
        """Pages of (seq, envelope JSON text) after ``seq``, for a batched replay."""
        return self.ledger.envelope_pages(seq, **filters)

    def attach(self, sink: CommitSink) -> int:
        return self.ledger.attach(sink)

    def detach(self, sink: CommitSink) -> None:
        self.ledger.detach(sink)
