"""Daemon access tokens (who may talk to the daemon), not Globus credentials.

The state folder holds ``token`` (the default client token, mode 0600) and ``tokens.json``
(mode 0600): name -> ``{"id": ..., "sha256": ...}`` of each token. Only hashes are kept in
memory; a presented token is hashed and compared with every stored hash in constant time.

What owns sessions is a token's **id**, generated at random by ``token add`` and never
given to another token: deleting ``bob`` and adding a new ``bob`` gives the new one a new
id, so it cannot reach the sessions (and live Globus credentials) of the old one. Files
written before ids existed map a name to its hash alone; such a token keeps its name as
its id, so the sessions it already owns stay its own.

Under systemd the default token may instead be provisioned as a credential
(``LoadCredential=client-token:/etc/orbit-globus/client-token``): when
``$CREDENTIALS_DIRECTORY/client-token`` exists, its hash is the default token's and the
daemon writes no ``token`` file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from ..errors import BadRequest, ConfigError, Unauthorized
from ..runtime.private_files import write_private

__all__ = [
    "CREDENTIAL_NAME",
    "DEFAULT_TOKEN_NAME",
    "TokenStore",
    "bearer_or_cookie",
    "credential_hash",
    "parse_bearer",
    "token_digest",
]

DEFAULT_TOKEN_NAME = "default"  # noqa: S105 - a name, not a secret
CREDENTIAL_NAME = "client-token"
# A provisioned token shorter than this is refused: it could be guessed.
_MIN_CREDENTIAL_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

T = TypeVar("T")


def token_digest(token: str) -> str:
    """The sha256 hex digest a token is stored and compared as."""
    return hashlib.sha256(token.encode()).hexdigest()


def credential_hash(environ: Mapping[str, str]) -> str | None:
    """The sha256 of the client token systemd handed over as credential ``client-token``,
    or None without one. The token itself is not kept."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / CREDENTIAL_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the credential {path}: {type(exc).__name__}") from None
    if len(text.strip()) < _MIN_CREDENTIAL_LENGTH:
        raise ConfigError(
            f"the credential {path} must hold one client token of at least "
            f"{_MIN_CREDENTIAL_LENGTH} characters (e.g. from `openssl rand -hex 32`)"
        )
    return token_digest(text.strip())


