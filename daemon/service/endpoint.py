"""The endpoint's operations, independent of HTTP: what each route does.

``EndpointService`` owns the ledger store, the sessions, the submitter, the poller and the event
hub; ``app.py`` only parses requests, checks the bearer token and calls these methods.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...ledger import events as ev
from ...protocol import VERSION, is_terminal
from ..api.auth import TokenStore
from ..errors import BadRequest, NotFound
from ..globus.credentials import Credential, Secret
from ..globus.local_collection import resolve_collection, resolve_default_local_collection
from ..globus.ops import GlobusOps, is_auth_failure, map_error
from ..poller.loop import Poller
from ..runtime.config import Config
from ..runtime.logs import get_logger
from .hub import EventHub, Listener, message_for
from .sessions import Session, SessionRegistry
from .store import Store, row_dict
from .submits import Submitter

__all__ = ["EndpointService", "task_json", "trouble_policy"]

log = get_logger(__name__)

# Longest a single wait request may block; clients loop for longer waits.
MAX_WAIT = 3600.0


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
    return data


class EndpointService:
    def __init__(self, config: Config, *, store: Store, tokens: TokenStore) -> None:
        self.config = config
        self.store = store
        self.tokens = tokens
        self.ops = GlobusOps(threads=config.globus_threads)
        self.sessions = SessionRegistry(store=store, ops=self.ops)
        self.submitter = Submitter(
            store=store, sessions=self.sessions, ops=self.ops, max_backoff=config.max_backoff
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
        self.default_local = resolve_default_local_collection(config.local_collection)
        self.sessions.on_registered.append(self._on_registered)
        self.started = time.time()

    async def start(self) -> None:
        await self.sessions.load()
        await self.hub.start()

    async def close(self) -> None:
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
        sid: str | None,
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
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
            sid=sid,
            policy=trouble_policy(policy),
        )
        return {
            "sid": session.sid,
            "local_collection": session.local_collection or self.default_local,
        }

    async def unregister(self, *, owner: str, sid: str) -> dict[str, Any]:
        self.sessions.get(owner, sid)
        self.poller.stop(sid)
        await self.sessions.unregister(owner=owner, sid=sid)
        return {"sid": sid, "closed": True}

    def session(self, owner: str, sid: str) -> Session:
        return self.sessions.get(owner, sid)

    def collection(self, session: Session, collection: str) -> str:
        return resolve_collection(
            collection, session_local=session.local_collection, default=self.default_local
        )

    # -- submits -------------------------------------------------------------------------

    async def submit_transfer(self, session: Session, *, body: dict[str, Any]) -> dict[str, Any]:
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
            verify_checksum=bool(body.get("verify_checksum") or False),
            preserve_timestamp=bool(body.get("preserve_timestamp") or False),
            deadline=body.get("deadline"),
            skip_source_errors=bool(body.get("skip_source_errors") or False),
            policy=trouble_policy(body.get("policy")) or session.policy,
        )
        return await self.submitter.submit(session, request)

    async def submit_delete(self, session: Session, *, body: dict[str, Any]) -> dict[str, Any]:
        request = ev.DeleteRequest(
            collection=self.collection(session, body["collection"]),
            paths=tuple(body["paths"]),
            recursive=bool(body.get("recursive") or False),
            label=body.get("label"),
            policy=trouble_policy(body.get("policy")) or session.policy,
        )
        return await self.submitter.submit(session, request)

    async def cancel(self, session: Session, task_id: str) -> dict[str, Any]:
        result = await self.submitter.cancel(session, task_id)
        self.poller.wake(session.sid)
        return result

    # -- tasks ---------------------------------------------------------------------------

    async def task_row(self, session: Session, task_id: str) -> Any:
        row = await self.store.task(task_id)
        if row is None or row.session_id != session.sid:
            raise NotFound(f"no task {task_id!r} in session {session.sid}")
        return row

    async def get_task(self, session: Session, task_id: str) -> dict[str, Any]:
        return task_json(await self.task_row(session, task_id))

    async def wait_task(
        self, session: Session, task_id: str, seconds: float, *, stop_on_attention: bool = False
    ) -> dict[str, Any]:
        timeout = min(max(seconds, 0.0), MAX_WAIT)
        listener = self.hub.attach(Listener(owner=session.owner, task_id=task_id, maxsize=64))
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                row = await self.task_row(session, task_id)
                if is_terminal(row.status):
                    break
                if stop_on_attention and row.needs_attention is not None:
                    break
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await listener.next(remaining)
                # The row is re-read anyway: drop what is buffered (a lagged waiter too).
                listener.clear()
        finally:
            self.hub.detach(listener)
        out = task_json(row)
        out["done"] = is_terminal(row.status)
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
            session_id=session.sid,
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
            raise map_error(exc, sid=session.sid) from None
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

    async def history(
        self,
        *,
        owner: str,
        view: str,
        session_id: str | None,
        task_id: str | None,
        status: str | None,
        label: str | None,
        since: float | None,
        until: float | None,
        after: int,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        if session_id is not None:
            self.sessions_known(owner, session_id)
        if view == "tasks":
            if task_id is not None:
                row = await self.store.task(task_id)
                rows = [row] if row is not None and row.owner == owner else []
            else:
                rows = await self.store.tasks(
                    owner=owner,
                    session_id=session_id,
                    status=status,
                    label=label,
                    since=since,
                    until=until,
                    limit=limit,
                    offset=offset,
                )
            return {"tasks": [task_json(r) for r in rows]}
        events: list[dict[str, Any]] = []
        last = after
        fields = {k: v for k, v in (("status", status), ("label", label)) if v is not None}
        # Every filter runs in SQL, so events the filters skip are never decoded here.
        async for stored in self.store.events_since(
            after,
            owner=owner,
            session_id=session_id,
            task_id=task_id,
            times=(since, until),
            data=fields,
        ):
            last = stored.seq
            events.append(message_for(stored))
            if len(events) >= limit:
                break
        more = len(events) >= limit
        return {"events": events, "next_after": last if more else None}

    def sessions_known(self, owner: str, sid: str) -> None:
        """History may name closed sessions; they must still belong to this token."""
        session = self.sessions.find(sid)
        if session is not None and session.owner != owner:
            raise NotFound(f"no session {sid!r} for this token")

    async def status_counts(self) -> tuple[int, int, int]:
        rows = await self.store.open_task_count()
        return len(self.sessions), rows, await self.store.head()
