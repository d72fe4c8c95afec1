"""The pure fold from events to projection rows (no I/O).

``apply_task(row, event, seq=, time=)`` and ``apply_submission(...)`` take the current row (or
``None``) and one event and return the new row, or raise a :class:`~.errors.RejectedEvent`
subclass. The writer calls them for every append against the rows of the open transaction, and
:func:`fold` replays a whole event list, which is how projections are rebuilt; both paths
share this code so their results are identical by construction.

Rules: a task exists from its ``task_submitted``/``delete_submitted`` on; task events for an
unknown task are refused; SUCCEEDED and FAILED are absorbing (state changes and progress are
refused, cancel events are still recorded). Trouble: a task's ``is_ok``/``is_paused``/
``faults`` follow its state events, ``error`` keeps the newest error seen, ``needs_attention``
follows every state, progress and attention event (``attention_since`` is when the current
episode began) and ``progress_time`` is when bytes or files last moved (its submit before
that). A submission exists from ``submit_requested`` and is resolved exactly once, by
``task_submitted``/``delete_submitted`` or ``submit_failed``, or by ``submit_cancelled``
while it waits in the admission queue. Before that it moves between
pending (Globus may have it) and queued (Globus refused it for a limit; nothing exists there):
``submit_queued`` pending -> queued, ``submit_dequeued`` queued -> pending.

Two more projections are never refused anything: sessions (``session_opened`` opens or
reopens one, ``session_closed`` closes it; the daemon reloads the open ones at start-up) and
cancels (``cancel_requested`` makes the task's cancel pending, ``cancel_result`` answers it;
the daemon resends the pending ones). A task's ``observed_time`` is the commit time of the
last event that recorded what Globus said about it (its submit, a state change, progress):
the poller's catch-up starts from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .errors import (
    DuplicateSubmission,
    DuplicateTask,
    IllegalTransition,
    SubmissionResolved,
    UnknownSubmission,
    UnknownTask,
)
from .events import (
    TERMINAL_STATUSES,
    CancelRequested,
    CancelResult,
    DeleteRequest,
    DeleteSubmitted,
    Event,
    FatalError,
    SessionClosed,
    SessionOpened,
    SubmitCancelled,
    SubmitDequeued,
    SubmitFailed,
    SubmitQueued,
    SubmitRequested,
    TaskError,
    TaskNeedsAttention,
    TaskProgress,
    TaskRecovered,
    TaskStateChanged,
    TaskSubmitted,
    TransferRequest,
    TroublePolicy,
)

__all__ = [
    "OPEN_SUBMISSION_STATES",
    "CancelRow",
    "CancelState",
    "Projections",
    "SessionRow",
    "SessionState",
    "SubmissionRow",
    "SubmissionState",
    "TaskRow",
    "apply_cancel",
    "apply_session",
    "apply_submission",
    "apply_task",
    "cancel_key",
    "fold",
    "session_key",
    "step",
    "submission_key",
    "task_key",
]

SubmissionState = Literal["pending", "queued", "submitted", "failed", "cancelled"]
# States whose submit Globus has not answered yet.
OPEN_SUBMISSION_STATES: tuple[SubmissionState, ...] = ("pending", "queued")
SessionState = Literal["open", "closed"]
CancelState = Literal["pending", "answered"]


class TaskRow(NamedTuple):
    """The current state of one task. Times are Unix seconds of the commits that set them.

    A named tuple (immutable like a frozen dataclass): the writer folds one new row per task
    event, and building a frozen dataclass of this many fields costs about ten times more."""

    task_id: str
    submission_id: str
    owner: str | None
    session_id: str | None
    type: str
    status: str
    nice_status: str | None
    label: str | None
    source: str | None
    destination: str | None
    bytes_transferred: int
    files_transferred: int
    fatal_error: FatalError | None
    request_time: float
    completion_time: float | None
    created_seq: int
    last_seq: int
    is_ok: bool | None
    is_paused: bool
    faults: int
    error: TaskError | None
    needs_attention: str | None
    attention_since: float | None
    progress_time: float
    policy: TroublePolicy | None
    attention_message: str | None
    # Commit time of the last event that recorded Globus's view of the task (cancels do not).
    observed_time: float

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (records such as ``fatal_error`` as dicts, or None)."""
        out = self._asdict()
        for name in ("fatal_error", "error", "policy"):
            value = out[name]
            if value is not None:
                out[name] = dataclasses.asdict(value)
        return out