def parse_bearer(
    header: str | None,
    *,
    source: str = "the token from the daemon's state folder (file 'token')",
    refuse: Callable[[str], Exception] = Unauthorized,
) -> str:
    """The token of an ``Authorization: Bearer <token>`` header. A missing or malformed one
    raises ``refuse(message)``, the message naming ``source``, where a token comes from
    (the bridge has its own tokens and errors)."""
    if not header:
        raise refuse(
            f"missing Authorization header: send 'Authorization: Bearer <token>' with {source}"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise refuse("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def bearer_or_cookie(
    header: str | None,
    *,
    cookie: Callable[[], T | None],
    bearer: Callable[[str | None], T],
) -> T:
    """Who makes a request: without an ``Authorization`` header the dashboard's browser
    session (``cookie()``, None without its cookie), else (and then) ``bearer(header)``:
    bearer tokens stay the clients' way in, a missing one is refused there."""
    if header is None and (who := cookie()) is not None:
        return who
    return bearer(header)


def _new_id() -> str:
    # Never a valid token name (names start with a letter or digit), so never the id of
    # a token from before ids existed either.
    return "~" + secrets.token_hex(12)


class TokenStore:
    def __init__(self, state_dir: Path, *, default_hash: str | None = None) -> None:
        self.state_dir = state_dir
        self.token_path = state_dir / "token"
        self.hashes_path = state_dir / "tokens.json"
        # The hash of a default token provisioned from outside (systemd credential); it
        # replaces the state folder's default in memory and is never written.
        self._default_hash = default_hash
        # name -> (id, sha256)
        self._entries: dict[str, tuple[str, str]] = {}
        self._mtime: int | None = None
        # Tokens made in memory for identities that never get a file entry (the bridge
        # link's one per bridge client); gone with the process, never written.
        self._ephemeral: dict[str, str] = {}
        self._ephemeral_tokens: dict[str, str] = {}

    def ensure(self) -> bool:
        """Create the default token on first start; True when it was created now."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = False
        if not self.hashes_path.exists() and self._default_hash is not None:
            write_private(self.hashes_path, "{}")  # named tokens only; no token file
        elif not self.hashes_path.exists():
            token = secrets.token_urlsafe(32)
            write_private(self.token_path, token + "\n")
            entry = {"id": DEFAULT_TOKEN_NAME, "sha256": token_digest(token)}
            write_private(self.hashes_path, json.dumps({DEFAULT_TOKEN_NAME: entry}))
            created = True
        self._load()
        return created

    def _read(self) -> dict[str, tuple[str, str]]:
        try:
            data = json.loads(self.hashes_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.hashes_path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.hashes_path} must map token names to their id and sha256")
        entries: dict[str, tuple[str, str]] = {}
        for name, value in data.items():
            if isinstance(value, str):  # written before ids existed: the name is the id
                entries[name] = (name, value)
            elif (
                isinstance(value, dict)
                and isinstance(value.get("id"), str)
                and isinstance(value.get("sha256"), str)
            ):
                entries[name] = (value["id"], value["sha256"])
            else:
                raise ConfigError(
                    f"{self.hashes_path}: entry {name!r} must be {{'id': ..., 'sha256': ...}}"
                )
        return entries

    def _write(self, entries: dict[str, tuple[str, str]]) -> None:
        data = {name: {"id": tid, "sha256": digest} for name, (tid, digest) in entries.items()}
        write_private(self.hashes_path, json.dumps(data, indent=1))

    def _load(self) -> None:
        try:
            mtime = self.hashes_path.stat().st_mtime_ns
        except OSError as exc:
            raise ConfigError(f"cannot read {self.hashes_path}: {exc}") from exc
        entries = self._read()
        if self._default_hash is not None:
            entries[DEFAULT_TOKEN_NAME] = (DEFAULT_TOKEN_NAME, self._default_hash)
        self._entries = entries
        self._mtime = mtime

    def reload_if_changed(self) -> set[str]:
        """Re-read ``tokens.json`` if it changed (``token add``/``delete`` while the daemon
        serves); returns the ids of the tokens that are gone."""
        try:
            mtime = self.hashes_path.stat().st_mtime_ns
        except OSError:
            return set()
        if mtime == self._mtime:
            return set()
        before = self.ids()
        try:
            self._load()
        except ConfigError:
            return set()  # caught mid-write by an editor: the next look will do
        return before - self.ids()

    def add(self, name: str) -> str:
        """Create a named token and return it (shown once; only its hash is stored)."""
        if not _NAME.match(name):
            raise BadRequest(
                f"token name {name!r} is invalid: use 1-64 letters, digits, '_', '.', '@', '-'"
            )
        self.ensure()
        entries = self._read()
        if name in entries:
            raise BadRequest(f"a token named {name!r} exists already; pick another name")
        token = secrets.token_urlsafe(32)
        entries[name] = (_new_id(), token_digest(token))
        self._write(entries)
        self._load()
        return token

    def ephemeral(self, name: str) -> str:
        """A token for identity ``name`` that lives in this process's memory only."""
        token = self._ephemeral_tokens.get(name)
        if token is None:
            token = secrets.token_urlsafe(32)
            self._ephemeral_tokens[name] = token
            self._ephemeral[name] = token_digest(token)
        return token

    def delete(self, name: str) -> None:
        """Revoke a named token: a running daemon closes its WebSockets and refuses it."""
        self.ensure()
        entries = self._read()
        if name not in entries:
            raise BadRequest(f"no token named {name!r}; `token list` shows the names")
        del entries[name]
        self._write(entries)
        self._load()

    def names(self) -> list[str]:
        self.reload_if_changed()
        return sorted(self._entries)

    def name_of(self, token_id: str) -> str:
        """The name a token id goes by (people know tokens by name; sessions by id)."""
        self.reload_if_changed()
        for name, (tid, _) in self._entries.items():
            if tid == token_id:
                return name
        return token_id  # an in-memory identity (a bridge client) is its own name

    def ids(self) -> set[str]:
        return {tid for tid, _ in self._entries.values()}

    def verify(self, token: str) -> str:
        """Return the token's id (what owns its sessions), or raise Unauthorized."""
        return self.verify_digest(token_digest(token))

    def verify_digest(self, digest: str) -> str:
        """The id of the token whose sha256 is ``digest`` (a browser session keeps only the
        digest of the token that signed it in), or raise Unauthorized: a deleted token ends
        its browser sessions at their next request."""
        self.reload_if_changed()
        found: str | None = None
        # Compare with every entry so timing does not depend on where a match is.
        for tid, stored in (*self._entries.values(), *self._ephemeral.items()):
            if hmac.compare_digest(digest, stored):
                found = tid
        if found is None:
            raise Unauthorized("the bearer token is not valid for this daemon")
        return found
