"""The event stream's logic without I/O: cursor, de-duplication, backoff, cursor file.

The daemon's ``/ws`` replays the ledger after ``since`` and then streams live events in seq
order. A connection can drop at any moment (daemon restart, network, or the daemon closing a
slow client with code 4008); the client then reconnects with ``since`` = the last seq it
delivered. :class:`ReplayCursor` decides what to deliver so that the application sees each
event once and in order even when a replay overlaps what it already saw. The replay comes in
batch messages (``batch=1``, many envelopes per message); the core hands their events out one
at a time, and moves the cursor only as each is delivered. :class:`StreamCore`
holds every decision the sync and async streams share (cursor, saving, idle detection, which
refusals are final, backoff); they wrap it with their own sockets.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..protocol import BATCH_TYPE, CloseCode, envelope_seq, parse_batch
from . import calls
from .config import DaemonAddress, relocated
from .errors import (
    AuthenticationError,
    DaemonUnavailable,
    LedgerBehind,
    NotFoundError,
    OrbitError,
    ProtocolError,
    RequestError,
    error_from_response,
)

__all__ = [
    "MAX_MESSAGE",
    "Backoff",
    "CursorFile",
    "ReplayCursor",
    "StreamClosed",
    "StreamCore",
    "decode_message",
    "handshake_error",
    "is_fatal_close",
    "starting_seq",
]

# Largest WebSocket message accepted. The daemon takes request bodies up to 4 MB and a
# submit_requested event carries the whole request, re-encoded as ASCII-only JSON: a 2-byte
# UTF-8 character becomes a 6-byte \u escape, so an event can be about 3x its body.
MAX_MESSAGE = 16 * 2**20
# Close codes after which reconnecting cannot help: policy violation and the 44xx range a
# server uses for "your request is wrong / not allowed".
_FATAL_CLOSE = frozenset({1002, 1003, 1007, 1008})
# Handshake answers that a retry cannot fix. Not 403: uvicorn answers 403 to a socket the
# server closes before accepting it, which is what a daemon that is shutting down does.
_FATAL_HANDSHAKE = frozenset({400, 401, 404, 422})


class CloseFrame(Protocol):
    """What the core reads of a received close frame (websockets' ``Close``)."""

    @property
    def code(self) -> int: ...

    @property
    def reason(self) -> str: ...


class StreamClosed(OrbitError):
    """The stream is closed: by the application, or (``fatal``) by the daemon for good."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def is_fatal_close(code: int | None) -> bool:
    if code is None:
        return False
    return code in _FATAL_CLOSE or CloseCode.BAD_REQUEST <= code <= 4499


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
        # Set when the daemon says retention deleted events after our position: the events
        # of finished tasks up to this seq are gone, their task rows hold the final state.
        self.pruned_through: int | None = None

    def accept(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return the event to deliver, or None (heartbeat, duplicate, unknown type)."""
        kind = message.get("type")
        if kind == "heartbeat":
            head = message.get("head")
            if isinstance(head, int):
                self.head = head
                if self.last_seq is None:
                    self.last_seq = head
                elif head < self.last_seq:
                    raise LedgerBehind(head=head, cursor=self.last_seq)
            pruned = message.get("pruned_through")
            if isinstance(pruned, int) and self.last_seq is not None and self.last_seq < pruned:
                self.pruned_through = max(pruned, self.pruned_through or 0)
            return None
        if kind != "event":
            return None
        try:
            seq = envelope_seq(message)
        except ValueError as exc:
            raise ProtocolError(f"the daemon sent a malformed event: {exc}") from None
        if self.last_seq is not None and seq <= self.last_seq:
            return None
        self.last_seq = seq
        # A message fresh from json.loads is the client's own: no copy needed.
        return message if type(message) is dict else dict(message)


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


class StreamCore:
    """Everything the sync and async streams decide, without their sockets: where to
    connect, which message to deliver, when to save the cursor, when a silent connection
    counts as dead, which refusal ends the stream and how long to wait before retrying."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        since: int | None,
        session_id: str | None,
        task_id: str | None,
        topic: str | None,
        cursor_file: str | None,
        idle_timeout: float,
        give_up_after: float | None,
        backoff: Backoff | None,
        endpoint_file: Path | None = None,
    ) -> None:
        self.url = url
        self._endpoint_file = endpoint_file
        self.headers = {"Authorization": f"Bearer {token}"}
        self._filters = {"session_id": session_id, "task_id": task_id, "topic": topic}
        self._cursor_file = CursorFile(cursor_file) if cursor_file else None
        self.cursor = ReplayCursor(starting_seq(since, self._cursor_file))
        self.idle_timeout = idle_timeout
        self._give_up_after = give_up_after
        self._backoff = backoff or Backoff()
        self._unsaved: int | None = None
        self._last_message = 0.0
        # Events of the last batch message not delivered yet, in seq order.
        self._pending: deque[Mapping[str, Any]] = deque()
        self.connects = 0

    def target(self) -> str:
        """The WebSocket URL resuming after the last delivered event (replay in batches)."""
        return calls.websocket_url(
            self.url, since=self.cursor.last_seq, batch=True, **self._filters
        )

    def _relocate(self) -> bool:
        """Follow a daemon that came back on another port (announced in its endpoint.json)."""
        if self._endpoint_file is None:
            return False
        moved = relocated(DaemonAddress(self.url, "", endpoint_file=self._endpoint_file))
        if moved is None:
            return False
        self.url = moved.url
        return True

    def save(self) -> None:
        """Record the last delivered event in the cursor file (if any and not yet saved)."""
        if self._cursor_file is not None and self._unsaved is not None:
            self._cursor_file.save(self._unsaved)
            self._unsaved = None

    def receive_timeout(self, deadline: float | None) -> float | None:
        """How long the next receive may wait; None when ``deadline`` has passed."""
        wait = self.idle_timeout
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return None
        return wait

    def is_idle(self) -> bool:
        """Heartbeats stopped: the connection is dead without knowing it."""
        return time.monotonic() - self._last_message >= self.idle_timeout

    def received(self, raw: str | bytes) -> dict[str, Any] | None:
        """The event to deliver for one message, or None (heartbeat, duplicate). A batch
        message yields its first new event; :meth:`pending` hands out the rest."""
        self._last_message = time.monotonic()
        self._backoff.reset()
        message = decode_message(raw)
        if message.get("type") == BATCH_TYPE:
            try:
                self._pending.extend(parse_batch(message))
            except ValueError as exc:
                raise ProtocolError(f"the daemon sent a malformed batch: {exc}") from None
            return self.pending()
        return self._deliver(message)

    def pending(self) -> dict[str, Any] | None:
        """The next new event of a batch already received, or None when none is left."""
        while self._pending:
            event = self._deliver(self._pending.popleft())
            if event is not None:
                return event
        return None

    def _deliver(self, message: Mapping[str, Any]) -> dict[str, Any] | None:
        event = self.cursor.accept(message)
        if event is not None:
            self._unsaved = self.cursor.last_seq
        return event

    def connected(self) -> bool:
        """Count a new connection; True when it is a reconnection."""
        self.connects += 1
        self._last_message = time.monotonic()
        return self.connects > 1

    @staticmethod
    def closed_for_good(frame: CloseFrame | None) -> StreamClosed | None:
        """The error ending the stream when the daemon closed it with ``frame`` (None: no
        close frame came), or None when reconnecting may help."""
        if frame is None or not is_fatal_close(frame.code):
            return None
        return StreamClosed(f"the daemon ended the stream: {frame.code} {frame.reason}", fatal=True)

    @staticmethod
    def refused(status: int, body: bytes) -> RequestError | None:
        """The error ending the stream for a refused handshake, or None to retry."""
        return handshake_error(status, body) if status in _FATAL_HANDSHAKE else None

    def retry_delay(
        self, failing_since: float, reason: str, deadline: float | None
    ) -> tuple[float, bool]:
        """Seconds to wait before the next attempt, and whether ``deadline`` comes first
        (then the wait lasts until it and the caller returns empty-handed). Raises
        DaemonUnavailable once ``give_up_after`` seconds passed without a connection."""
        now = time.monotonic()
        if self._give_up_after is not None and now - failing_since >= self._give_up_after:
            raise DaemonUnavailable(self.url, reason)
        if self._relocate():
            return 0.0, False
        delay = self._backoff.next_delay()
        if deadline is not None and now + delay >= deadline:
            return max(0.0, deadline - now), True
        return delay, False
