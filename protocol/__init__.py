"""The wire vocabulary shared by the daemon, the client, the ledger and the simulator.

Pure data and pure functions, no I/O: task statuses and which of them are final, event kinds
and the topic each belongs to, the envelope a committed event travels in (built by the
daemon, parsed by the client), WebSocket close codes, and the daemon's error codes. Each fact
is written here once; every package imports it from here.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final, Literal, get_args

__all__ = [
    "BATCH_PARAM",
    "BATCH_TYPE",
    "EVENT_KINDS",
    "EVENT_TEXT_PREFIX",
    "OPEN_STATUSES",
    "QUEUED",
    "STATUSES",
    "SUBMITTING",
    "TERMINAL_STATUSES",
    "TOPICS",
    "TRANSFER_STATUS_COUNTERS",
    "TRANSFER_STATUS_FIELDS",
    "TRANSFER_STATUS_FLAGS",
    "TROUBLE_FIELDS",
    "VERSION",
    "CloseCode",
    "Envelope",
    "ErrorCode",
    "EventKind",
    "SecretValue",
    "SubmitStatus",
    "TaskStatus",
    "Topic",
    "batch_text",
    "build_envelope",
    "compact_json",
    "encode_message",
    "envelope_seq",
    "envelope_text",
    "is_terminal",
    "kinds_of",
    "parse_batch",
    "parse_envelope",
    "parse_resume_reason",
    "parse_time_text",
    "resume_reason",
    "topic_of",
]

VERSION: Final = "0.1.0"

# Globus task statuses (Transfer API v0.10, task document "status"; docs.globus.org/api/
# transfer/task/#task_fields). SUCCEEDED and FAILED never change again.
TaskStatus = Literal["ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED"]
STATUSES: Final[tuple[TaskStatus, ...]] = get_args(TaskStatus)
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"SUCCEEDED", "FAILED"})
# Globus is still working on a task in these (INACTIVE waits for a renewed credential).
OPEN_STATUSES: Final[tuple[TaskStatus, ...]] = ("ACTIVE", "INACTIVE")


def is_terminal(status: object) -> bool:
    return status in TERMINAL_STATUSES


# The daemon's own statuses of a submit that is not a Globus task yet (never Globus's words):
# QUEUED waits in the daemon's admission queue for Globus capacity (nothing was sent); a
# SUBMITTING one is being sent, or was sent without an answer, and is resent with the same
# submission_id until Globus answers. Answers with either carry ``task_id: null``.
SubmitStatus = Literal["QUEUED", "SUBMITTING"]
QUEUED: Final = "QUEUED"
SUBMITTING: Final = "SUBMITTING"


class EventKind(enum.StrEnum):
    """The kinds of ledger events, as stored and as sent to clients."""

    SESSION_OPENED = "session_opened"
    SESSION_CLOSED = "session_closed"
    CREDENTIAL_EXPIRED = "credential_expired"
    SUBMIT_REQUESTED = "submit_requested"
    TASK_SUBMITTED = "task_submitted"
    DELETE_SUBMITTED = "delete_submitted"
    SUBMIT_FAILED = "submit_failed"
    TASK_STATE_CHANGED = "task_state_changed"
    TASK_PROGRESS = "task_progress"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_RESULT = "cancel_result"
    # Derived by the poller from Globus's task documents: once when a task starts needing
    # attention (erroring, paused, INACTIVE, stalled), once when it gets going again.
    TASK_NEEDS_ATTENTION = "task_needs_attention"
    TASK_RECOVERED = "task_recovered"
    # The admission queue: Globus refused a submit for a limit, so it waits in the daemon
    # (queued), is taken out to be sent (dequeued), is removed by the user before it was
    # sent (cancelled), or was accepted: admitted names its task_id beside its submission_id.
    SUBMIT_QUEUED = "submit_queued"
    SUBMIT_DEQUEUED = "submit_dequeued"
    SUBMIT_CANCELLED = "submit_cancelled"
    SUBMIT_ADMITTED = "submit_admitted"


EVENT_KINDS: Final[frozenset[str]] = frozenset(EventKind)


class Topic(enum.StrEnum):
    """What a client subscribes to: ``transfer_status`` is the seed's notification."""

    TRANSFER_STATUS = "transfer_status"
    SESSION = "session"
    TASK = "task"


