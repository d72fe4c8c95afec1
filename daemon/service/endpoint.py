"""The endpoint's operations, independent of HTTP: what each route does.

``EndpointService`` owns the ledger store, the sessions, the submitter, the poller and the event
hub; ``app.py`` only parses requests, checks the bearer token and calls these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import re
import time
from typing import Any

from ...ledger import SubmissionRow, TaskRow
from ...ledger import events as ev
from ...ledger.retention import PruneResult, prune_file
from ...protocol import STATUSES, VERSION, envelope_text, is_terminal
from ..api.auth import TokenStore
from ..api.models import HistoryQuery
from ..errors import BadRequest, DaemonError, NotFound, PayloadTooLarge
from ..globus.credentials import Credential, Secret
from ..globus.local_collection import resolve_collection, resolve_default_local_collection
from ..globus.ops import GlobusOps, is_auth_failure, map_error
from ..poller.loop import Poller
from ..runtime.config import Config
from ..runtime.logs import get_logger
from ..runtime.metrics import CommitMetrics, refresh, render
from .admission_core import AdmissionLimits
from .alerts import AlertLog
from .hub import EventHub, Listener
from .sessions import Session, SessionRegistry
from .store import Store, row_dict
from .submits import Submitter, submission_view
from .tally import TaskCounts, by_status, count_tasks, read_pruned_through, writable

__all__ = ["EndpointService", "task_json", "trouble_policy"]

log = get_logger(__name__)

# The characters that make a label a glob pattern (as the ledger's GLOB reads them).
_GLOB = re.compile(r"[*?\[]")

# Seconds between two readings of the ledger's retention mark.
_PRUNED_FRESH = 5.0

# Longest a single wait request may block; clients loop for longer waits.
MAX_WAIT = 3600.0
# Characters of event envelopes in one history page at most (one event at least).
HISTORY_PAGE_BYTES = 2**20
# Seconds between checks of a closing session's pending submissions when no event came.
_CLOSING_RECHECK = 5.0


def _check_credential_text(name: str, value: str) -> None:
    """Globus tokens and client ids are printable ASCII without spaces; anything else
    (a lone surrogate, CR/LF, a control character) would fail later, in an HTTP header,
    as "Globus unreachable". The value itself is never echoed."""
    bad = next((c for c in value if not "!" <= c <= "~"), None)
    if bad is not None:
        raise BadRequest(
            f"{name} holds a character that no Globus credential has (U+{ord(bad):04X} at "
            f"position {value.index(bad)}); send the token exactly as Globus issued it"
        )


def _refuse_if_closing(session: Session) -> None:
    if session.closing:
        raise BadRequest(
            f"session {session.session_id} was unregistered and closes once its pending "
            "submissions are answered; register a new session for new work"
        )


def trouble_policy(body: dict[str, Any] | None) -> ev.TroublePolicy | None:
    """The policy of a validated request body (``PolicyBody.model_dump()``)."""
    if body is None:
        return None
    return ev.TroublePolicy(
        max_faults=body.get("max_faults"),
        max_trouble_minutes=body.get("max_trouble_minutes"),
        fatal_codes=tuple(body.get("fatal_codes") or ()),
    )


def task_json(row: Any) -> dict[str, Any]:
    data = row_dict(row)
    data.pop("owner", None)
    data.pop("created_seq", None)
    data.pop("observed_time", None)  # the poller's bookkeeping, not the task's
    return data


def _view(row: TaskRow | SubmissionRow) -> dict[str, Any]:
    return task_json(row) if isinstance(row, TaskRow) else submission_view(row)


def _finished(row: TaskRow | SubmissionRow) -> bool:
    """A task that ended, or a submit that never will be one (refused or cancelled)."""
    if isinstance(row, TaskRow):
        return is_terminal(row.status)
    return row.state in ("failed", "cancelled")


class EndpointService:
    def __init__(self, config: Config, *, store: Store, tokens: TokenStore) -> None:
        self.config = config
        self.store = store
        self.tokens = tokens
        self.ops = GlobusOps(
            threads=config.globus_threads,
            rate_limit=config.globus_rate_limit,
            rate_window=config.globus_rate_window,
            early_poll_rate=config.early_poll_rate,
        )
        self.sessions = SessionRegistry(store=store, ops=self.ops)
        self.submitter = Submitter(
            store=store,
            sessions=self.sessions,
            ops=self.ops,
            max_backoff=config.max_backoff,
            limits=AdmissionLimits(
                max_pending=config.globus_max_pending,
                max_queued=config.admission_max_queued,
                rate=config.admission_rate,
                probe_interval=config.admission_probe_interval,
                max_backoff=config.max_backoff,
            ),
            submission_ids=config.submission_ids,
        )
        self.poller = Poller(
            store=store,
            sessions=self.sessions,
            ops=self.ops,
            interval=config.poll_interval,
            max_backoff=config.max_backoff,
            stall_after=config.stall_after or None,
            cancel=self._cancel_by_policy,
        )
        self.hub = EventHub(store)
        self.commit_metrics = CommitMetrics()
        self.alerts = AlertLog()
        self.default_local = resolve_default_local_collection(config.local_collection)
        self.sessions.on_registered.append(self._on_registered)
        self.started = time.time()
        self._background: set[asyncio.Task[None]] = set()
        self._pruned = 0
        self._pruned_follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._pruned = await read_pruned_through(self.config.ledger_path)
        self._pruned_follower = asyncio.create_task(self._follow_pruned(), name="pruned")
        await self.sessions.load()
        await self.hub.start()
        self.submitter.start()
        self.store.attach(self.commit_metrics)
        self.store.attach(self.alerts)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._pruned_follower is not None:
            self._pruned_follower.cancel()
        self.store.detach(self.commit_metrics)
        self.store.detach(self.alerts)
        await self.poller.close()
        await self.submitter.close()
        await self.hub.close()
        self.sessions.close_all()
        self.ops.close()

    async def _cancel_by_policy(self, session: Session, task_id: str, reason: str) -> None:
        await self.submitter.cancel(session, task_id, reason=reason)

    async def _on_registered(self, session: Session) -> None:
        self.poller.ensure(session)
        await self.submitter.resume(session)

    # -- endpoint ------------------------------------------------------------------------

    @property
    def storage_ok(self) -> bool:
        """False from a failed ledger append (disk full, I/O error) until one succeeds."""
        return self.store.storage_error is None

    def describe(self) -> dict[str, Any]:
        return {
            "endpoints": [
                {
                    "name": self.config.name,
                    "version": VERSION,
                    "plugins": ["globus"],
                    "local_collection": self.default_local,
                }
            ]
        }

    # -- sessions ------------------------------------------------------------------------

    async def register(
        self,
        *,
        owner: str,
        access_token: str | None,
        refresh_token: str | None,
        client_id: str | None,
        local_collection: str | None,
        session_id: str | None,
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        for name, value in (
            ("access_token", access_token),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ):
            if value is not None:
                _check_credential_text(name, value)
        if refresh_token is not None:
            if not client_id:
                raise BadRequest("refresh_token needs client_id (the native app that issued it)")
            credential = Credential(refresh_token=Secret(refresh_token), client_id=client_id)
        elif access_token is not None:
            credential = Credential(access_token=Secret(access_token))
        else:
            raise BadRequest("give access_token, or refresh_token and client_id")
        session = await self.sessions.register(
            owner=owner,
            credential=credential,
            local_collection=local_collection,
            session_id=session_id,
            policy=trouble_policy(policy),
        )
        return {
            "session_id": session.session_id,
            "local_collection": session.local_collection or self.default_local,
        }

    async def unregister(self, *, owner: str, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(owner, session_id)
        # Pending (Globus may have them) or queued (waiting for Globus's room) alike.
        pending = [p.submission_id for p in await self.store.open_submissions(session_id)]
        if pending:
            # Closing now would drop them for good: a closed session is never registered
            # again, so nothing would ever send them. Keep the session (and its
            # credential) until Globus answered each, then close it.
            if not session.closing:
                session.closing = True
                self._spawn(self._close_when_resolved(session))
            log.info(
                "session closing after its pending submissions",
                session_id=session_id,
                pending=pending,
            )
            return {"session_id": session_id, "closed": False, "pending_submissions": pending}
        self.poller.stop(session_id)
        self.submitter.admission.forget_session(session_id)
        await self.sessions.unregister(owner=owner, session_id=session_id)
        return {"session_id": session_id, "closed": True}

    async def _close_when_resolved(self, session: Session) -> None:
        listener = self.hub.attach(
            Listener(owner=session.owner, session_id=session.session_id, topics=None, maxsize=64)
        )
        try:
            while await self.store.open_submissions(session.session_id):
                # Woken by any event of the session (a submission resolved); the timeout
                # covers a session whose retries are waiting for a new credential.
                await listener.next(_CLOSING_RECHECK)
                listener.clear()
            while self.sessions.find(session.session_id) is session:
                try:
                    await self.sessions.unregister(
                        owner=session.owner, session_id=session.session_id
                    )
                except DaemonError as exc:  # storage failing: try again later
                    log.warning(
                        "closing session failed", session_id=session.session_id, error=exc.code
                    )
                    await asyncio.sleep(_CLOSING_RECHECK)
                else:
                    self.poller.stop(session.session_id)
                    self.submitter.admission.forget_session(session.session_id)
        finally:
            self.hub.detach(listener)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def session_json(self, session: Session, counts: TaskCounts) -> dict[str, Any]:
        tasks = {status: counts.get((session.session_id, status), 0) for status in STATUSES}
        return {
            "session_id": session.session_id,
            "local_collection": session.local_collection or self.default_local,
            "auth": session.credential.kind if session.credential is not None else None,
            "credential": session.credential_state,
            "tasks": tasks,
        }

    async def list_sessions(self, owner: str) -> dict[str, Any]:
        counts = await count_tasks(self.config.ledger_path, owner=owner)
        mine = [s for s in self.sessions.all() if s.owner == owner]
        return {"sessions": [self.session_json(s, counts) for s in mine]}

    async def describe_session(self, session: Session) -> dict[str, Any]:
        counts = await count_tasks(self.config.ledger_path, owner=session.owner)
        return self.session_json(session, counts)

    def session(self, owner: str, session_id: str) -> Session:
        return self.sessions.get(owner, session_id)

    def collection(self, session: Session, collection: str) -> str:
        return resolve_collection(
            collection, session_local=session.local_collection, default=self.default_local
        )

    # -- submits -------------------------------------------------------------------------

    def _check_budget(self, paths: int, size: int) -> None:
        if size > self.config.max_submit_bytes:
            raise PayloadTooLarge(
                f"the submit names {paths} paths of {size} bytes in all, over this daemon's "
                f"budget of {self.config.max_submit_bytes} bytes per submit; split it into "
                "several submits",
                limit=self.config.max_submit_bytes,
                size=size,
            )

    async def submit_transfer(self, session: Session, *, body: dict[str, Any]) -> dict[str, Any]:
        _refuse_if_closing(session)
        self._check_budget(
            2 * len(body["items"]),
            sum(len(i["source"].encode()) + len(i["destination"].encode()) for i in body["items"])
            + len((body.get("label") or "").encode()),
        )
        items = tuple(
            ev.TransferItem(
                source=i["source"], destination=i["destination"], recursive=bool(i["recursive"])
            )
            for i in body["items"]
        )
        request = ev.TransferRequest(
            source=self.collection(session, body["source"]),
            destination=self.collection(session, body["destination"]),
            items=items,
            label=body.get("label"),
            sync_level=body.get("sync_level"),
            verify_checksum=bool(body.get("verify_checksum", True)),
            preserve_timestamp=bool(body.get("preserve_timestamp") or False),
            deadline=body.get("deadline"),
            skip_source_errors=bool(body.get("skip_source_errors") or False),
            policy=trouble_policy(body.get("policy")) or session.policy,
        )
        return await self.submitter.submit(
            session, request, submission_id=body.get("submission_id")
        )

    async def submit_delete(self, session: Session, *, body: dict[str, Any]) -> dict[str, Any]:
        _refuse_if_closing(session)
        self._check_budget(
            len(body["paths"]),
            sum(len(p.encode()) for p in body["paths"]) + len((body.get("label") or "").encode()),
        )
        request = ev.DeleteRequest(
            collection=self.collection(session, body["collection"]),
            paths=tuple(body["paths"]),
            recursive=bool(body.get("recursive") or False),
            label=body.get("label"),
            policy=trouble_policy(body.get("policy")) or session.policy,
        )
        return await self.submitter.submit(
            session, request, submission_id=body.get("submission_id")
        )

    async def submission_id(self, session: Session) -> dict[str, Any]:
        """A fresh submission id for this session's next submit (globus-cli's
        ``task generate-submission-id``)."""
        return {"value": await self.submitter.new_submission_id(session)}

    async def cancel(self, session: Session, task_id: str) -> dict[str, Any]:
        result = await self.submitter.cancel(session, task_id)
        self.poller.wake(session.session_id)
        return result

    # -- tasks ---------------------------------------------------------------------------

    async def task_row(self, session: Session, task_id: str) -> TaskRow | SubmissionRow:
        """The task with this task id, or the submit with this submission id."""
        return await self.submitter.lookup(session, task_id)

    async def get_task(self, session: Session, task_id: str) -> dict[str, Any]:
        return _view(await self.task_row(session, task_id))

    async def wait_task(
        self, session: Session, task_id: str, seconds: float, *, stop_on_attention: bool = False
    ) -> dict[str, Any]:
        timeout = min(max(seconds, 0.0), MAX_WAIT)
        row = await self.task_row(session, task_id)
        if not _finished(row):
            # Nobody follows the tasks of a session without a working credential: say so
            # instead of letting the waiter time out on a task that may have ended long ago.
            session.require_clients()
        # A submission id waits through the queue: its task is not known yet, so every event
        # of the session wakes the wait (the row is re-read each time).
        listener = self.hub.attach(
            Listener(owner=session.owner, task_id=task_id, maxsize=64)
            if isinstance(row, TaskRow)
            else Listener(owner=session.owner, session_id=session.session_id, maxsize=64)
        )
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                row = await self.task_row(session, task_id)
                if _finished(row):
                    break
                if (
                    stop_on_attention
                    and isinstance(row, TaskRow)
                    and row.needs_attention is not None
                ):
                    break
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await listener.next(remaining)
                # The row is re-read anyway: drop what is buffered (a lagged waiter too).
                listener.clear()
        finally:
            self.hub.detach(listener)
        out = _view(row)
        out["done"] = _finished(row)
        return out

    async def task_events(
        self, session: Session, task_id: str, *, limit: int, offset: int
    ) -> dict[str, Any]:
        """Globus's own event list of one of the session's tasks, newest first."""
        await self.task_row(session, task_id)
        doc = await self._globus(session, "task_event_list", task_id, limit=limit, offset=offset)
        return {"task_id": task_id, "events": list(doc.get("DATA") or [])}

    async def list_tasks(
        self, session: Session, *, limit: int, offset: int, status: str | None
    ) -> dict[str, Any]:
        rows = await self.store.tasks(
            owner=session.owner,
            session_id=session.session_id,
            status=status,
            limit=limit,
            offset=offset,
        )
        return {"tasks": [task_json(r) for r in rows]}

    # -- plain Globus operations ---------------------------------------------------------

    async def _globus(self, session: Session, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        clients = session.require_clients()
        try:
            response = await self.ops.run(clients.call, fn_name, *args, **kwargs)
        except Exception as exc:
            if is_auth_failure(exc):
                await self.sessions.mark_expired(session, "Globus refused the credential")
            raise map_error(exc, session_id=session.session_id) from None
        data = response.data
        return dict(data) if isinstance(data, dict) else {"DATA": data}

    async def ls(self, session: Session, *, collection: str, path: str | None) -> Any:
        kwargs: dict[str, Any] = {}
        if path:
            kwargs["path"] = path
        return await self._globus(
            session, "operation_ls", self.collection(session, collection), **kwargs
        )

    async def mkdir(self, session: Session, *, collection: str, path: str) -> dict[str, Any]:
        doc = await self._globus(
            session, "operation_mkdir", self.collection(session, collection), path
        )
        return {"code": doc.get("code"), "message": doc.get("message")}

    async def rename(
        self, session: Session, *, collection: str, oldpath: str, newpath: str
    ) -> dict[str, Any]:
        doc = await self._globus(
            session, "operation_rename", self.collection(session, collection), oldpath, newpath
        )
        return {"code": doc.get("code"), "message": doc.get("message")}

    async def endpoint_search(
        self, session: Session, *, filter_text: str | None, limit: int
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"limit": limit}
        if filter_text:
            kwargs["filter_fulltext"] = filter_text
        doc = await self._globus(session, "endpoint_search", **kwargs)
        return {"endpoints": list(doc.get("DATA") or [])}

    async def get_endpoint(self, session: Session, *, collection: str) -> Any:
        return await self._globus(session, "get_endpoint", self.collection(session, collection))

    # -- history -------------------------------------------------------------------------

    async def history_tasks(self, owner: str, where: HistoryQuery) -> dict[str, Any]:
        """The tasks view of the history: task rows, newest first."""
        task_id, submission = await self._history_target(owner, where)
        if submission is not None:
            return {"tasks": [submission_view(submission)]}
        if task_id is not None:
            row = await self.store.task(task_id)
            rows = [row] if row is not None and row.owner == owner else []
        else:
            rows = await self.store.tasks(
                owner=owner,
                session_id=where.session_id,
                status=where.status,
                label=where.label,
                since=where.since,
                until=where.until,
                limit=where.limit,
                offset=where.offset,
            )
        return {"tasks": [task_json(r) for r in rows]}

    async def history_events(self, owner: str, where: HistoryQuery) -> str:
        """A page of the events view as JSON text ``{"events": [...], "next_after": N}``.

        Bounded by ``limit`` events and by HISTORY_PAGE_BYTES of text (one event at least):
        a page of large events (submits of 4 MB requests) is cut short and ``next_after``
        says where the next one starts. The envelopes are encoded once, as the WebSocket
        sends them, and joined: no second copy as Python objects."""
        task_id, submission = await self._history_target(owner, where)
        label = where.label
        texts: list[str] = []
        size = 0
        last = where.after
        # A label with glob characters matches as in the tasks view; it is checked here, on
        # the events the other filters (all in SQL) let through. A plain label runs in SQL.
        pattern = label if label is not None and _GLOB.search(label) else None
        exact = None if pattern is not None else label
        fields = {k: v for k, v in (("status", where.status), ("label", exact)) if v is not None}
        more = False
        if submission is not None:
            # Not a task yet: its events are the submission's own (requested, queued, ...).
            fields["submission_id"] = submission.submission_id
        # Every other filter runs in SQL, so events the filters skip are never decoded here.
        async for seq, at, kind, _, sess, tid, data in self.store.raw_events_since(
            where.after,
            owner=owner,
            session_id=where.session_id,
            task_id=task_id,
            times=(where.since, where.until),
            data=fields,
            # One more than the page: it says whether another page follows.
            page_size=where.limit + 1,
        ):
            if pattern is not None and not fnmatch.fnmatchcase(
                str(json.loads(data).get("label") or ""), pattern
            ):
                continue
            if len(texts) >= where.limit or (texts and size >= HISTORY_PAGE_BYTES):
                more = True
                break
            text = envelope_text(
                seq=seq, time=at, kind=kind, session_id=sess, task_id=tid, data_json=data
            )
            texts.append(text)
            size += len(text)
            last = seq
        next_after = str(last) if more else "null"
        return '{"events":[' + ",".join(texts) + '],"next_after":' + next_after + "}"

    async def _history_target(
        self, owner: str, where: HistoryQuery
    ) -> tuple[str | None, SubmissionRow | None]:
        """(task id, submission without a task) the filter's ``task_id`` names: a task id, or
        a submission id standing for its task (or for itself while it has none)."""
        if where.session_id is not None:
            self.sessions_known(owner, where.session_id)
        submission = await self._submission_of(owner, where.task_id)
        if submission is None:
            return where.task_id, None
        if submission.task_id is not None:
            return submission.task_id, None
        return None, submission

    async def _submission_of(self, owner: str, ident: str | None) -> SubmissionRow | None:
        """The owner's submission with this id when ``ident`` is not one of its task ids."""
        if ident is None:
            return None
        task = await self.store.task(ident)
        if task is not None and task.owner == owner:
            return None
        row = await self.store.submission(ident)
        return row if row is not None and row.owner == owner else None

    def sessions_known(self, owner: str, session_id: str) -> None:
        """History may name closed sessions; they must still belong to this token."""
        session = self.sessions.find(session_id)
        if session is not None and session.owner != owner:
            raise NotFound(f"no session {session_id!r} for this token")

    # -- operations ------------------------------------------------------------------------

    @property
    def pruned_through(self) -> int:
        """The highest seq retention ever deleted (0: none), as last read: at start, after
        each prune of the daemon's, and every few seconds (a prune may run in another
        process: ``orbit-globus-endpoint prune``). Read without waiting, on every
        WebSocket connection."""
        return self._pruned

    async def _follow_pruned(self) -> None:
        while True:
            await asyncio.sleep(_PRUNED_FRESH)
            with contextlib.suppress(Exception):  # read again next time
                self._pruned = await read_pruned_through(self.config.ledger_path)

    async def prune(self, *, before: float) -> PruneResult:
        result = await asyncio.to_thread(prune_file, self.config.ledger_path, before=before)
        self._pruned = result.pruned_through
        return result

    async def ready(self) -> bool:
        """The last append succeeded (:attr:`storage_ok`), the ledger takes a write now, and
        every session with a credential has a live poller."""
        if not self.storage_ok or not await writable(self.config.ledger_path):
            return False
        return all(self.poller.running(s.session_id) for s in self.sessions.all() if s.usable)

    async def metrics(self, *, websocket_clients: int) -> bytes:
        counts = await count_tasks(self.config.ledger_path)
        refresh(
            tasks_by_status=by_status(counts),
            websocket_clients=websocket_clients,
            credential_states=[s.credential_state for s in self.sessions.all()],
        )
        return render()

    async def status_counts(self) -> tuple[int, int, int]:
        rows = await self.store.open_task_count()
        return len(self.sessions), rows, await self.store.head()
