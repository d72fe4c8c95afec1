"""Records of the simulator's task engine: requests, steps, events, injected error rules, and
the task with its document (what GET /task/{id} answers). No I/O; ``engine.py`` drives them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..protocol import is_terminal

__all__ = [
    "DAY",
    "DEFAULT_DEADLINE_SECONDS",
    "HOUR",
    "OK_NICE_STATUSES",
    "SKIPPABLE_CODES",
    "EngineLimits",
    "ErrorRule",
    "Event",
    "Step",
    "StepKind",
    "Task",
    "TaskError",
    "TaskRequest",
    "describe",
    "iso_time",
]

HOUR = 3600.0
DAY = 24 * HOUR
DEFAULT_DEADLINE_SECONDS = DAY
# Errors that skip_source_errors skips on the source collection (task behavior, 4.1).
SKIPPABLE_CODES = frozenset({"PERMISSION_DENIED", "FILE_NOT_FOUND", "AMBIGUOUS_PATH"})
# nice_status values of a task without trouble (SDK fixture get_task1_active.json: "OK";
# CLI fixture submit_delete_queued.yaml: "Queued").
OK_NICE_STATUSES = frozenset({"OK", "Queued"})

# Event descriptions as Globus writes them: a short lowercase phrase, the long text in
# ``details`` (CLI fixture task_event_list.yaml: "canceled", "permission denied", "started";
# submit_delete_failed.yaml: fatal_error description "file not found"). Codes not shown in a
# fixture follow the same pattern (code in lower case, underscores as spaces).
_DESCRIPTIONS = {
    "SKIPPED_ERRORS": "skipped errors",
    "VERIFY_CHECKSUM": "checksum verification failed",
}


def describe(code: str) -> str:
    """The short lowercase ``description`` Globus gives an event (or fatal_error) code."""
    return _DESCRIPTIONS.get(code, code.lower().replace("_", " "))


StepKind = Literal["copy", "mkdir", "delete"]


def iso_time(ts: float | None) -> str | None:
    """Globus task timestamps: ``2021-09-02T18:04:47+00:00``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), tz=UTC).isoformat()


@dataclass(frozen=True, kw_only=True)
class Step:
    """One unit of work on files; ``size`` bytes of throughput budget pay for it.

    ``source_local``/``destination_local`` are the worker's business (local file names);
    the engine only reports the virtual paths.
    """

    kind: StepKind
    source_path: str
    destination_path: str
    size: int = 0
    source_local: str = ""
    destination_local: str = ""


@dataclass(frozen=True, kw_only=True)
class Event:
    code: str
    description: str
    details: str
    is_error: bool
    time: float

    def document(self) -> dict[str, Any]:
        # The event document is the record, its time in ISO form (the key order stays).
        return {"DATA_TYPE": "event", **asdict(self), "time": iso_time(self.time)}


@dataclass(frozen=True, kw_only=True)
class TaskError:
    """The error a task hit last (while it is retried): shown by nice_status for a while."""

    code: str
    details: str
    time: float


@dataclass(kw_only=True)
class ErrorRule:
    """An injected retryable error: every attempt of a matching task faults with ``code``.

    A rule matches a task by ``task_id``, by ``path`` (a path of the task's items or steps,
    as the request names it, or anything below it), or both; with neither it matches every
    task. It heals at ``heal_at`` (simulator clock) or after ``heal_count`` faults it caused,
    whichever comes first; without either it lasts until removed.
    """

    rule_id: str
    code: str
    details: str = ""
    task_id: str | None = None
    path: str | None = None
    heal_at: float | None = None
    heal_count: int | None = None
    hits: int = 0

    def active(self, now: float) -> bool:
        if self.heal_at is not None and now >= self.heal_at:
            return False
        return self.heal_count is None or self.hits < self.heal_count

    def matches_path(self, path: str) -> bool:
        if self.path is None:
            return True
        base = self.path.rstrip("/")
        return path.rstrip("/") == base or path.startswith(base + "/")

    def document(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "code": self.code,
            "details": self.details,
            "task_id": self.task_id,
            "path": self.path,
            "heal_at": iso_time(self.heal_at),
            "heal_count": self.heal_count,
            "hits": self.hits,
        }


