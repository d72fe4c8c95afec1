"""Event-sourced task ledger on SQLite.

Every submit, state change and cancel is an event appended to one SQLite file; the tasks and
submissions tables are projections of the events, kept current in the same transaction as
each append and rebuildable from the events alone. See ``docs/ledger.md``.

    ledger = await Ledger.open(path)
    stored = await ledger.append(TaskProgress(task_id=..., bytes_transferred=...))
"""

from __future__ import annotations

from .errors import (
    CredentialRefused,
    DuplicateSubmission,
    DuplicateTask,
    EventTypeError,
    IllegalTransition,
    LedgerClosed,
    LedgerError,
    MigrationFailed,
    ProjectionRebuildError,
    RejectedEvent,
    SchemaError,
    SchemaTooNew,
    StorageError,
    SubmissionResolved,
    SubscriberLagged,
    UnknownSubmission,
    UnknownTask,
)
from .events import (
    EVENT_KINDS,
    TERMINAL_STATUSES,
    CancelRequested,
    CancelResult,
    CredentialExpired,
    DeleteRequest,
    DeleteSubmitted,
    Event,
    FatalError,
    SessionClosed,
    SessionOpened,
    StoredEvent,
    SubmitFailed,
    SubmitRequested,
    TaskProgress,
    TaskStateChanged,
    TaskStatus,
    TaskSubmitted,
    TaskType,
    TransferItem,
    TransferRequest,
    decode_event,
)
from .feed import CommitSink, LiveFeed
from .fold import SubmissionRow, TaskRow, apply_submission, apply_task, fold
from .ledger import Ledger

__all__ = [
    "EVENT_KINDS",
    "TERMINAL_STATUSES",
    "CancelRequested",
    "CancelResult",
    "CommitSink",
    "CredentialExpired",
    "CredentialRefused",
    "DeleteRequest",
    "DeleteSubmitted",
    "DuplicateSubmission",
    "DuplicateTask",
    "Event",
    "EventTypeError",
    "FatalError",
    "IllegalTransition",
    "Ledger",
    "LedgerClosed",
    "LedgerError",
    "LiveFeed",
    "MigrationFailed",
    "ProjectionRebuildError",
    "RejectedEvent",
    "SchemaError",
    "SchemaTooNew",
    "SessionClosed",
    "SessionOpened",
    "StorageError",
    "StoredEvent",
    "SubmissionResolved",
    "SubmissionRow",
    "SubmitFailed",
    "SubmitRequested",
    "SubscriberLagged",
    "TaskProgress",
    "TaskRow",
    "TaskStateChanged",
    "TaskStatus",
    "TaskSubmitted",
    "TaskType",
    "TransferItem",
    "TransferRequest",
    "UnknownSubmission",
    "UnknownTask",
    "apply_submission",
    "apply_task",
    "decode_event",
    "fold",
]
