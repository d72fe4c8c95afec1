"""Globus sessions: an unguessable sid, its owner (a daemon token name) and, in memory only,
its credential and globus-sdk clients.

A session survives daemon restarts in the ledger (``session_opened``), without its
credential: until it is registered again its tasks are readable but nothing is sent to
Globus for it. Another token asking for a session gets 404, never 403, so sids cannot be
probed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Awaitable, Callable

from ...ledger import events as ev
from ..errors import CredentialExpired, CredentialMissing, CredentialRejected, NotFound
from ..globus.credentials import Credential
from ..globus.ops import GlobusOps, SessionClients, is_auth_failure, map_error
from ..runtime.logs import get_logger
from .store import Store

__all__ = ["Session", "SessionRegistry", "new_sid"]

log = get_logger(__name__)


def new_sid() -> str:
    """128 random bits as lowercase hex: unguessable, and never starting with "-" (a CLI's
    argument parser would take such a sid for an option)."""
    return secrets.token_hex(16)


@dataclasses.dataclass(eq=False)
class Session:
    sid: str
    owner: str
    local_collection: str | None
    credential: Credential | None = None
    clients: SessionClients | None = None
    expired: bool = False
    # The default trouble policy of the session's submits (they may name their own).
    policy: ev.TroublePolicy | None = None

    @property
    def usable(self) -> bool:
        return self.clients is not None and not self.expired

    def require_clients(self) -> SessionClients:
        if self.clients is None:
            raise CredentialMissing(self.sid)
        if self.expired:
            raise CredentialExpired(self.sid)
        return self.clients

    def drop_credential(self) -> None:
        if self.credential is not None:
            self.credential.forget()
        if self.clients is not None:
            self.clients.close()
        self.credential = None
        self.clients = None


class SessionRegistry:
    def __init__(self, *, store: Store, ops: GlobusOps) -> None:
        self._store = store
        self._ops = ops
        self._sessions: dict[str, Session] = {}
        # Called (sid) after a session got a working credential: the poller and the
        # submitter resume its work.
        self.on_registered: list[Callable[[Session], Awaitable[None]]] = []
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Recreate the sessions the ledger knows as open, all without credentials."""
        for sid, owner, local_collection, policy in await self._store.open_sessions():
            self._sessions[sid] = Session(
                sid=sid, owner=owner, local_collection=local_collection, policy=policy
            )

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, owner: str, sid: str) -> Session:
        session = self._sessions.get(sid)
        if session is None or session.owner != owner:
            raise NotFound(
                f"no session {sid!r} for this token: register one with POST /globus/sessions"
            )
        return session

    def find(self, sid: str) -> Session | None:
        return self._sessions.get(sid)

    async def register(
        self,
        *,
        owner: str,
        credential: Credential,
        local_collection: str | None,
        sid: str | None,
        policy: ev.TroublePolicy | None = None,
    ) -> Session:
        # Re-registering: the sid must exist and belong to this token.
        existing = self.get(owner, sid) if sid is not None else None
        try:
            clients = await self._ops.clients(credential)
        except Exception as exc:
            credential.forget()
            if is_auth_failure(exc):
                raise CredentialRejected() from None
            raise map_error(exc, sid=sid or "(new)") from None
        async with self._lock:
            if existing is None:
                sid = new_sid()
                session = Session(sid=sid, owner=owner, local_collection=local_collection)
                self._sessions[sid] = session
            else:
                session = existing
                session.drop_credential()
                if local_collection is not None:
                    session.local_collection = local_collection
            if policy is not None:
                session.policy = policy
            session.credential = credential
            session.clients = clients
            session.expired = False
            await self._store.session_opened(
                owner=owner,
                session_id=session.sid,
                local_collection=session.local_collection,
                auth=credential.kind,
                policy=session.policy,
            )
        log.info(
            "session registered",
            sid=session.sid,
            owner=owner,
            auth=credential.kind,
            again=existing is not None,
        )
        for hook in self.on_registered:
            await hook(session)
        return session

    async def unregister(self, *, owner: str, sid: str) -> None:
        session = self.get(owner, sid)
        async with self._lock:
            self._sessions.pop(sid, None)
            session.drop_credential()
            await self._store.session_closed(owner=owner, session_id=sid)
        log.info("session closed", sid=sid, owner=owner)

    async def mark_expired(self, session: Session, message: str) -> bool:
        """Record that the credential stopped working; True when this is news."""
        if session.expired or session.clients is None:
            return False
        session.expired = True
        await self._store.credential_expired(
            owner=session.owner, session_id=session.sid, message=message
        )
        log.warning("session credential expired", sid=session.sid)
        return True

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.drop_credential()