@dataclass(frozen=True, slots=True)
class SubmissionRow:
    """One submit, from its request until Globus answered (``state`` pending until then)."""

    submission_id: str
    owner: str | None
    session_id: str | None
    type: str
    # None when read without it: the request is stored once, in the submit_requested event
    # at ``requested_seq``; only the reads that resend a submission load it.
    request: TransferRequest | DeleteRequest | None
    state: SubmissionState
    task_id: str | None
    code: str | None
    message: str | None
    request_time: float
    requested_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session as its events left it; ``state`` is open until ``session_closed``."""

    session_id: str
    owner: str | None
    local_collection: str | None
    auth: str
    state: SessionState
    opened_seq: int
    last_seq: int
    # The trouble policy its session_opened named (the default of its submits).
    policy: TroublePolicy | None = None


@dataclass(frozen=True, slots=True)
class CancelRow:
    """The last cancel of a task: pending from ``cancel_requested`` until its
    ``cancel_result`` (a crash in between leaves it pending, to be sent again)."""

    task_id: str
    owner: str | None
    session_id: str | None
    state: CancelState
    code: str | None
    requested_seq: int
    last_seq: int


_TASK_KINDS = (
    TaskSubmitted,
    DeleteSubmitted,
    TaskStateChanged,
    TaskProgress,
    CancelRequested,
    CancelResult,
    TaskNeedsAttention,
    TaskRecovered,
)
_SUBMISSION_KINDS = (
    SubmitRequested,
    TaskSubmitted,
    DeleteSubmitted,
    SubmitFailed,
    SubmitQueued,
    SubmitDequeued,
    SubmitCancelled,
)
# Which state each admission-queue event moves a submission from, and to.
_QUEUE_MOVES: dict[type, tuple[SubmissionState, SubmissionState]] = {
    SubmitQueued: ("pending", "queued"),
    SubmitDequeued: ("queued", "pending"),
    SubmitCancelled: ("queued", "cancelled"),
}
# Tuples, not ``A | B`` unions: isinstance() checks a tuple several times faster.
_CREATE_KINDS = (TaskSubmitted, DeleteSubmitted)
_CANCEL_KINDS = (CancelRequested, CancelResult)
_UPDATE_KINDS = (
    TaskProgress,
    TaskStateChanged,
    CancelRequested,
    CancelResult,
    TaskNeedsAttention,
    TaskRecovered,
)
_ATTENTION_KINDS = (TaskNeedsAttention, TaskRecovered)
_SESSION_KINDS = (SessionOpened, SessionClosed)


def task_key(event: Event) -> str | None:
    """The task id whose row ``event`` changes, or None."""
    return event.task_id if isinstance(event, _TASK_KINDS) else None


def submission_key(event: Event) -> str | None:
    """The submission id whose row ``event`` changes, or None."""
    return event.submission_id if isinstance(event, _SUBMISSION_KINDS) else None


def session_key(event: Event) -> str | None:
    """The session id whose row ``event`` changes, or None."""
    return event.session_id if isinstance(event, _SESSION_KINDS) else None


def cancel_key(event: Event) -> str | None:
    """The task id whose cancel row ``event`` changes, or None."""
    return event.task_id if isinstance(event, _CANCEL_KINDS) else None


def apply_task(row: TaskRow | None, event: Event, *, seq: int, time: float) -> TaskRow:
    if isinstance(event, _CREATE_KINDS):
        if row is not None:
            raise DuplicateTask(
                f"{event.kind}: task {event.task_id} was already submitted (seq {row.created_seq})",
                kind=event.kind,
                key=event.task_id,
            )
        return TaskRow(
            task_id=event.task_id,
            submission_id=event.submission_id,
            owner=event.owner,
            session_id=event.session_id,
            type=event.type,
            status=event.status,
            nice_status=event.nice_status,
            label=event.label,
            source=event.source,
            destination=event.destination,
            bytes_transferred=0,
            files_transferred=0,
            fatal_error=None,
            request_time=time,
            completion_time=time if event.status in TERMINAL_STATUSES else None,
            created_seq=seq,
            last_seq=seq,
            is_ok=True,
            is_paused=False,
            faults=0,
            error=None,
            needs_attention=None,
            attention_since=None,
            progress_time=time,
            policy=event.policy,
            attention_message=None,
            observed_time=time,
        )
    if not isinstance(event, _UPDATE_KINDS):
        raise TypeError(f"{event.kind} does not change a task")
    if row is None:
        raise UnknownTask(
            f"{event.kind}: task {event.task_id} is unknown; record task_submitted first",
            kind=event.kind,
            key=event.task_id,
        )
    if isinstance(event, _CANCEL_KINDS):
        # Cancelling a finished task is a request the user may make; it changes no state.
        return row._replace(last_seq=seq)
    if row.status in TERMINAL_STATUSES:
        raise IllegalTransition(
            f"{event.kind}: task {row.task_id} is {row.status}, which is final",
            kind=event.kind,
            key=row.task_id,
            status=row.status,
        )
    if isinstance(event, _ATTENTION_KINDS):
        # Derived from the state already recorded: only the episode changes.
        if isinstance(event, TaskNeedsAttention):
            return row._replace(
                needs_attention=event.needs_attention,
                attention_since=_since(row, event.needs_attention, time),
                attention_message=event.attention_message,
                last_seq=seq,
            )
        return row._replace(
            needs_attention=None, attention_since=None, attention_message=None, last_seq=seq
        )
    fatal_error = event.fatal_error if isinstance(event, TaskStateChanged) else row.fatal_error
    error = event.error if isinstance(event, TaskStateChanged) else None
    moved = (
        event.bytes_transferred != row.bytes_transferred
        or event.files_transferred != row.files_transferred
    )
    return _changed(
        row,
        status=event.status,
        nice_status=event.nice_status,
        label=event.label if event.label is not None else row.label,
        bytes_transferred=event.bytes_transferred,
        files_transferred=event.files_transferred,
        fatal_error=fatal_error,
        completion_time=time if event.status in TERMINAL_STATUSES else None,
        last_seq=seq,
        is_ok=event.is_ok,
        is_paused=event.is_paused,
        faults=event.faults,
        error=error if error is not None else row.error,
        needs_attention=event.needs_attention,
        attention_since=_since(row, event.needs_attention, time),
        progress_time=time if moved else row.progress_time,
        observed_time=time,
    )


def _since(row: TaskRow, attention: str | None, time: float) -> float | None:
    """When the attention episode that ``attention`` continues (or starts) began."""
    if attention is None:
        return None
    return row.attention_since if row.needs_attention is not None else time


def _changed(
    row: TaskRow,
    *,
    status: str,
    nice_status: str | None,
    label: str | None,
    bytes_transferred: int,
    files_transferred: int,
    fatal_error: FatalError | None,
    completion_time: float | None,
    last_seq: int,
    is_ok: bool | None,
    is_paused: bool,
    faults: int,
    error: TaskError | None,
    needs_attention: str | None,
    attention_since: float | None,
    progress_time: float,
    observed_time: float,
) -> TaskRow:
    # Positional construction: dataclasses.replace costs several times more, and this runs
    # for every task event in the writer's hot loop.
    return TaskRow(
        row.task_id,
        row.submission_id,
        row.owner,
        row.session_id,
        row.type,
        status,
        nice_status,
        label,
        row.source,
        row.destination,
        bytes_transferred,
        files_transferred,
        fatal_error,
        row.request_time,
        completion_time,
        row.created_seq,
        last_seq,
        is_ok,
        is_paused,
        faults,
        error,
        needs_attention,
        attention_since,
        progress_time,
        row.policy,
        row.attention_message if needs_attention is not None else None,
        observed_time,
    )


def apply_submission(
    row: SubmissionRow | None, event: Event, *, seq: int, time: float
) -> SubmissionRow:
    if isinstance(event, SubmitRequested):
        if row is not None:
            raise DuplicateSubmission(
                f"submit_requested: submission {event.submission_id} was already requested "
                f"(seq {row.requested_seq}); use a new submission_id",
                kind=event.kind,
                key=event.submission_id,
            )
        return SubmissionRow(
            submission_id=event.submission_id,
            owner=event.owner,
            session_id=event.session_id,
            type=event.type,
            request=event.request,
            state="pending",
            task_id=None,
            code=None,
            message=None,
            request_time=time,
            requested_seq=seq,
            last_seq=seq,
        )
    if not isinstance(event, _SUBMISSION_KINDS):
        raise TypeError(f"{event.kind} does not change a submission")
    if row is None:
        raise UnknownSubmission(
            f"{event.kind}: submission {event.submission_id} is unknown; "
            "record submit_requested before calling Globus",
            kind=event.kind,
            key=event.submission_id,
        )
    move = _QUEUE_MOVES.get(type(event))
    if move is not None:
        before, after = move
        if row.state != before:
            raise SubmissionResolved(
                f"{event.kind}: submission {row.submission_id} is {row.state}, not {before}",
                kind=event.kind,
                key=row.submission_id,
            )
        return dataclasses.replace(row, state=after, last_seq=seq)
    if row.state not in OPEN_SUBMISSION_STATES:
        raise SubmissionResolved(
            f"{event.kind}: submission {row.submission_id} is already {row.state}",
            kind=event.kind,
            key=row.submission_id,
        )
    if isinstance(event, SubmitFailed):
        return dataclasses.replace(
            row, state="failed", code=event.code, message=event.message, last_seq=seq
        )
    assert isinstance(event, _CREATE_KINDS)
    return dataclasses.replace(row, state="submitted", task_id=event.task_id, last_seq=seq)


def apply_session(row: SessionRow | None, event: Event, *, seq: int) -> SessionRow | None:
    """The session row after ``event`` (None: nothing to record, e.g. closing an unknown
    session). Never refuses: re-registering an open session or closing twice is allowed."""
    session_id = event.session_id
    if session_id is None:
        return None
    if isinstance(event, SessionOpened):
        return SessionRow(
            session_id=session_id,
            owner=event.owner,
            local_collection=event.local_collection,
            auth=event.auth,
            state="open",
            opened_seq=seq,
            last_seq=seq,
            policy=event.policy,
        )
    if not isinstance(event, SessionClosed):
        raise TypeError(f"{event.kind} does not change a session")
    if row is None:
        return None
    return dataclasses.replace(row, state="closed", last_seq=seq)


def apply_cancel(row: CancelRow | None, event: Event, *, task: TaskRow, seq: int) -> CancelRow:
    """The cancel row after ``event`` (already accepted for ``task``). An event without a
    session or owner belongs to its task's, as the writer stores it."""
    if not isinstance(event, _CANCEL_KINDS):
        raise TypeError(f"{event.kind} does not change a cancel")
    owner = event.owner if event.owner is not None else task.owner
    session_id = event.session_id if event.session_id is not None else task.session_id
    state: CancelState
    code: str | None
    if isinstance(event, CancelRequested):
        state, code = "pending", None
    elif row is None:
        # An answer without a recorded request (e.g. a ledger older than the cancel events).
        state, code = "answered", event.code
    else:
        return dataclasses.replace(row, state="answered", code=event.code, last_seq=seq)
    return CancelRow(
        task_id=event.task_id,
        owner=owner,
        session_id=session_id,
        state=state,
        code=code,
        requested_seq=seq,
        last_seq=seq,
    )


