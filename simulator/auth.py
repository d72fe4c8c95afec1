"""Users, clients and tokens of the simulated Globus Auth.

Pure state: every method takes the time as ``now``. Tokens are random strings; only their
SHA-256 is used as a key, and nothing here formats a token into a message.

How a token "has" a consent: consents are recorded per user (``consents`` at
:meth:`Users.add`, or ``grant``/``revoke`` later). Every access token of that user carries
the user's consents at the moment of the request, as if the user had consented in a browser
and the token's scope had been extended.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ApiError

__all__ = ["Credentials", "User", "Users", "token_key"]

TRANSFER_RESOURCE_SERVER = "transfer.api.globus.org"


def token_key(token: str) -> str:
    """Tokens are kept by hash, so a dump of the simulator's state shows none."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """What :meth:`Users.add` hands out; ``client_id`` is a native app client."""

    username: str
    user_id: str
    access_token: str
    refresh_token: str
    client_id: str
    client_secret: str
    confidential_client_id: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, client_id={self.client_id!r})"


@dataclass(kw_only=True)
class User:
    name: str
    user_id: str
    consents: set[str] = field(default_factory=set)


@dataclass(kw_only=True)
class _Access:
    username: str
    expires_at: float


class Users:
    """Users, their tokens and consents."""

    def __init__(self, *, token_lifetime: float) -> None:
        self.token_lifetime = token_lifetime
        self._users: dict[str, User] = {}
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, str] = {}  # refresh token hash -> username
        self._native_clients: dict[str, str] = {}  # client_id -> username
        self._confidential: dict[str, tuple[str, str]] = {}  # client_id -> (secret hash, user)

    def names(self) -> list[str]:
        return list(self._users)

    def user(self, name: str) -> User:
        try:
            return self._users[name]
        except KeyError:
            raise KeyError(f"no simulated user {name!r}") from None

    def add(self, name: str, *, now: float, consents: Iterable[str] = ()) -> Credentials:
        if not name or "/" in name:
            raise ValueError(f"user name {name!r} must be non-empty and hold no '/'")
        if name in self._users:
            raise ValueError(f"user {name!r} exists already")
        user = User(name=name, user_id=str(uuid.uuid4()), consents=set(consents))
        self._users[name] = user
        access = self.issue_access(name, now=now)
        refresh = secrets.token_urlsafe(32)
        self._refresh[token_key(refresh)] = name
        client_id = str(uuid.uuid4())
        self._native_clients[client_id] = name
        confidential = str(uuid.uuid4())
        secret = secrets.token_urlsafe(24)
        self._confidential[confidential] = (token_key(secret), name)
        return Credentials(
            username=name,
            user_id=user.user_id,
            access_token=access,
            refresh_token=refresh,
            client_id=client_id,
            client_secret=secret,
            confidential_client_id=confidential,
        )

    def issue_access(self, name: str, *, now: float) -> str:
        token = secrets.token_urlsafe(32)
        self._access[token_key(token)] = _Access(
            username=name, expires_at=now + self.token_lifetime
        )
        return token

    def grant(self, name: str, collection_id: str) -> None:
        self.user(name).consents.add(collection_id.lower())

    def revoke(self, name: str, collection_id: str) -> None:
        self.user(name).consents.discard(collection_id.lower())

    def expire(self, token: str) -> bool:
        """Make an access token (or every token of a user, given a user name) expire now."""
        if token in self._users:
            for acc in self._access.values():
                if acc.username == token:
                    acc.expires_at = 0.0
            return True
        found = self._access.get(token_key(token))
        if found is None:
            return False
        found.expires_at = 0.0
        return True

    def revoke_refresh(self, token: str) -> bool:
        return self._refresh.pop(token_key(token), None) is not None

    def authenticate(self, token: str | None, *, now: float) -> User:
        """The user behind a bearer token, or 401 AuthenticationFailed."""
        if not token:
            raise ApiError(
                401,
                "ClientError.AuthenticationFailed",
                "No Authorization header with a bearer token was given",
            )
        acc = self._access.get(token_key(token))
        if acc is None:
            raise ApiError(
                401, "ClientError.AuthenticationFailed", "Token is not valid: unknown token"
            )
        if now >= acc.expires_at:
            raise ApiError(
                401,
                "ClientError.AuthenticationFailed",
                "Token is not valid: the access token has expired",
            )
        return self._users[acc.username]

    def is_active(self, token: str, *, now: float) -> bool:
        acc = self._access.get(token_key(token))
        if acc is not None:
            return now < acc.expires_at
        return token_key(token) in self._refresh

    def user_of_refresh(self, token: str, client_id: str | None) -> str:
        name = self._refresh.get(token_key(token))
        if name is None:
            raise ApiError(400, "invalid_grant", "The refresh token is not valid")
        if not client_id:
            raise ApiError(401, "invalid_client", "client_id (or Basic client auth) is required")
        owner = self._native_clients.get(client_id)
        if owner is None and client_id in self._confidential:
            owner = self._confidential[client_id][1]
        if owner != name:
            raise ApiError(401, "invalid_client", "The refresh token was not issued to this client")
        return name

    def user_of_client(self, client_id: str, secret: str) -> str:
        entry = self._confidential.get(client_id)
        if entry is None or not secrets.compare_digest(entry[0], token_key(secret)):
            raise ApiError(401, "invalid_client", "Client authentication failed")
        return entry[1]

    def token_response(
        self,
        name: str,
        *,
        now: float,
        scope: str | None = None,
        refresh_token: str | None = None,
    ) -> dict[str, object]:
        """The body of POST /v2/oauth2/token (one new access token).

        ``refresh_token`` is the token a refresh grant was made with: Globus Auth answers a
        refresh with the refresh token again (not rotated), and globus-sdk replaces the one it
        holds with whatever the answer carries, None included. client_credentials gets none.
        """
        body: dict[str, object] = {
            "access_token": self.issue_access(name, now=now),
            "expires_in": int(self.token_lifetime),
            "resource_server": TRANSFER_RESOURCE_SERVER,
            "scope": scope or "urn:globus:auth:scope:transfer.api.globus.org:all",
            "token_type": "Bearer",
            "state": "_default",
            "other_tokens": [],
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body
