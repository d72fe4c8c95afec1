"""Credentials held in memory only.

``Secret`` wraps a token so that ``repr``/``str``/formatting show a mask: a secret that slips
into a log call, an f-string or a traceback's locals display stays hidden. ``Credential`` is
what a session was registered with; ``reveal()`` is called in exactly one place, when the
globus-sdk authorizer is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from typing import Any

from ...protocol import SecretValue

__all__ = ["Credential", "Secret", "known_secrets"]

_MASK = "***"
# Values of every live Secret, so the log redaction processor can scrub them even when
# they appear inside free text. Guarded by a lock because globus-sdk threads create none,
# but the event loop and executor threads may both read it.
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


def known_secrets() -> frozenset[str]:
    with _LIVE_LOCK:
        return frozenset(_LIVE)


class Secret(SecretValue):
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 8:
            with _LIVE_LOCK:
                _LIVE.add(value)

    def reveal(self) -> str:
        return self._value

    def forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self._value)

    def __repr__(self) -> str:
        return f"Secret({_MASK})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Credential:
    """An access token, or a refresh token with the native-app client id that issued it."""

    access_token: Secret | None = None
    refresh_token: Secret | None = None
    client_id: str | None = None

    @property
    def budget_key(self) -> str:
        """Names the credential without revealing it: sessions registered with the same
        token share one request budget (Globus meters per user)."""
        secret = self.refresh_token or self.access_token
        value = secret.reveal() if secret is not None else ""
        return hashlib.sha256(f"{self.kind}:{value}".encode()).hexdigest()

    @property
    def kind(self) -> str:
        return "refresh_token" if self.refresh_token is not None else "access_token"

    def forget(self) -> None:
        for secret in (self.access_token, self.refresh_token):
            if secret is not None:
                secret.forget()
