"""Globus sessions: an unguessable session_id, its owner (a daemon token name) and, in memory only,
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
from ...ledger.errors import StorageError
from ..errors import (
    ExpiredCredential,
    MissingCredential,
    NotFound,
    RejectedCredential,
    StorageUnavailable,
)
from ..globus.credentials import Credential
from ..globus.ops import GlobusOps, SessionClients, is_auth_failure, map_error
from ..runtime.logs import get_logger
from .store import Store

__all__ = ["Session", "SessionRegistry", "new_sid"]

log = get_logger(__name__)


def new_sid() -> str:
    """128 random bits as lowercase hex: unguessable, and never starting with "-" (a CLI's
    argument parser would take such a session_id for an option)."""
    return secrets.token_hex(16)


@dataclasses.dataclass(eq=False)
class Session:
    session_id: str
    owner: str
    local_collection: str | None
    credential: Credential | None = None
    clients: SessionClients | None = None
    expired: bool = False
    # The default trouble policy of the session's submits (they may name their own).
    policy: ev.TroublePolicy | None = None
    # Unregistered while submissions were pending: no new work is taken, the pending
    # submissions are still sent, and the session closes once none is left.
    closing: bool = False

    @property
    def usable(self) -> bool:
        return self.clients is not None and not self.expired

    @property
    def credential_state(self) -> str:
        """``ok``; ``missing`` (never handed to this daemon process, e.g. after a restart);
        ``expired`` (Globus refused it)."""
        if self.clients is None:
            return "missing"
        return "expired" if self.expired else "ok"

    def require_clients(self) -> SessionClients:
        if self.clients is None:
            raise MissingCredential(session_id=self.session_id)
        if self.expired:
            raise ExpiredCredential(session_id=self.session_id)
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
        # Called (session_id) after a session got a working credential: the poller and the
        # submitter resume its work.
        self.on_registered: list[Callable[[Session], Awaitable[None]]] = []
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Recreate the sessions the ledger knows as open, all without credentials."""
        for row in await self._store.open_sessions():
            if row.owner is None:
                continue  # no token can reach a session without an owner
            self._sessions[row.session_id] = Session(
                session_id=row.session_id,
                owner=row.owner,
                local_collection=row.local_collection,
                policy=row.policy,
            )

    def __len__(self) -> int:
        return len(self._sessions)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, owner: str, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner:
            raise NotFound(
                f"no session {session_id!r} for this token: register one (orbit-globus session"
                " register, or POST /globus/sessions); orbit-globus session list shows yours"
            )
        return session

    def find(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def register(
        self,
        *,
        owner: str,
        credential: Credential,
        local_collection: str | None,
        session_id: str | None,
        policy: ev.TroublePolicy | None = None,
    ) -> Session:
        # Re-registering: the session_id must exist and belong to this token.
        existing = self.get(owner, session_id) if session_id is not None else None
        try:
            clients = await self._ops.clients(credential)
        except Exception as exc:
            credential.forget()
            if is_auth_failure(exc):
                raise RejectedCredential() from None
            raise map_error(exc, session_id=session_id or "(new)") from None
        async with self._lock:
            session_id = new_sid() if existing is None else existing.session_id
            local = local_collection
            if existing is not None and local is None:
                local = existing.local_collection
            if policy is None and existing is not None:
                policy = existing.policy
            try:
                # Recorded first: a session the ledger does not know must not exist in
                # memory (with a live credential) either.
                await self._store.session_opened(
                    owner=owner,
                    session_id=session_id,
                    local_collection=local,
                    auth=credential.kind,
                    policy=policy,
                )
            except StorageError as exc:
                clients.close()
                credential.forget()
                raise StorageUnavailable(
                    f"the daemon could not record the session ({exc}); it was not opened and "
                    "the credential was not kept: register again once the daemon's storage "
                    "works (GET /ready)",
                    **({"session_id": session_id} if existing is not None else {}),
                ) from None
            if existing is None:
                session = Session(session_id=session_id, owner=owner, local_collection=local)
                self._sessions[session_id] = session
            else:
                session = existing
                session.drop_credential()
                session.local_collection = local
            session.policy = policy
            session.credential = credential
            session.clients = clients
            session.expired = False
        log.info(
            "session registered",
            session_id=session.session_id,
            owner=owner,
            auth=credential.kind,
            again=existing is not None,
        )
        for hook in self.on_registered:
            await hook(session)
        return session

    async def unregister(self, *, owner: str, session_id: str) -> None:
        session = self.get(owner, session_id)
        async with self._lock:
            try:
                await self._store.session_closed(owner=owner, session_id=session_id)
            except StorageError as exc:
                raise StorageUnavailable(
                    f"the daemon could not record the close of session {session_id} ({exc}); the "
                    "session stays open: unregister again once the daemon's storage works",
                    session_id=session_id,
                ) from None
            self._sessions.pop(session_id, None)
            session.drop_credential()
        log.info("session closed", session_id=session_id, owner=owner)

    async def mark_expired(self, session: Session, message: str) -> bool:
        """Record that the credential stopped working; True when this is news."""
        if session.expired or session.clients is None:
            return False
        session.expired = True
        try:
            await self._store.credential_expired(session, message=message)
        except StorageError as exc:
            # In memory the session is expired all the same; the event is informational.
            log.error(
                "cannot record the expired credential",
                session_id=session.session_id,
                error=str(exc),
            )
        log.warning("session credential expired", session_id=session.session_id)
        return True

    def close_all(self) -> None:
        for session in self._sessions.values():
            session.drop_credential()
