"""The daemon's narrow view of the ledger: one method per thing the daemon records or reads.

Keeping every ledger call here means the routes, the submitter and the poller speak in
daemon terms (``submit_requested(...)``) and the ledger's event classes are built in one
place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ...ledger import Ledger, SubmissionRow, TaskRow
from ...ledger import events as ev
from ...ledger.events import StoredEvent
from ...ledger.feed import CommitSink

__all__ = ["Store", "StoredEvent", "row_dict"]

_OPEN = ("ACTIVE", "INACTIVE")


def row_dict(row: TaskRow) -> dict[str, Any]:
    """A ledger TaskRow as a JSON-able dict."""
    return dict(row.as_dict())


class Store:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @classmethod
    async def open(cls, path: Path) -> Store:
        return cls(await Ledger.open(path))

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
        return await self.ledger.append(
            ev.SessionOpened(
                owner=owner,
                session_id=session_id,
                local_collection=local_collection,
                auth="refresh_token" if auth == "refresh_token" else "access_token",
                policy=policy,
            )
        )

    async def session_closed(self, *, owner: str, session_id: str) -> StoredEvent:
        return await self.ledger.append(ev.SessionClosed(owner=owner, session_id=session_id))

    async def credential_expired(self, *, owner: str, session_id: str, message: str) -> StoredEvent:
        return await self.ledger.append(
            ev.CredentialExpired(owner=owner, session_id=session_id, message=message)
        )

    async def open_sessions(
        self,
    ) -> list[tuple[str, str, str | None, ev.TroublePolicy | None]]:
        """(sid, owner, local_collection, policy) of every session opened and not closed."""
        found: dict[str, tuple[str, str, str | None, ev.TroublePolicy | None]] = {}
        async for stored in self.ledger.events_since(0, kinds=("session_opened", "session_closed")):
            sid = stored.session_id
            if sid is None or stored.owner is None:
                continue
            if stored.kind == "session_closed":
                found.pop(sid, None)
            else:
                opened = stored.event()
                policy = opened.policy if isinstance(opened, ev.SessionOpened) else None
                found[sid] = (sid, stored.owner, stored.data.get("local_collection"), policy)
        return list(found.values())

    # -- submits -------------------------------------------------------------------------

    async def submit_requested(
        self,
        *,
        owner: str,
        session_id: str,
        submission_id: str,
        request: ev.TransferRequest | ev.DeleteRequest,
    ) -> StoredEvent:
        kind: ev.TaskType = "TRANSFER" if isinstance(request, ev.TransferRequest) else "DELETE"
        return await self.ledger.append(
            ev.SubmitRequested(
                owner=owner,
                session_id=session_id,
                submission_id=submission_id,
                type=kind,
                request=request,
            )
        )

    async def task_submitted(
        self,
        *,
        owner: str,
        session_id: str,
        submission_id: str,
        task_id: str,
        request: ev.TransferRequest | ev.DeleteRequest,
    ) -> StoredEvent:
        # The two kinds have the same fields; a delete's source is its collection.
        kind: type[ev.TaskSubmitted | ev.DeleteSubmitted]
        destination: str | None
        if isinstance(request, ev.TransferRequest):
            kind, source, destination = ev.TaskSubmitted, request.source, request.destination
        else:
            kind, source, destination = ev.DeleteSubmitted, request.collection, None
        event = kind(
            owner=owner,
            session_id=session_id,
            submission_id=submission_id,
            task_id=task_id,
            type="TRANSFER" if kind is ev.TaskSubmitted else "DELETE",
            label=request.label,
            source=source,
            destination=destination,
            status="ACTIVE",
            policy=request.policy,
        )
        return await self.ledger.append(event)

    async def submit_failed(
        self, *, owner: str, session_id: str, submission_id: str, code: str, message: str
    ) -> StoredEvent:
        return await self.ledger.append(
            ev.SubmitFailed(
                owner=owner,
                session_id=session_id,
                submission_id=submission_id,
                code=code,
                message=message,
            )
        )

    async def pending_submissions(self, session_id: str | None = None) -> list[SubmissionRow]:
        return list(await self.ledger.pending_submissions(session_id=session_id))

    # -- cancels -------------------------------------------------------------------------

    async def cancel_requested(
        self, *, owner: str, session_id: str, task_id: str, reason: str | None = None
    ) -> StoredEvent:
        return await self.ledger.append(
            ev.CancelRequested(owner=owner, session_id=session_id, task_id=task_id, reason=reason)
        )

    async def cancel_result(
        self, *, owner: str, session_id: str, task_id: str, code: str, message: str
    ) -> StoredEvent:
        return await self.ledger.append(
            ev.CancelResult(
                owner=owner, session_id=session_id, task_id=task_id, code=code, message=message
            )
        )

    async def pending_cancels(self, session_id: str) -> list[str]:
        """Task ids whose cancel was requested and never answered (a crash in between)."""
        pending: dict[str, None] = {}
        async for stored in self.ledger.events_since(
            0, session_id=session_id, kinds=("cancel_requested", "cancel_result")
        ):
            if stored.task_id is None:
                continue
            if stored.kind == "cancel_requested":
                pending[stored.task_id] = None
            else:
                pending.pop(stored.task_id, None)
        return list(pending)

    # -- tasks ---------------------------------------------------------------------------

    async def append_many(self, events: Sequence[ev.Event]) -> list[StoredEvent]:
        if not events:
            return []
        return list(await self.ledger.append_many(list(events)))

    async def task(self, task_id: str) -> TaskRow | None:
        return await self.ledger.task(task_id)

    async def open_tasks(self, session_id: str) -> list[dict[str, Any]]:
        """Every ACTIVE/INACTIVE task of a session, as dicts (the poller's diff input)."""
        out: list[dict[str, Any]] = []
        page = 1000
        while True:
            rows = await self.ledger.tasks(
                session_id=session_id, status=_OPEN, limit=page, offset=len(out)
            )
            out.extend(row_dict(r) for r in rows)
            if len(rows) < page:
                return out

    async def observed_at(self, task_id: str, *, created_seq: int) -> float | None:
        """Unix seconds of the last record that confirmed the task's state (its submit, a
        state change or progress); cancel events say nothing about the state."""
        last: float | None = None
        async for stored in self.ledger.events_since(
            created_seq - 1,
            task_id=task_id,
            kinds=("task_submitted", "delete_submitted", "task_state_changed", "task_progress"),
        ):
            last = stored.time
        return last

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

    def attach(self, sink: CommitSink) -> int:
        return self.ledger.attach(sink)

    def detach(self, sink: CommitSink) -> None:
        self.ledger.detach(sink)