TOPICS: Final[frozenset[str]] = frozenset(Topic)

_TOPIC_OF: Final[Mapping[str, Topic]] = {
    EventKind.TASK_SUBMITTED: Topic.TRANSFER_STATUS,
    EventKind.DELETE_SUBMITTED: Topic.TRANSFER_STATUS,
    EventKind.TASK_STATE_CHANGED: Topic.TRANSFER_STATUS,
    EventKind.TASK_PROGRESS: Topic.TRANSFER_STATUS,
    EventKind.TASK_NEEDS_ATTENTION: Topic.TRANSFER_STATUS,
    EventKind.TASK_RECOVERED: Topic.TRANSFER_STATUS,
    EventKind.SESSION_OPENED: Topic.SESSION,
    EventKind.SESSION_CLOSED: Topic.SESSION,
    EventKind.CREDENTIAL_EXPIRED: Topic.SESSION,
}


def topic_of(kind: str) -> Topic:
    """The topic of an event kind; kinds about one task's bookkeeping are ``task``."""
    return _TOPIC_OF.get(kind, Topic.TASK)


def kinds_of(topics: Iterable[str] | None) -> list[str] | None:
    """The event kinds of these topics (None: every kind)."""
    if topics is None:
        return None
    wanted = set(topics)
    return [kind for kind in EventKind if topic_of(kind) in wanted]


# Whether a task is healthy, in its row and on its transfer_status notification: the trouble
# fields of Globus's task document (``is_ok`` is null for a finished task, ``faults`` counts
# retried errors: docs.globus.org/api/transfer/task/#task_fields), ``error``: the newest Globus
# error event ({"code", "description", "details", "time"}), set on a notification only for a
# new fault, and ``needs_attention``: why the task needs attention now ("erroring", "paused",
# "inactive", "stalled") or null, with ``attention_message`` (on a notification only on
# task_needs_attention): the administrator's pause message, the newest error's description,
# or what an INACTIVE task waits for.
TROUBLE_FIELDS: Final = (
    "is_ok",
    "is_paused",
    "faults",
    "error",
    "needs_attention",
    "attention_message",
)
# The transfer_status notification: exactly these fields, counters never null. The seed's six
# first, then the trouble fields.
TRANSFER_STATUS_FIELDS: Final = (
    "task_id",
    "status",
    "label",
    "bytes_transferred",
    "files_transferred",
    "nice_status",
    *TROUBLE_FIELDS,
)
# Counters of a transfer_status notification: 0, never null, when the event has none.
TRANSFER_STATUS_COUNTERS: Final = ("bytes_transferred", "files_transferred", "faults")
# Flags of a transfer_status notification: false, never null, when the event has none.
TRANSFER_STATUS_FLAGS: Final = ("is_paused",)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A committed ledger event as the daemon sends it over WebSocket and in history pages."""

    seq: int
    time: float
    topic: str
    kind: str
    session_id: str | None
    task_id: str | None
    data: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {"type": "event", **fields, "data": dict(self.data)}


def build_envelope(
    *,
    seq: int,
    time: float,
    kind: str,
    session_id: str | None,
    task_id: str | None,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON-able envelope of one event; ``transfer_status`` data is cut to its fields."""
    topic = topic_of(kind)
    if topic is Topic.TRANSFER_STATUS:
        body: dict[str, Any] = {name: data.get(name) for name in TRANSFER_STATUS_FIELDS}
        for name in TRANSFER_STATUS_COUNTERS:
            if body[name] is None:
                body[name] = 0
        for name in TRANSFER_STATUS_FLAGS:
            if body[name] is None:
                body[name] = False
    else:
        body = dict(data)
    # The dict directly, as Envelope.as_dict() writes it: replay builds one per event, and
    # going through the frozen dataclass doubled the cost.
    return {
        "type": "event",
        "seq": seq,
        "time": time,
        "topic": topic,
        "kind": kind,
        "session_id": session_id,
        "task_id": task_id,
        "data": body,
    }


