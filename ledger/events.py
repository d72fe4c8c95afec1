"""Ledger events: one frozen dataclass per kind, typed fields only.

Every field's type comes from the whitelist in :mod:`.codec` (checked when the class is
declared) and every value is checked when an event is built. No event has a free-form dict,
and a credential wrapper (``Secret``) or any other foreign object is refused with
:class:`~.errors.CredentialRefused` / :class:`~.errors.EventTypeError`: a credential cannot
be recorded by construction.

``owner`` and ``session_id`` belong to every event and are stored in their own columns; the
other fields form the event's ``data`` (a JSON object). ``StoredEvent`` is an event as read
back: its ``seq``, commit ``time`` (Unix seconds) and the envelope columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar, dataclass_transform

from ..protocol import TERMINAL_STATUSES, TaskStatus
from .codec import Spec, compile_spec, record, spec_of
from .errors import EventTypeError

__all__ = [
    "EVENT_KINDS",
    "TERMINAL_STATUSES",
    "AttentionReason",
    "CancelRequested",
    "CancelResult",
    "CredentialExpired",
    "DeleteRequest",
    "DeleteSubmitted",
    "Event",
    "FatalError",
    "Record",
    "SessionClosed",
    "SessionOpened",
    "StoredEvent",
    "SubmitAdmitted",
    "SubmitCancelled",
    "SubmitDequeued",
    "SubmitFailed",
    "SubmitQueued",
    "SubmitRequested",
    "TaskError",
    "TaskNeedsAttention",
    "TaskProgress",
    "TaskRecovered",
    "TaskStateChanged",
    "TaskStatus",
    "TaskSubmitted",
    "TaskType",
    "TransferItem",
    "TransferRequest",
    "TroublePolicy",
    "decode_event",
    "encode_event",
]

TaskType = Literal["TRANSFER", "DELETE"]
# Why a task needs attention: Globus retries an error (ACTIVE, is_ok false), an administrator
# paused it (ACTIVE, is_paused), a credential expired (INACTIVE), or it moved no bytes for
# the configured time.
AttentionReason = Literal["erroring", "paused", "inactive", "stalled"]
SyncLevel = Literal["exists", "size", "mtime", "checksum"]

_ENVELOPE = frozenset({"owner", "session_id"})
E = TypeVar("E", bound="Event")
R = TypeVar("R", bound="Record")


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """Base of the typed values events may contain (validated when built)."""

    def __post_init__(self) -> None:
        spec_of(type(self)).validate(self)


@record
class TransferItem(Record):
    source: str
    destination: str
    recursive: bool = False


@record
class TroublePolicy(Record):
    """When the daemon cancels a task in trouble on its own (any condition that is set):
    after ``max_faults`` retried errors, after ``max_trouble_minutes`` needing attention, or
    at the first error whose code is in ``fatal_codes`` (e.g. FILE_NOT_FOUND)."""

    max_faults: int | None = None
    max_trouble_minutes: float | None = None
    fatal_codes: tuple[str, ...] = ()


@record
class TaskError(Record):
    """A Globus error event of a task (``is_error`` true in its event list): a code such as
    FILE_NOT_FOUND, a short lowercase ``description`` and the long text in ``details``
    (docs.globus.org/api/transfer/task/#event_document)."""

    code: str
    description: str = ""
    details: str = ""
    time: str | None = None


@record
class TransferRequest(Record):
    """What a transfer submit asked for (the Globus document is built from it)."""

    source: str
    destination: str
    items: tuple[TransferItem, ...]
    label: str | None = None
    sync_level: SyncLevel | None = None
    verify_checksum: bool = False
    preserve_timestamp: bool = False
    deadline: str | None = None
    # Globus skips a source path it cannot read instead of retrying it (SKIPPED_ERRORS).
    skip_source_errors: bool = False
    policy: TroublePolicy | None = None


@record
class DeleteRequest(Record):
    """What a delete submit asked for."""

    collection: str
    paths: tuple[str, ...]
    recursive: bool = False
    label: str | None = None
    policy: TroublePolicy | None = None


@record
class FatalError(Record):
    """Globus's ``fatal_error`` of a task: a code and a description."""

    code: str
    description: str = ""


EVENT_KINDS: dict[str, type[Event]] = {}
_EVENT_SPECS: dict[type, tuple[Spec, bool]] = {}


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Base of all events; ``kind`` names the class in the ledger."""

    kind: ClassVar[str] = ""
    owner: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        try:
            spec, _ = _EVENT_SPECS[type(self)]
        except KeyError:
            raise TypeError(f"{type(self).__name__} is not a registered event kind") from None
        spec.validate(self)


@dataclass_transform(frozen_default=True, kw_only_default=True)
def _kind(name: str) -> Callable[[type[E]], type[E]]:
    """Declare an event kind: the class becomes a frozen, keyword-only, slotted dataclass,
    its fields are checked against the whitelist and it is registered as ``name``."""

    def register(cls: type[E]) -> type[E]:
        if name in EVENT_KINDS:
            raise TypeError(f"event kind {name!r} declared twice")
        made = dataclass(frozen=True, kw_only=True, slots=True)(cls)
        made.kind = name
        _EVENT_SPECS[made] = (compile_spec(made, name=name), "task_id" in made.__dataclass_fields__)
        EVENT_KINDS[name] = made
        return made

    return register


@_kind("session_opened")
class SessionOpened(Event):
    local_collection: str | None = None
    auth: Literal["access_token", "refresh_token"]
    # The session's trouble policy: the default of its submits that name none.
    policy: TroublePolicy | None = None


@_kind("session_closed")
class SessionClosed(Event):
    pass


@_kind("credential_expired")
class CredentialExpired(Event):
    message: str = ""


@_kind("submit_requested")
class SubmitRequested(Event):
    """Recorded before the Globus call, so a crash in between leaves a pending submission."""

    submission_id: str
    type: TaskType
    request: TransferRequest | DeleteRequest

    def __post_init__(self) -> None:
        Event.__post_init__(self)
        want = TransferRequest if self.type == "TRANSFER" else DeleteRequest
        if type(self.request) is not want:
            raise EventTypeError(
                kind=self.kind,
                field="request",
                expected=f"a {want.__name__} for type {self.type}",
                got=type(self.request).__name__,
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class _Submitted(Event):
    """The fields of a task Globus accepted (not a kind of its own: Event refuses it)."""

    submission_id: str
    task_id: str
    type: TaskType
    label: str | None = None
    source: str | None = None
    destination: str | None = None
    status: TaskStatus = "ACTIVE"
    nice_status: str | None = None
    policy: TroublePolicy | None = None


@_kind("task_submitted")
class TaskSubmitted(_Submitted):
    type: TaskType = "TRANSFER"


@_kind("submit_failed")
class SubmitFailed(Event):
    submission_id: str
    code: str
    message: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class _TaskState(Event):
    """The task's state as last read from Globus, carried by every event that updates a
    task so that each notification is complete on its own (not a kind: Event refuses it)."""

    task_id: str
    status: TaskStatus = "ACTIVE"
    nice_status: str | None = None
    label: str | None = None
    bytes_transferred: int = 0
    files_transferred: int = 0
    # The trouble fields of the task document.
    is_ok: bool | None = None
    is_paused: bool = False
    faults: int = 0


@_kind("task_state_changed")
class TaskStateChanged(_TaskState):
    status: TaskStatus  # no default: a change names the status it changed to
    fatal_error: FatalError | None = None
    # Only when ``faults`` grew.
    error: TaskError | None = None
    needs_attention: AttentionReason | None = None


@_kind("task_progress")
class TaskProgress(_TaskState):
    needs_attention: AttentionReason | None = None


@_kind("task_needs_attention")
class TaskNeedsAttention(_TaskState):
    """A task started needing attention (once per episode)."""

    needs_attention: AttentionReason
    error: TaskError | None = None
    # What the owner should know: a pause's message, the error, what INACTIVE waits for.
    attention_message: str | None = None


@_kind("task_recovered")
class TaskRecovered(_TaskState):
    """A task that needed attention got going again; ``after`` says what it had."""

    after: AttentionReason
    seconds: float = 0.0


@_kind("cancel_requested")
class CancelRequested(Event):
    task_id: str
    # Set when the daemon cancels on its own (a trouble policy): why.
    reason: str | None = None


@_kind("cancel_result")
class CancelResult(Event):
    task_id: str
    code: str
    message: str = ""


@_kind("delete_submitted")
class DeleteSubmitted(_Submitted):
    """A DELETE task accepted by Globus; ``source`` is the collection, no destination."""

    type: TaskType = "DELETE"


@_kind("submit_queued")
class SubmitQueued(Event):
    """Globus refused the submit for a limit (``reason`` is its code); nothing was created,
    and the daemon sends it when capacity frees."""

    submission_id: str
    reason: str
    message: str = ""


@_kind("submit_dequeued")
class SubmitDequeued(Event):
    """Recorded before a queued submit is sent: from here on Globus may have it, so it is
    pending again (resent with the same submission_id until answered)."""

    submission_id: str


@_kind("submit_cancelled")
class SubmitCancelled(Event):
    """The user cancelled a queued submit; it was never sent to Globus."""

    submission_id: str


@_kind("submit_admitted")
class SubmitAdmitted(Event):
    """A submit that waited in the queue became a task: the notification that names both
    ids (appended with its task_submitted/delete_submitted)."""

    submission_id: str
    task_id: str


class StoredEvent(NamedTuple):
    """A committed event. ``data`` is shared between readers: treat it as read-only.

    A named tuple rather than a frozen dataclass: replay builds one per row, and a tuple is
    made in a fifth of the time of a frozen dataclass (whose ``__init__`` goes through
    ``object.__setattr__`` for every field)."""

    seq: int
    time: float
    kind: str
    owner: str | None
    session_id: str | None
    task_id: str | None
    data: dict[str, Any]

    def event(self) -> Event:
        """The typed event this was stored from."""
        return decode_event(self.kind, owner=self.owner, session_id=self.session_id, data=self.data)


def encode_event(event: Event) -> tuple[str, str | None, dict[str, Any]]:
    """``(kind, task_id, data)`` of a validated event; ``data`` excludes owner/session_id."""
    spec, has_task = _EVENT_SPECS[type(event)]
    data = spec.encode(event, skip=_ENVELOPE)
    return event.kind, (data["task_id"] if has_task else None), data


def decode_event(
    kind: str, *, owner: str | None, session_id: str | None, data: dict[str, Any]
) -> Event:
    try:
        cls = EVENT_KINDS[kind]
    except KeyError:
        raise EventTypeError(
            kind=kind, field="kind", expected="a known event kind", got="str"
        ) from None
    spec, _ = _EVENT_SPECS[cls]
    payload = {k: v for k, v in data.items() if k not in _ENVELOPE}
    kwargs = spec.decode_kwargs(payload)
    return cls(owner=owner, session_id=session_id, **kwargs)
