"""Browser sessions of the dashboard: one-time sign-in links, session cookies, CSRF checks.

A browser never holds a client token. It signs in either with a one-time link (made by an
authenticated ``POST /dashboard/api/link``, short-lived, single use) or by pasting a token
into the sign-in form once; either way the daemon answers with a session cookie (HttpOnly,
SameSite=Strict) and keeps, per session, only the sha256 of the cookie, the sha256 of the
token that signed it in (its identity: a deleted token ends its sessions at their next
request), a CSRF token and an expiry. Sessions are kept in ``browser_sessions.json`` (mode
0600) so a daemon restart does not sign anybody out.

A request authenticated by the cookie that changes state must also pass
:func:`check_same_origin` and carry the session's CSRF token in ``X-Orbit-CSRF``: a form
or script on another site can neither read that token nor set the header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from ..errors import Forbidden, Unauthorized
from ..runtime.private_files import write_private

__all__ = [
    "CSRF_HEADER",
    "LINK_TTL",
    "SESSION_TTL",
    "BrowserSession",
    "BrowserSessions",
    "TokenCheck",
    "check_same_origin",
    "cookie_name",
]

CSRF_HEADER = "x-orbit-csrf"
# A sign-in link is opened by the browser the CLI starts: a minute is plenty.
LINK_TTL = 60.0
# A browser session lasts a working day; signing in again takes one command.
SESSION_TTL = 12 * 3600.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_name(port: int | None) -> str:
    """Cookies are not separated by port: several daemons on one host each need their own."""
    return f"orbit_dashboard_{port or 0}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class TokenCheck(Protocol):
    """Who a client token (or its sha256) is; raises Unauthorized for an unknown one. The
    daemon's TokenStore, or the bridge's client tokens (bridge/dashboard.py)."""

    def verify(self, token: str) -> str: ...

    def verify_digest(self, digest: str) -> str: ...


@dataclass(frozen=True, slots=True)
class BrowserSession:
    owner: str
    token: str  # sha256 of the client token that signed this browser in
    csrf: str
    expires: float


def check_same_origin(headers: Mapping[str, str], *, own_origin: str) -> None:
    """Refuse a request a page of another site made (Fetch Metadata, then Origin)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = headers.get("origin")
    if origin is not None and origin != own_origin:
        raise Forbidden("cross-origin request refused: the dashboard accepts its own origin")


class BrowserSessions:
    def __init__(self, state_dir: Path, tokens: TokenCheck) -> None:
        self.path = state_dir / "browser_sessions.json"
        self.tokens = tokens
        self._sessions: dict[str, BrowserSession] = {}
        # nonce digest -> (token digest, owner, expiry); memory only: a link outlives
        # neither its minute nor the daemon.
        self._links: dict[str, tuple[str, str, float]] = {}
        self._load()

    # -- persistence -----------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        now = time.time()
        if isinstance(data, dict):
            for key, value in data.items():
                try:
                    session = BrowserSession(**value)
                except TypeError:
                    continue
                if session.expires > now:
                    self._sessions[key] = session

    def _save(self) -> None:
        write_private(self.path, json.dumps({k: asdict(v) for k, v in self._sessions.items()}))

    # -- sign-in ---------------------------------------------------------------------

    def make_link(self, token: str) -> str:
        """A one-time sign-in nonce for the (already verified) client ``token``."""
        owner = self.tokens.verify(token)
        now = time.monotonic()
        self._links = {k: v for k, v in self._links.items() if v[2] > now}
        nonce = secrets.token_urlsafe(32)
        self._links[_digest(nonce)] = (_digest(token), owner, now + LINK_TTL)
        return nonce

    def redeem_link(self, nonce: str) -> tuple[str, BrowserSession]:
        """Exchange a link's nonce (once) for a new session: (cookie value, session)."""
        entry = self._links.pop(_digest(nonce), None)
        if entry is None or entry[2] < time.monotonic():
            raise Unauthorized("this sign-in link is used or expired: run `orbit-globus ui`")
        token, _owner, _ = entry
        return self._open(token)

    def sign_in(self, token: str) -> tuple[str, BrowserSession]:
        self.tokens.verify(token)
        return self._open(_digest(token))

    def _open(self, token_digest: str) -> tuple[str, BrowserSession]:
        owner = self.tokens.verify_digest(token_digest)
        cookie = secrets.token_urlsafe(32)
        session = BrowserSession(
            owner=owner,
            token=token_digest,
            csrf=secrets.token_urlsafe(24),
            expires=time.time() + SESSION_TTL,
        )
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
        self._sessions[_digest(cookie)] = session
        self._save()
        return cookie, session

    def sign_out(self, cookie: str) -> None:
        if self._sessions.pop(_digest(cookie), None) is not None:
            self._save()

    # -- each request ----------------------------------------------------------------

    def session(self, cookie: str) -> BrowserSession:
        """The live session of ``cookie``: unexpired, its token still valid for its owner."""
        key = _digest(cookie)
        session = self._sessions.get(key)
        if session is None or session.expires <= time.time():
            raise Unauthorized("the dashboard session ended: sign in again")
        try:
            owner = self.tokens.verify_digest(session.token)
        except Unauthorized:
            owner = None
        if owner != session.owner:
            del self._sessions[key]
            self._save()
            raise Unauthorized("the token this browser signed in with was revoked: sign in again")
        return session

    def authorize(
        self, cookie: str, *, method: str, headers: Mapping[str, str], own_origin: str
    ) -> str:
        """The owner of a cookie-authenticated request; state changes need same-origin + CSRF."""
        session = self.session(cookie)
        if method.upper() not in _SAFE_METHODS:
            check_same_origin(headers, own_origin=own_origin)
            sent = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise Forbidden(f"missing or wrong {CSRF_HEADER} header (the dashboard sends it)")
        return session.owner
