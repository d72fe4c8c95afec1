"""The event stream's logic without I/O: cursor, de-duplication, backoff, cursor file.

The daemon's ``/ws`` replays the ledger after ``since`` and then streams live events in seq
order. A connection can drop at any moment (daemon restart, network, or the daemon closing a
slow client with code 4008); the client then reconnects with ``since`` = the last seq it
delivered. :class:`ReplayCursor` decides what to deliver so that the application sees each
event once and in order even when a replay overlaps what it already saw. The sync and async
streams wrap this core with their own sockets.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import (
    AuthenticationError,
    NotFoundError,
    OrbitError,
    ProtocolError,
    RequestError,
    error_from_response,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CLIENT",
    "Backoff",
    "CursorFile",
    "ReplayCursor",
    "StreamClosed",
    "decode_message",
    "handshake_error",
    "is_fatal_close",
    "starting_seq",
]

CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CLIENT = 4008
# Close codes after which reconnecting cannot help: policy violation and the 44xx range a
# server uses for "your request is wrong / not allowed".
_FATAL_CLOSE = frozenset({1002, 1003, 1007, 1008})


class StreamClosed(OrbitError):
    """The stream is closed: by the application, or (``fatal``) by the daemon for good."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def is_fatal_close(code: int | None) -> bool:
    if code is None:
        return False
    return code in _FATAL_CLOSE or 4400 <= code <= 4499


def decode_message(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except ValueError:
        raise ProtocolError("the daemon sent a WebSocket message that is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("the daemon sent a WebSocket message that is not a JSON object")
    return message


def handshake_error(status: int, body: bytes) -> RequestError:
    """The exception for a refused WebSocket handshake (the daemon answers like HTTP)."""
    try:
        document: Any = json.loads(body) if body else None
    except ValueError:
        document = None
    error = error_from_response(status, document)
    if status == 404 and not isinstance(error, NotFoundError):
        return NotFoundError(status, error.code, error.message, info=error.info)
    if status == 401 and not isinstance(error, AuthenticationError):
        return AuthenticationError(status, error.code, error.message, info=error.info)
    return error


class ReplayCursor:
    """Tracks the last delivered seq and filters a stream of daemon messages.

    ``last_seq`` None means "start at the live head": the first heartbeat (or event) fixes
    the position, so a reconnect before any event still resumes without a gap.
    """

    def __init__(self, since: int | None) -> None:
        self.last_seq: int | None = since
        self.head: int | None = None

    def accept(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the event to deliver, or None (heartbeat, duplicate, unknown type)."""
        kind = message.get("type")
        if kind == "heartbeat":
            head = message.get("head")
            if isinstance(head, int):
                self.head = head
                if self.last_seq is None:
                    self.last_seq = head
            return None
        if kind != "event":
            return None
        seq = message.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ProtocolError("the daemon sent an event without an integer seq")
        if self.last_seq is not None and seq <= self.last_seq:
            return None
        self.last_seq = seq
        return dict(message)


@dataclass
class Backoff:
    """Jittered exponential backoff ("full jitter"): delay n is uniform in [0, min(cap, base*2^n)].

    The floor keeps a storm of reconnecting clients from hammering a daemon that just came up.
    """

    base: float = 0.2
    cap: float = 10.0
    floor: float = 0.05
    attempts: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempts))
        self.attempts += 1
        return max(self.floor, random.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempts = 0


class CursorFile:
    """Persists the last delivered seq so a restarted process continues where it stopped.

    Written by write-to-temporary + rename, so a crash leaves either the old or the new
    cursor, never a torn file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> int | None:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ProtocolError(f"cursor file {self.path} is unreadable: {exc}") from None
        seq = document.get("seq") if isinstance(document, dict) else None
        if not isinstance(seq, int) or seq < 0:
            raise ProtocolError(f'cursor file {self.path} has no {{"seq": N}}')
        return seq

    def save(self, seq: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps({"seq": seq}))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def starting_seq(since: int | None, cursor_file: CursorFile | None) -> int | None:
    """The saved cursor wins over ``since``: it records what this consumer already handled."""
    if cursor_file is not None:
        saved = cursor_file.load()
        if saved is not None:
            return saved
    return since
