"""Errors raised by the ledger.

Hierarchy::

    LedgerError                               root of everything raised by radical.orbit.ledger
    ├── EventTypeError (TypeError)            an event field holds a value of a type events refuse
    │   └── CredentialRefused                 ... and that value is a Secret (a credential)
    ├── RejectedEvent (ValueError)            the fold refused an event; nothing was written
    │   ├── UnknownTask (LookupError)         a task event names a task never submitted
    │   ├── DuplicateTask                     a second task_submitted/delete_submitted for one id
    │   ├── IllegalTransition                 a change to a task in SUCCEEDED or FAILED
    │   ├── UnknownSubmission (LookupError)   a submit result names an unknown submission_id
    │   ├── DuplicateSubmission               a second submit_requested for one submission_id
    │   └── SubmissionResolved                a second result for one submission
    ├── SchemaError                           the database schema cannot be used
    │   ├── SchemaTooNew                      written by a newer orbit-globus
    │   └── MigrationFailed                   a migration failed; it was rolled back entirely
    ├── StorageError (OSError)                SQLite failed while committing; nothing was written
    ├── ProjectionRebuildError                the events cannot be folded (e.g. pruned by hand)
    ├── LedgerClosed                          the ledger was closed
    └── SubscriberLagged                      a live subscriber fell behind; resume from a seq

Messages name fields and types, never the values of fields: a value in the wrong place may be
a credential, and error messages end up in logs.
"""

from __future__ import annotations

__all__ = [
    "CredentialRefused",
    "DuplicateSubmission",
    "DuplicateTask",
    "EventTypeError",
    "IllegalTransition",
    "LedgerClosed",
    "LedgerError",
    "MigrationFailed",
    "ProjectionRebuildError",
    "RejectedEvent",
    "SchemaError",
    "SchemaTooNew",
    "StorageError",
    "SubmissionResolved",
    "SubscriberLagged",
    "UnknownSubmission",
    "UnknownTask",
]


class LedgerError(Exception):
    """Root of the ledger's exceptions."""


class EventTypeError(LedgerError, TypeError):
    """An event (or a record inside it) was built with a value of a type events refuse."""

    def __init__(self, *, kind: str, field: str, expected: str, got: str) -> None:
        self.kind = kind
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.kind}.{self.field} must be {self.expected}, got a value of type {self.got}"


class CredentialRefused(EventTypeError):
    """A Secret was put into an event: credentials never enter the ledger."""

    def __str__(self) -> str:
        return (
            f"{self.kind}.{self.field} was given a Secret: credentials are never recorded in "
            "the ledger; record that a credential exists (e.g. its kind), not the credential"
        )


class RejectedEvent(LedgerError, ValueError):
    """The projection fold refused an event; the ledger wrote nothing for it."""

    def __init__(self, message: str, *, kind: str, key: str | None = None) -> None:
        self.kind = kind
        self.key = key
        super().__init__(message)


class UnknownTask(RejectedEvent, LookupError):
    """A task event names a task id that no task_submitted/delete_submitted created."""


class DuplicateTask(RejectedEvent):
    """A task id was submitted twice."""


class IllegalTransition(RejectedEvent):
    """A task in a terminal state (SUCCEEDED, FAILED) was asked to change."""

    def __init__(self, message: str, *, kind: str, key: str | None, status: str) -> None:
        self.status = status
        super().__init__(message, kind=kind, key=key)


class UnknownSubmission(RejectedEvent, LookupError):
    """A submit result names a submission_id that no submit_requested recorded."""


class DuplicateSubmission(RejectedEvent):
    """A submission_id was requested twice."""


class SubmissionResolved(RejectedEvent):
    """A submission already has its result (submitted or failed)."""


class SchemaError(LedgerError):
    """The database schema cannot be used by this version."""


class SchemaTooNew(SchemaError):
    """The database was written by a newer orbit-globus than this one."""

    def __init__(self, *, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"ledger {path} has schema version {found}, but this orbit-globus supports "
            f"versions up to {supported}: upgrade orbit-globus (the file is left untouched)"
        )


class MigrationFailed(SchemaError):
    """A migration raised; the whole upgrade was rolled back."""

    def __init__(self, *, path: str, version: int, name: str, reason: str) -> None:
        self.path = path
        self.version = version
        self.name = name
        super().__init__(
            f"migration {name} (version {version}) failed on {path}: {reason}; "
            "the database was rolled back to its previous version"
        )


class StorageError(LedgerError, OSError):
    """SQLite failed while committing a batch; none of its events were written."""


class ProjectionRebuildError(LedgerError):
    """The stored events cannot be folded into projections (e.g. events were pruned)."""


class LedgerClosed(LedgerError):
    """The ledger was closed; open it again to append or read."""


class SubscriberLagged(LedgerError):
    """A live subscriber's queue overflowed; read on with ``events_since(resume_from)``."""

    def __init__(self, *, resume_from: int) -> None:
        self.resume_from = resume_from
        super().__init__(
            f"subscriber fell behind; replay with events_since({resume_from}) and subscribe again"
        )