@dataclass(slots=True)
class Projections:
    """The projection row maps one fold works on (a transaction's rows, or a rebuild's)."""

    tasks: MutableMapping[str, TaskRow] = dataclasses.field(default_factory=dict)
    submissions: MutableMapping[str, SubmissionRow] = dataclasses.field(default_factory=dict)
    sessions: MutableMapping[str, SessionRow] = dataclasses.field(default_factory=dict)
    cancels: MutableMapping[str, CancelRow] = dataclasses.field(default_factory=dict)


def fold(events: Iterable[tuple[int, float, Event]]) -> Projections:
    """All projection rows produced by ``(seq, time, event)`` triples, in order."""
    out = Projections()
    for seq, time, event in events:
        step(out, event, seq=seq, time=time)
    return out


def step(maps: Projections, event: Event, *, seq: int, time: float) -> None:
    """Apply one event to the row maps; on a refusal every map is left unchanged."""
    tkey = task_key(event)
    skey = submission_key(event)
    new_sub = (
        apply_submission(maps.submissions.get(skey), event, seq=seq, time=time)
        if skey is not None
        else None
    )
    if tkey is not None:
        new_task = apply_task(maps.tasks.get(tkey), event, seq=seq, time=time)
        if isinstance(event, _CANCEL_KINDS):
            maps.cancels[tkey] = apply_cancel(maps.cancels.get(tkey), event, task=new_task, seq=seq)
        maps.tasks[tkey] = new_task
    if new_sub is not None and skey is not None:
        maps.submissions[skey] = new_sub
    if isinstance(event, _SESSION_KINDS) and event.session_id is not None:
        new_session = apply_session(maps.sessions.get(event.session_id), event, seq=seq)
        if new_session is not None:
            maps.sessions[event.session_id] = new_session
