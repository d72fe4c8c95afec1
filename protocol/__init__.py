"""The wire vocabulary shared by the daemon, the client, the ledger and the simulator.

Pure data and pure functions, no I/O: task statuses and which of them are final, event kinds
and the topic each belongs to, the envelope a committed event travels in (built by the
daemon, parsed by the client), WebSocket close codes, and the daemon's error codes. Each fact
is written here once; every package imports it from here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

__all__ = [
    "EVENT_KINDS",
    "STATUSES",
    "TERMINAL_STATUSES",
    "TOPICS",
    "TRANSFER_STATUS_FIELDS",
    "VERSION",
    "CloseCode",
    "Envelope",
    "ErrorCode",
    "EventKind",
    "SecretValue",
    "TaskStatus",
    "Topic",
    "build_envelope",
    "is_terminal",
    "parse_envelope",
    "parse_resume_reason",
    "resume_reason",
    "topic_of",
]

VERSION: Final = "0.1.0"

# Globus task statuses (Transfer API v0.10, task document "status"; docs.globus.org/api/
# transfer/task/#task_fields). SUCCEEDED and FAILED never change again.
TaskStatus = Literal["ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED"]
STATUSES: Final[tuple[TaskStatus, ...]] = get_args(TaskStatus)
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"SUCCEEDED", "FAILED"})


def is_terminal(status: object) -> bool:
    return status in TERMINAL_STATUSES


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


# The transfer_status notification: exactly these fields, counters never null. The seed's six
# first; then the trouble fields of Globus's task document (``is_ok`` is null for a finished
# task, ``faults`` counts retried errors: docs.globus.org/api/transfer/task/#task_fields),
# ``error``: the newest Globus error event ({"code", "description", "details", "time"}), set
# only on the notification of a new fault, and ``needs_attention``: why the task needs
# attention now ("erroring", "paused", "inactive", "stalled") or null, and on the
# task_needs_attention notification ``attention_message``: the administrator's pause message,
# the newest error's description, or what an INACTIVE task waits for.
TRANSFER_STATUS_FIELDS: Final = (
    "task_id",
    "status",
    "label",
    "bytes_transferred",
    "files_transferred",
    "nice_status",
    "is_ok",
    "is_paused",
    "faults",
    "error",
    "needs_attention",
    "attention_message",
)
_COUNTERS: Final = ("bytes_transferred", "files_transferred", "faults")


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
        return {
            "type": "event",
            "seq": self.seq,
            "time": self.time,
            "topic": self.topic,
            "kind": self.kind,
            "session_id": self.session_id,
            "task_id": self.task_id,
            "data": dict(self.data),
        }


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
        for name in _COUNTERS:
            if body[name] is None:
                body[name] = 0
        if body["is_paused"] is None:
            body["is_paused"] = False
    else:
        body = dict(data)
    return Envelope(seq, time, topic, kind, session_id, task_id, body).as_dict()


def parse_envelope(message: Mapping[str, Any]) -> Envelope:
    """Check an event message from the daemon; ValueError says what is wrong with it."""
    if message.get("type") != "event":
        raise ValueError("not an event message")
    seq = message.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("an event without a positive integer seq")
    kind = message.get("kind")
    data = message.get("data")
    if not isinstance(kind, str) or not isinstance(data, Mapping):
        raise ValueError(f"event {seq} without a kind or a data object")
    time = message.get("time")
    return Envelope(
        seq=seq,
        time=float(time) if isinstance(time, int | float) else 0.0,
        topic=str(message.get("topic") or topic_of(kind)),
        kind=kind,
        session_id=_optional_str(message.get("session_id")),
        task_id=_optional_str(message.get("task_id")),
        data=data,
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


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
    CANCEL_PENDING = "CancelPending"
    RATE_LIMITED = "RateLimited"
    GLOBUS = "GlobusError"


class SecretValue:
    """Base of every credential wrapper: the ledger refuses any value of this type, so a
    credential can never be recorded, whichever package wrapped it."""

    __slots__ = ()

    def reveal(self) -> str:
        raise NotImplementedError