@dataclass(frozen=True, kw_only=True)
class TaskRequest:
    """What a submit asked for, already validated by the HTTP layer."""

    type: Literal["TRANSFER", "DELETE"]
    submission_id: str
    source_endpoint_id: str
    source_display_name: str
    destination_endpoint_id: str | None = None
    destination_display_name: str | None = None
    label: str | None = None
    deadline: float | None = None
    items: tuple[dict[str, Any], ...] = ()
    sync_level: int | None = None
    verify_checksum: bool = False
    preserve_timestamp: bool = False
    encrypt_data: bool = False
    skip_source_errors: bool = False
    fail_on_quota_errors: bool = False
    delete_destination_extra: bool = False
    recursive: bool = False
    ignore_missing: bool = False


@dataclass(frozen=True, kw_only=True)
class EngineLimits:
    """Per-user limits as Globus has them, and the simulated throughput."""

    max_active: int = 3
    max_pending: int = 100
    bytes_per_second: float = 10_000_000.0
    min_task_seconds: float = 0.0
    default_deadline: float = DEFAULT_DEADLINE_SECONDS
    # Seconds a faulted task backs off before it tries again. Globus documents that tasks
    # back off from errors (task behavior, 2.) but not for how long: configurable.
    retry_interval: float = 60.0
    # task behavior, 3.: 72 h after the last progress, 24 h away while queued without
    # errors for 24 h, 90 days after a pause, 24 h after an unpause.
    progress_extension: float = 72 * HOUR
    queued_extension: float = DAY
    paused_deadline: float = 90 * DAY
    unpaused_deadline: float = DAY
    # task behavior, 2.: a queued task shows an error it hit within the past 15 minutes.
    error_visible: float = 15 * 60.0


