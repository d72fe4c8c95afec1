"""Frames on an endpoint's link to the bridge: pure data, no I/O.

One WebSocket per endpoint carries every relayed request and event stream, multiplexed by
an ``id`` the bridge picks. Each frame is one JSON text message with a ``type``::

    endpoint -> bridge   hello       the endpoint's description (name, plugins, collection)
    bridge -> endpoint   request     one HTTP request for the endpoint's own API, as ``owner``
    endpoint -> bridge   response    its answer (status, content type, body)
    bridge -> endpoint   cancel      the client gave up on ``id``: stop working on it
    bridge -> endpoint   ws_open     open the endpoint's ``/ws`` with this query, as ``owner``
    endpoint -> bridge   ws_accept   it is open; ``ws_message`` frames follow
    endpoint -> bridge   ws_refused  the handshake was refused (status and body)
    both ways            ws_message  one event-stream message, relayed unchanged
    endpoint -> bridge   ws_fanout   one message for several streams (``ids``): an event
                                     that many streams of the endpoint carry crosses once
    both ways            ws_close    the stream ended (code, reason)

Bodies are base64 so any byte sequence passes unchanged; they are decoded only at the two
ends and never logged (a register body holds a Globus credential in transit).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolViolation

__all__ = [
    "Cancel",
    "Frame",
    "Hello",
    "Request",
    "Response",
    "WsAccept",
    "WsClose",
    "WsFanout",
    "WsMessage",
    "WsOpen",
    "WsRefused",
    "decode",
    "encode",
]

# A request id or stream id is a positive integer below 2**53 (exact in every JSON reader).
_MAX_ID = 2**53 - 1


@dataclass(frozen=True)
class Hello:
    endpoint: dict[str, Any]


@dataclass(frozen=True, repr=False)
class Request:
    id: int
    owner: str
    method: str
    path: str
    query: str = ""
    content_type: str | None = None
    body: bytes = b""
    timeout: float = 60.0

    def __repr__(self) -> str:
        # Never the body: it may carry a credential.
        return f"Request(id={self.id}, method={self.method!r}, path={self.path!r})"


@dataclass(frozen=True, repr=False)
class Response:
    id: int
    status: int
    content_type: str | None = None
    body: bytes = b""
    # The few answer headers a client acts on (Retry-After, WWW-Authenticate, Allow).
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Response(id={self.id}, status={self.status})"


@dataclass(frozen=True)
class Cancel:
    id: int


@dataclass(frozen=True)
class WsOpen:
    id: int
    owner: str
    query: str = ""


@dataclass(frozen=True)
class WsAccept:
    id: int


@dataclass(frozen=True)
class WsRefused:
    id: int
    status: int
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class WsMessage:
    id: int
    text: str = field(repr=False)


@dataclass(frozen=True)
class WsFanout:
    ids: tuple[int, ...]
    text: str = field(repr=False)


@dataclass(frozen=True)
class WsClose:
    id: int
    code: int = 1000
    reason: str = ""


Frame = (
    Hello
    | Request
    | Response
    | Cancel
    | WsOpen
    | WsAccept
    | WsRefused
    | WsMessage
    | WsFanout
    | WsClose
)

_TYPES: dict[str, type[Frame]] = {
    "hello": Hello,
    "request": Request,
    "response": Response,
    "cancel": Cancel,
    "ws_open": WsOpen,
    "ws_accept": WsAccept,
    "ws_refused": WsRefused,
    "ws_message": WsMessage,
    "ws_fanout": WsFanout,
    "ws_close": WsClose,
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
# Expected JSON type of every field that may appear; bytes travel as base64 strings.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (int,),
    "owner": (str,),
    "method": (str,),
    "path": (str,),
    "query": (str,),
    "content_type": (str, type(None)),
    "body": (str,),
    "timeout": (int, float),
    "status": (int,),
    "code": (int,),
    "reason": (str,),
    "text": (str,),
    "endpoint": (dict,),
    "ids": (list,),
    "headers": (dict,),
}


def encode(frame: Frame) -> str:
    """The JSON text of ``frame``."""
    document: dict[str, Any] = {"type": _NAMES[type(frame)]}
    for name, value in vars(frame).items():
        document[name] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return json.dumps(document, separators=(",", ":"))


def decode(text: str | bytes) -> Frame:
    """The frame in ``text``, or :class:`ProtocolViolation` saying what is wrong with it."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ProtocolViolation("a link frame is not JSON") from None
    if not isinstance(document, dict):
        raise ProtocolViolation("a link frame is not a JSON object")
    cls = _TYPES.get(document.pop("type", None))
    if cls is None:
        raise ProtocolViolation("a link frame has an unknown type")
    known = cls.__dataclass_fields__
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name not in known:
            continue  # a newer peer may add fields; ignore them
        expected = _FIELD_TYPES[name]
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            raise ProtocolViolation(f"link frame field {name!r} has the wrong type")
        if name == "ids" and isinstance(value, list):
            if not value or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 < i <= _MAX_ID for i in value
            ):
                raise ProtocolViolation("link frame ids must be a list of frame ids")
            value = tuple(value)
        if (
            name == "headers"
            and isinstance(value, dict)
            and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise ProtocolViolation("link frame headers must map names to strings")
        if name == "body":
            try:
                value = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolViolation("link frame body is not base64") from None
        values[name] = value
    if "id" in known and not 0 < values.get("id", 0) <= _MAX_ID:
        raise ProtocolViolation("link frame id must be an integer in 1..2**53-1")
    try:
        return cls(**values)
    except TypeError:
        raise ProtocolViolation(f"link frame {_NAMES[cls]!r} misses a field") from None