def envelope_seq(message: Mapping[str, Any]) -> int:
    """The seq of an event message from the daemon, once its shape is checked (a positive
    integer seq, a kind, a data object); ValueError says what is wrong with it. What a
    replaying client runs per event, so it builds nothing."""
    if message.get("type") != "event":
        raise ValueError("not an event message")
    seq = message.get("seq")
    if type(seq) is not int or seq < 1:
        raise ValueError("an event without a positive integer seq")
    data = message.get("data")
    # type() first: isinstance against an ABC costs a microsecond per replayed event.
    if type(message.get("kind")) is not str or not (
        type(data) is dict or isinstance(data, Mapping)
    ):
        raise ValueError(f"event {seq} without a kind or a data object")
    return seq


# How the compact JSON text of every event envelope begins (envelope_text, the ledger's SQL
# builder): a relay can read the seq without parsing the message.
EVENT_TEXT_PREFIX: Final = '{"type":"event","seq":'


def envelope_text(
    *,
    seq: int,
    time: float,
    kind: str,
    session_id: str | None,
    task_id: str | None,
    data_json: str,
) -> str:
    """The envelope of :func:`build_envelope` as compact JSON text, from the event's data
    as JSON text (as the ledger stores it): spliced in unparsed where the envelope carries
    the data whole, so a large event is never decoded and encoded again."""
    transfer = topic_of(kind) is Topic.TRANSFER_STATUS
    envelope = build_envelope(
        seq=seq,
        time=time,
        kind=kind,
        session_id=session_id,
        task_id=task_id,
        data=json.loads(data_json) if transfer else {},
    )
    if transfer:
        return json.dumps(envelope, separators=(",", ":"))
    del envelope["data"]
    head = json.dumps(envelope, separators=(",", ":"))
    return head[:-1] + ',"data":' + data_json + "}"


def parse_envelope(message: Mapping[str, Any]) -> Envelope:
    """Check an event message from the daemon; ValueError says what is wrong with it."""
    seq = envelope_seq(message)
    kind: str = message["kind"]
    time = message.get("time")
    return Envelope(
        seq=seq,
        time=float(time) if isinstance(time, int | float) else 0.0,
        topic=str(message.get("topic") or topic_of(kind)),
        kind=kind,
        session_id=_optional_str(message.get("session_id")),
        task_id=_optional_str(message.get("task_id")),
        data=message["data"],
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# A replay page as one WebSocket message: ``{"type": "events", "events": [envelope, ...]}``,
# the envelopes in seq order. Sent only to a client that asked with ``/ws?batch=1``: a
# client that does not know the type would skip it, and with it every event inside. One
# message per page instead of one per event is what lets a reconnecting client replay
# 100,000 events in about a second (a message costs a frame, a send and a receive wake-up
# on each side, more than the event itself).
BATCH_TYPE: Final = "events"
BATCH_PARAM: Final = "batch"


def batch_text(envelope_texts: Sequence[str]) -> str:
    """The batch message of envelopes already encoded as JSON objects, in seq order."""
    return '{"type":"events","events":[' + ",".join(envelope_texts) + "]}"


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def compact_json(*, allow_nan: bool) -> Callable[[Any], str]:
    """An encoder of compact JSON (no spaces, non-ASCII kept: frames and the ledger's columns
    are UTF-8), NaN/Infinity written or refused as ``allow_nan`` says.

    json.dumps builds a new encoder at every call; one C encoder made once encodes a small
    value in about half the time. No circular-reference markers: every value encoded is a
    fresh tree of validated fields, so it cannot contain itself."""
    if c_make_encoder is None:
        return json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
        ).encode
    encode = c_make_encoder(
        None, _refuse, encode_basestring, None, ":", ",", False, False, allow_nan
    )
    return lambda value: "".join(encode(value, 0))