@dataclass(kw_only=True)
class Task:
    """Mutable state of one task; :meth:`document` renders what GET /task/{id} answers."""

    task_id: str
    owner: str
    owner_id: str
    request: TaskRequest
    request_time: float
    deadline: float
    deadline_given: bool = False
    status: str = "ACTIVE"
    nice_status: str | None = "Queued"
    completion_time: float | None = None
    label: str | None = None
    running: bool = False
    paused: bool = False
    pause_message: str | None = None
    pause_nice_status: str = "PAUSED_BY_ADMIN"
    credential_expired: bool = False
    credential_nice_status: str = "CREDENTIAL_EXPIRED"
    credential_message: str | None = None
    error: TaskError | None = None
    last_error_time: float | None = None
    retry_at: float | None = None
    last_progress: float | None = None
    started_time: float | None = None
    plan: list[Step] | None = None
    cursor: int = 0
    partial: float = 0.0
    forced: bool = False
    files: int = 0
    directories: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_done: int = 0
    bytes_checksummed: int = 0
    faults: int = 0
    fatal_error: dict[str, str] | None = None
    events: list[Event] = field(default_factory=list)
    successful: list[tuple[str, str]] = field(default_factory=list)
    skipped_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return is_terminal(self.status)

    @property
    def bytes_transferred(self) -> int:
        return self.bytes_done + int(self.partial)

    def add_event(self, now: float, code: str, *, error: bool = False, details: str = "") -> None:
        self.events.append(
            Event(code=code, description=describe(code), details=details, is_error=error, time=now)
        )

    @property
    def backing_off(self) -> bool:
        return self.retry_at is not None

    def nice_status_expires_in(self, now: float, visible: float) -> int | None:
        """-1 while the nice_status has no end (OK, Queued: SDK fixture get_task1_active.json,
        CLI fixture submit_delete_queued.yaml); seconds left of an error's 15 minutes."""
        if self.done:
            return None
        if self.error is not None and self.nice_status == self.error.code:
            return max(0, int(self.error.time + visible - now))
        return -1

    def document(self, now: float, *, error_visible: float = 15 * 60.0) -> dict[str, Any]:
        req = self.request
        steps = self.plan or []
        if self.plan is None and not self.done:
            # Before it is planned a task is one pending subtask (CLI fixture
            # submit_delete_queued.yaml: subtasks_total 1, subtasks_pending 1).
            total, pending = 1, 1
        else:
            total = len(steps)
            pending = 0 if self.done else max(len(steps) - self.cursor, 0)
        succeeded = self.cursor if self.plan is not None else 0
        failed = 1 if self.status == "FAILED" and self.fatal_error else 0
        elapsed = (self.completion_time or now) - (self.started_time or self.request_time)
        return {
            "DATA_TYPE": "task",
            "task_id": self.task_id,
            "type": req.type,
            "status": self.status,
            "label": self.label,
            "owner_id": self.owner_id,
            "username": self.owner,
            "command": "API 0.10",
            "request_time": iso_time(self.request_time),
            "completion_time": iso_time(self.completion_time),
            "deadline": iso_time(self.deadline),
            "source_endpoint": req.source_endpoint_id,
            "source_endpoint_id": req.source_endpoint_id,
            "source_endpoint_display_name": req.source_display_name,
            "destination_endpoint": req.destination_endpoint_id,
            "destination_endpoint_id": req.destination_endpoint_id,
            "destination_endpoint_display_name": req.destination_display_name,
            "files": self.files,
            "directories": self.directories,
            "symlinks": 0,
            "files_transferred": self.files_transferred,
            "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "bytes_checksummed": self.bytes_checksummed,
            "effective_bytes_per_second": int(self.bytes_transferred / elapsed)
            if elapsed > 0
            else 0,
            "faults": self.faults,
            "subtasks_total": total,
            "subtasks_pending": pending,
            "subtasks_retrying": 1 if self.error is not None and not self.done else 0,
            "subtasks_succeeded": succeeded,
            "subtasks_failed": failed,
            "subtasks_canceled": 1
            if self.fatal_error and self.fatal_error["code"] == "CANCELED"
            else 0,
            "subtasks_expired": 1
            if self.fatal_error and self.fatal_error["code"] == "EXPIRED"
            else 0,
            "subtasks_skipped_errors": len(self.skipped_errors),
            "is_paused": self.paused,
            "is_ok": self.is_ok,
            "nice_status": self.nice_status,
            "nice_status_details": self._nice_details(),
            "nice_status_expires_in": self.nice_status_expires_in(now, error_visible),
            "nice_status_short_description": _short(self.nice_status),
            "fatal_error": dict(self.fatal_error) if self.fatal_error else None,
            "canceled_by_admin": None,
            "canceled_by_admin_message": None,
            "sync_level": req.sync_level,
            "verify_checksum": req.verify_checksum,
            "preserve_timestamp": req.preserve_timestamp,
            "encrypt_data": req.encrypt_data,
            "skip_source_errors": req.skip_source_errors,
            "fail_on_quota_errors": req.fail_on_quota_errors,
            "delete_destination_extra": req.delete_destination_extra,
            "recursive_symlinks": "ignore",
            "filter_rules": None,
            "history_deleted": False,
        }

    @property
    def is_ok(self) -> bool | None:
        """None once done (CLI fixture submit_delete_failed.yaml); false while the task
        shows an error or is INACTIVE; true otherwise, also while paused (the sources do not
        say; a pause is not an error event)."""
        if self.done:
            return None
        if self.credential_expired:
            return False
        if self.paused:
            return True
        return self.nice_status in OK_NICE_STATUSES

    def _nice_details(self) -> str | None:
        if self.done:
            return None
        if self.credential_expired:
            return self.credential_message
        if self.paused:
            return self.pause_message
        if self.error is not None and self.nice_status == self.error.code:
            return self.error.details
        return None


def _short(nice: str | None) -> str | None:
    return {
        None: None,
        "OK": "OK",
        "Queued": "Queued",
        "PAUSED_BY_ADMIN": "Paused by an administrator",
        "CREDENTIAL_EXPIRED": "Credential expired",
    }.get(nice, describe(nice) if nice else None)
