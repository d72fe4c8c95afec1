"""The pure task engine of the simulator.

No I/O happens here. The engine keeps every task's state and, given the time and a byte
budget, decides which tasks run, how far they get, and when they end. Work on files is
described by :class:`Step` s: the worker (``worker.py``) expands a task's request into steps
by looking at the file system (:meth:`Engine.set_plan`), and performs the steps that
:meth:`Engine.advance` hands back. Time is always passed in (``now``, seconds since the
epoch), so tests can drive the engine with any clock.

Life of a task: submitted ACTIVE; "Queued" while its owner already has ``max_active`` running
tasks of that type; running once planned; SUCCEEDED when every step is done (and at least
``min_task_seconds`` passed); FAILED on a fatal error, a cancel or the deadline. INACTIVE while
paused. SUCCEEDED and FAILED never change again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .errors import ApiError, UnknownTask

__all__ = [
    "DONE_STATUSES",
    "Engine",
    "EngineLimits",
    "Event",
    "Step",
    "Task",
    "TaskRequest",
    "iso_time",
]

DONE_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
DEFAULT_DEADLINE_SECONDS = 24 * 3600.0

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
        return {
            "DATA_TYPE": "event",
            "code": self.code,
            "description": self.description,
            "details": self.details,
            "is_error": self.is_error,
            "time": iso_time(self.time),
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


@dataclass(kw_only=True)
class Task:
    """Mutable state of one task; :meth:`document` renders what GET /task/{id} answers."""

    task_id: str
    owner: str
    owner_id: str
    request: TaskRequest
    request_time: float
    deadline: float
    status: str = "ACTIVE"
    nice_status: str | None = "Queued"
    completion_time: float | None = None
    label: str | None = None
    running: bool = False
    paused: bool = False
    pause_message: str | None = None
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
        return self.status in DONE_STATUSES

    @property
    def bytes_transferred(self) -> int:
        return self.bytes_done + int(self.partial)

    def add_event(
        self, now: float, code: str, description: str, *, error: bool = False, details: str = ""
    ) -> None:
        self.events.append(
            Event(code=code, description=description, details=details, is_error=error, time=now)
        )

    def document(self, now: float) -> dict[str, Any]:
        req = self.request
        steps = self.plan or []
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
            "subtasks_total": len(steps),
            "subtasks_pending": pending,
            "subtasks_retrying": 0,
            "subtasks_succeeded": succeeded,
            "subtasks_failed": failed,
            "subtasks_canceled": 1
            if self.fatal_error and self.fatal_error["code"] == "CANCELED"
            else 0,
            "subtasks_expired": 1
            if self.fatal_error and self.fatal_error["code"] == "DEADLINE_EXCEEDED"
            else 0,
            "subtasks_skipped_errors": len(self.skipped_errors),
            "is_paused": self.paused,
            "is_ok": None if self.done else self.nice_status in ("OK", "Queued"),
            "nice_status": self.nice_status,
            "nice_status_details": self.pause_message if self.paused else None,
            "nice_status_expires_in": None,
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


def _short(nice: str | None) -> str | None:
    return {
        None: None,
        "OK": "OK",
        "Queued": "Queued",
        "PAUSED_BY_ADMIN": "Paused by an administrator",
        "CREDENTIAL_EXPIRED": "Credential expired",
    }.get(nice, nice.replace("_", " ").capitalize() if nice else None)


class Engine:
    """All tasks of one simulator. Not thread-safe: the caller holds a lock."""

    def __init__(self, limits: EngineLimits | None = None) -> None:
        self.limits = limits or EngineLimits()
        self._tasks: dict[str, Task] = {}
        # Unfinished tasks in submission order: the scheduler's working set, so a long
        # history of ended tasks costs nothing per tick.
        self._open: dict[str, Task] = {}
        self._by_submission: dict[tuple[str, str], str] = {}
        self._issued_submission_ids: set[str] = set()

    # -- queries -------------------------------------------------------------------------
    def get(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise UnknownTask(task_id) from None

    def find(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def tasks(self, owner: str | None = None) -> list[Task]:
        """Tasks in submission order, optionally one owner's."""
        return [t for t in self._tasks.values() if owner is None or t.owner == owner]

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    # -- submission ----------------------------------------------------------------------
    def new_submission_id(self) -> str:
        sid = str(uuid.uuid4())
        self._issued_submission_ids.add(sid)
        return sid

    def submit(
        self, request: TaskRequest, *, owner: str, owner_id: str, now: float
    ) -> tuple[Task, bool]:
        """Create a task, or return the one an earlier submit with this submission_id made.

        The bool is True for such a duplicate. Raises ApiError when the owner already has
        ``max_pending`` unfinished tasks.
        """
        key = (owner, request.submission_id)
        earlier = self._by_submission.get(key)
        if earlier is not None:
            return self._tasks[earlier], True
        pending = sum(1 for t in self._open.values() if t.owner == owner and not t.done)
        if pending >= self.limits.max_pending:
            raise ApiError(
                409,
                "ClientError.Conflict.PendingTasksLimitExceeded",
                f"You have {pending} pending tasks; at most {self.limits.max_pending} are "
                "allowed. Wait for some to finish or cancel them.",
            )
        deadline = request.deadline
        if deadline is None:
            deadline = now + self.limits.default_deadline
        task = Task(
            task_id=str(uuid.uuid4()),
            owner=owner,
            owner_id=owner_id,
            request=request,
            request_time=now,
            deadline=deadline,
            label=request.label,
        )
        self._tasks[task.task_id] = task
        self._open[task.task_id] = task
        self._by_submission[key] = task.task_id
        self.schedule(now)
        return task, False

    # -- scheduling ----------------------------------------------------------------------
    def schedule(self, now: float) -> None:
        """Apply deadlines, then let each owner run up to ``max_active`` tasks per type."""
        for task in list(self._open.values()):
            if not task.done and now > task.deadline:
                self._fail(
                    task, now, "DEADLINE_EXCEEDED", "The task did not complete before its deadline"
                )
        running: dict[tuple[str, str], int] = {}
        for task in self._open.values():
            if task.done or task.paused:
                continue
            slot = (task.owner, task.request.type)
            count = running.get(slot, 0)
            if task.running or count < self.limits.max_active:
                running[slot] = count + 1
                if not task.running:
                    task.running = True
                    if task.started_time is None:
                        task.started_time = now
                        task.add_event(now, "STARTED", "started")
                task.nice_status = "OK"
            else:
                task.nice_status = "Queued"

    def needs_plan(self) -> list[Task]:
        """Running (or forced) tasks whose steps the worker has yet to work out."""
        return [
            t
            for t in self._open.values()
            if not t.done and t.plan is None and (t.running or t.forced)
        ]

    def set_plan(
        self,
        task_id: str,
        steps: Iterable[Step],
        *,
        now: float,
        files: int,
        directories: int,
        skipped: Iterable[tuple[str, str]] = (),
        skipped_errors: Iterable[dict[str, Any]] = (),
    ) -> None:
        """Record the steps of a task; ``skipped`` are files sync_level left alone."""
        task = self.get(task_id)
        if task.done:
            return
        task.plan = list(steps)
        task.files = files
        task.directories = directories
        task.files_skipped = len(list(skipped))
        for err in skipped_errors:
            task.skipped_errors.append(err)
            task.add_event(
                now,
                "SKIPPED_ERROR",
                str(err.get("error_code", "error")),
                error=True,
                details=str(err.get("error_details", "")),
            )

    # -- progress ------------------------------------------------------------------------
    def advance(self, now: float, seconds: float) -> list[tuple[Task, Step]]:
        """Give each running, planned task ``seconds`` of throughput.

        Returns the steps completed by this budget in order; the worker performs them and
        then calls :meth:`settle`.
        """
        self.schedule(now)
        budget = max(seconds, 0.0) * self.limits.bytes_per_second
        completed: list[tuple[Task, Step]] = []
        for task in self._open.values():
            if task.done or task.paused or task.plan is None:
                continue
            if not (task.running or task.forced):
                continue
            if task.forced:
                completed.extend(self._take(task, float("inf")))
            else:
                completed.extend(self._take(task, budget))
        return completed

    def _take(self, task: Task, budget: float) -> list[tuple[Task, Step]]:
        assert task.plan is not None
        out: list[tuple[Task, Step]] = []
        available = task.partial + budget
        while task.cursor < len(task.plan):
            step = task.plan[task.cursor]
            if available < step.size:
                task.partial = available
                return out
            available -= step.size
            task.partial = 0.0
            task.cursor += 1
            if step.kind == "copy":
                task.bytes_done += step.size
                task.files_transferred += 1
                task.successful.append((step.source_path, step.destination_path))
            out.append((task, step))
        task.partial = 0.0
        return out

    def record_checksum(self, task_id: str, size: int) -> None:
        self.get(task_id).bytes_checksummed += size

    def settle(self, now: float) -> list[Task]:
        """Finish tasks whose steps are all done; returns the tasks that finished now."""
        finished = []
        for task in list(self._open.values()):
            if task.done or task.plan is None or task.paused:
                continue
            if task.cursor < len(task.plan):
                continue
            started = task.started_time if task.started_time is not None else now
            if not task.forced and now - started < self.limits.min_task_seconds:
                continue
            task.status = "SUCCEEDED"
            task.nice_status = None
            task.running = False
            task.completion_time = now
            task.add_event(now, "SUCCEEDED", "succeeded")
            self._open.pop(task.task_id, None)
            finished.append(task)
        if finished:
            self.schedule(now)
        return finished

    # -- control -------------------------------------------------------------------------
    def _fail(self, task: Task, now: float, code: str, description: str) -> None:
        self._open.pop(task.task_id, None)
        task.status = "FAILED"
        task.nice_status = None
        task.running = False
        task.paused = False
        task.completion_time = now
        task.fatal_error = {"code": code, "description": description}
        task.add_event(now, code, description, error=True)

    def fail(
        self,
        task_id: str,
        *,
        now: float,
        code: str = "FAILED",
        description: str = "The task failed",
    ) -> bool:
        """Fail an unfinished task with ``fatal_error``; False when it had already ended."""
        task = self.get(task_id)
        if task.done:
            return False
        task.faults += 1
        self._fail(task, now, code, description)
        self.schedule(now)
        return True

    def cancel(self, task_id: str, *, now: float) -> tuple[str, str]:
        """Cancel a task; returns the result code and message of POST /task/{id}/cancel."""
        task = self.get(task_id)
        if task.done:
            return "TaskComplete", f"Task {task_id} is already complete ({task.status})"
        self._fail(task, now, "CANCELED", "The task was canceled by the user")
        self.schedule(now)
        return "Canceled", "The task has been cancelled successfully."

    def pause(
        self,
        task_id: str,
        *,
        now: float,
        nice_status: str = "PAUSED_BY_ADMIN",
        message: str = "The task was paused by the simulator",
    ) -> bool:
        """Make an unfinished task INACTIVE until :meth:`resume`."""
        task = self.get(task_id)
        if task.done:
            return False
        task.paused = True
        task.running = False
        task.status = "INACTIVE"
        task.nice_status = nice_status
        task.pause_message = message
        task.add_event(now, "PAUSED", message, error=True)
        self.schedule(now)
        return True

    def resume(self, task_id: str, *, now: float) -> bool:
        task = self.get(task_id)
        if task.done or not task.paused:
            return False
        task.paused = False
        task.status = "ACTIVE"
        task.pause_message = None
        task.add_event(now, "RESUMED", "resumed")
        self.schedule(now)
        return True

    def force_finish(self, task_id: str, *, now: float) -> bool:
        """Let a task complete at the next :meth:`advance`, whatever the throughput."""
        task = self.get(task_id)
        if task.done:
            return False
        if task.paused:
            self.resume(task_id, now=now)
        task.forced = True
        if task.started_time is None:
            task.started_time = now
        return True

    def update(
        self, task_id: str, *, label: str | None = None, deadline: float | None = None
    ) -> Task:
        task = self.get(task_id)
        if label is not None:
            task.label = label
        if deadline is not None:
            task.deadline = deadline
        return task