_ENCODE_MESSAGE = compact_json(allow_nan=True)


def encode_message(message: Mapping[str, Any]) -> str:
    """The compact JSON text of a message (envelope, batch, heartbeat) as the daemon sends
    it."""
    return _ENCODE_MESSAGE(message)


def parse_batch(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The event messages of a batch message, in order (each still to be checked with
    :func:`parse_envelope`); ValueError says what is wrong with the batch."""
    if message.get("type") != BATCH_TYPE:
        raise ValueError("not a batch message")
    events = message.get("events")
    if not isinstance(events, list) or not all(
        type(e) is dict or isinstance(e, Mapping) for e in events
    ):
        raise ValueError("a batch without a list of event objects")
    return events


class CloseCode(enum.IntEnum):
    """WebSocket close codes the daemon sends (RFC 6455 section 7.4 plus our 4xxx range)."""

    GOING_AWAY = 1001  # daemon shutting down: reconnect later
    POLICY = 1008  # bad or revoked daemon token
    TOO_BIG = 1009  # a client message over the frame limit
    INTERNAL_ERROR = 1011  # the server failed; reconnect
    SERVICE_RESTART = 1012  # the relay behind this stream went away (bridge); reconnect
    LAGGED = 4008  # the client did not keep up: reason "resume from <seq>"
    BAD_REQUEST = 4400  # a malformed query (since, topics, ...)
    NOT_FOUND = 4404  # a session or task that is not this token's


def resume_reason(seq: int) -> str:
    """The close reason of a LAGGED close: where the client resumes."""
    return f"resume from {seq}"


def parse_resume_reason(reason: str) -> int | None:
    prefix = "resume from "
    if reason.startswith(prefix) and reason[len(prefix) :].isdigit():
        return int(reason[len(prefix) :])
    return None


class ErrorCode(enum.StrEnum):
    """The ``error`` field of the daemon's error answers ``{"error", "message", ...}``."""

    INTERNAL = "InternalError"
    CONFIG = "ConfigError"
    BAD_REQUEST = "BadRequest"
    VALIDATION = "ValidationError"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    REQUEST_TIMEOUT = "RequestTimeout"
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    HTTP = "HTTPError"
    LOCAL_COLLECTION_UNKNOWN = "LocalCollectionNotConfigured"
    UNAUTHORIZED = "Unauthorized"
    # A browser request from another site, or without the dashboard's CSRF token.
    FORBIDDEN = "Forbidden"
    NOT_FOUND = "NotFound"
    CREDENTIAL_MISSING = "CredentialMissing"
    CREDENTIAL_EXPIRED = "CredentialExpired"
    CREDENTIAL_REJECTED = "CredentialRejected"
    CONSENT_REQUIRED = "ConsentRequired"
    SUBMIT_PENDING = "SubmitPending"
    SUBMIT_FAILED = "SubmitFailed"
    SUBMISSION_ID_CONFLICT = "SubmissionIdConflict"
    QUEUE_FULL = "QueueFull"
    CANCEL_PENDING = "CancelPending"
    RATE_LIMITED = "RateLimited"
    GLOBUS = "GlobusError"


class SecretValue:
    """Base of every credential wrapper: the ledger refuses any value of this type, so a
    credential can never be recorded, whichever package wrapped it."""

    __slots__ = ()

    def reveal(self) -> str:
        raise NotImplementedError


def parse_time_text(text: str) -> float:
    """Seconds since the epoch of a time given as text on a command line (the client's
    ``--since``/``--until``, the daemon's ``prune --before``): Unix seconds, or ISO 8601,
    local time unless it carries an offset. ValueError when it is neither."""
    try:
        return float(text)
    except ValueError:
        pass
    value = datetime.fromisoformat(text)
    return (value.astimezone() if value.tzinfo is None else value).timestamp()
