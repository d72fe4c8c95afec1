"""Who may connect: enrolled endpoints and client tokens, kept as hashes only.

The state folder holds two files, mode 0600, written atomically:

- ``endpoints.json``: endpoint name -> ``{"hash": sha256 of its enrollment token,
  "info": last description it sent}`` (the info lets ``GET /endpoints`` describe an
  endpoint that is offline);
- ``clients.json``: client name -> ``{"hash": sha256 of its token, "endpoints": [...]}``,
  where ``"*"`` allows every endpoint.

Tokens are printed once by ``orbit-globus-bridge endpoint add`` / ``token add`` and never
stored. A presented token is hashed and compared with every stored hash in constant time.
The files are re-read when they change, so names added while the bridge runs work at once.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..daemon.api.auth import token_digest
from ..daemon.runtime.private_files import write_private
from .errors import BadRequest, ConfigError, Unauthorized

__all__ = ["ALL_ENDPOINTS", "Client", "Registry", "check_name"]

ALL_ENDPOINTS = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, *, what: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(
            f"{what} name {name!r} is invalid: use 1-64 letters, digits, '_', '.', '-'"
        )
    return name


@dataclass(frozen=True)
class Client:
    """A bridge client: its token's name and the endpoints it may use."""

    name: str
    endpoints: frozenset[str]

    def may_use(self, endpoint: str) -> bool:
        return ALL_ENDPOINTS in self.endpoints or endpoint in self.endpoints


class _Table:
    """One JSON file of name -> record, cached and re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._records: dict[str, dict[str, Any]] = {}
        self._mtime: int | None = None

    def records(self) -> dict[str, dict[str, Any]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._records, self._mtime = {}, None
            return self._records
        if mtime != self._mtime:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {self.path}: {exc}") from exc
            if not isinstance(data, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("hash"), str) for v in data.values()
            ):
                raise ConfigError(f"{self.path} must map names to records with a 'hash'")
            self._records, self._mtime = data, mtime
        return self._records

    def write(self, records: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps(records, indent=1, sort_keys=True))
        self._mtime = None

    def match(self, token: str) -> str | None:
        return self.match_digest(token_digest(token))

    def match_digest(self, digest: str) -> str | None:
        found: str | None = None
        # Compare with every entry so timing does not depend on where a match is.
        for name, record in self.records().items():
            if hmac.compare_digest(digest, record["hash"]):
                found = name
        return found


class Registry:
    """Enrolled endpoints and client tokens of one bridge state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._endpoints = _Table(state_dir / "endpoints.json")
        self._clients = _Table(state_dir / "clients.json")

    # -- endpoints -------------------------------------------------------------------------

    def add_endpoint(self, name: str) -> str:
        """Enroll endpoint ``name``; returns its token (shown once)."""
        check_name(name, what="endpoint")
        records = dict(self._endpoints.records())
        if name in records:
            raise BadRequest(f"an endpoint named {name!r} is enrolled already; remove it first")
        token = secrets.token_urlsafe(32)
        records[name] = {"hash": token_digest(token), "info": {}}
        self._endpoints.write(records)
        return token

    def remove_endpoint(self, name: str) -> None:
        records = dict(self._endpoints.records())
        if records.pop(name, None) is None:
            raise BadRequest(f"no endpoint named {name!r} is enrolled")
        self._endpoints.write(records)

    def endpoint_names(self) -> list[str]:
        return sorted(self._endpoints.records())

    def endpoint_info(self, name: str) -> dict[str, Any]:
        info = self._endpoints.records().get(name, {}).get("info")
        return dict(info) if isinstance(info, dict) else {}

    def remember_info(self, name: str, info: dict[str, Any]) -> None:
        """Keep the description an endpoint sent, for listing it while it is offline."""
        records = dict(self._endpoints.records())
        if name in records and records[name].get("info") != info:
            records[name] = {**records[name], "info": info}
            self._endpoints.write(records)

    def verify_endpoint(self, token: str) -> str:
        name = self._endpoints.match(token)
        if name is None:
            raise Unauthorized("the enrollment token is not valid for this bridge")
        return name

    # -- clients ---------------------------------------------------------------------------

    def add_client(self, name: str, endpoints: list[str]) -> str:
        """Create client token ``name`` allowed ``endpoints``; returns it (shown once)."""
        check_name(name, what="token")
        allowed = sorted({e.strip() for e in endpoints if e.strip()}) or [ALL_ENDPOINTS]
        for endpoint in allowed:
            if endpoint != ALL_ENDPOINTS:
                check_name(endpoint, what="endpoint")
        records = dict(self._clients.records())
        if name in records:
            raise BadRequest(f"a token named {name!r} exists already; pick another name")
        token = secrets.token_urlsafe(32)
        records[name] = {"hash": token_digest(token), "endpoints": allowed}
        self._clients.write(records)
        return token

    def clients(self) -> list[Client]:
        return [
            Client(name=name, endpoints=frozenset(record.get("endpoints", [])))
            for name, record in sorted(self._clients.records().items())
        ]

    def verify_client(self, token: str) -> Client:
        return self.verify_client_digest(token_digest(token))

    def verify_client_digest(self, digest: str) -> Client:
        """The client whose token's sha256 is ``digest`` (a dashboard session keeps only that)."""
        name = self._clients.match_digest(digest)
        if name is None:
            raise Unauthorized("the bearer token is not valid for this bridge")
        endpoints = self._clients.records()[name].get("endpoints", [])
        return Client(name=name, endpoints=frozenset(str(e) for e in endpoints))
