"""The pure task engine of the simulator.

No I/O happens here. The engine keeps every task's state and, given the time and a byte
budget, decides which tasks run, how far they get, and when they end. Work on files is
described by :class:`Step` s: the worker (``worker.py``) expands a task's request into steps
by looking at the file system (:meth:`Engine.set_plan`), and performs the steps that
:meth:`Engine.advance` hands back. Time is always passed in (``now``, seconds since the
epoch), so tests can drive the engine with any clock.

Life of a task, as Globus documents it (docs.globus.org/api/transfer/task_behavior, "task
behavior" below; the sources of each rule are in docs/simulator.md's fidelity table):

- submitted ACTIVE with nice_status "Queued"; "Queued" while its owner already has
  ``max_active`` running tasks of that type; running (nice_status "OK") once it has a slot;
- a retryable error (missing source, permission denied, endpoint or connection errors) is a
  *fault*: the task stays ACTIVE, ``faults`` grows, ``is_ok`` turns false, nice_status names
  the error, an error event is logged, and the task backs off ``retry_interval`` seconds
  (freeing its slot) before it tries again; the first batch of work that succeeds clears it;
- paused by an administrator: still ACTIVE, ``is_paused`` true, no progress; events PAUSED and
  UNPAUSED; the deadline moves to 90 days after the pause, and to 24 h after the unpause;
- INACTIVE only while the credential of one of its endpoints has expired, until renewed;
- deadline: 24 h after submission unless given; a transfer without a given deadline moves it
  to 72 h after its last progress, or 24 h away while it waits in the queue without errors;
  past the deadline the task ends FAILED with ``EXPIRED``;
- SUCCEEDED when every step is done (and at least ``min_task_seconds`` passed); FAILED on a
  fatal error, a cancel or the deadline. SUCCEEDED and FAILED never change again.
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
    "SKIPPABLE_CODES",
    "Engine",
    "EngineLimits",
    "ErrorRule",
    "Event",
    "Step",
    "Task",
    "TaskError",
    "TaskRequest",
    "describe",
    "iso_time",
]

DONE_STATUSES = frozenset({"SUCCEEDED", "FAILED"})
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
        return {
            "DATA_TYPE": "event",
            "code": self.code,
            "description": self.description,
            "details": self.details,
            "is_error": self.is_error,
            "time": iso_time(self.time),
        }


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
        return self.status in DONE_STATUSES

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
        self._rules: dict[str, ErrorRule] = {}

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

    def document(self, task: Task, now: float) -> dict[str, Any]:
        return task.document(now, error_visible=self.limits.error_visible)

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
            deadline_given=request.deadline is not None,
            label=request.label,
        )
        self._tasks[task.task_id] = task
        self._open[task.task_id] = task
        self._by_submission[key] = task.task_id
        # A task just submitted reads "Queued" until the scheduler's next turn gives it a
        # slot (CLI fixture submit_delete_queued.yaml).
        return task, False

    # -- scheduling ----------------------------------------------------------------------
    def schedule(self, now: float) -> None:
        """Apply deadlines and injected errors, then let each owner run up to ``max_active``
        tasks per type; the rest wait with nice_status "Queued" (or their recent error)."""
        limits = self.limits
        for task in list(self._open.values()):
            if not task.done and now > task.deadline:
                self._fail(
                    task, now, "EXPIRED", details="The task did not complete before its deadline"
                )
        running: dict[tuple[str, str], int] = {}
        for task in list(self._open.values()):
            if task.backing_off and task.retry_at is not None and now >= task.retry_at:
                task.retry_at = None
            blocked = task.paused or task.credential_expired or task.backing_off
            slot = (task.owner, task.request.type)
            count = running.get(slot, 0)
            if not blocked and (task.running or count < limits.max_active):
                running[slot] = count + 1
                if not task.running:
                    task.running = True
                    if task.started_time is None:
                        task.started_time = now
                        task.add_event(now, "STARTED")
                task.nice_status = task.error.code if task.error is not None else "OK"
                rule = None if task.forced else self._task_rule(task, now)
                if rule is not None:
                    rule.hits += 1
                    self._fault(task, now, rule.code, rule.details)
                continue
            task.running = False
            if task.credential_expired:
                task.nice_status = task.credential_nice_status
            elif task.paused:
                task.nice_status = task.pause_nice_status
            elif task.error is not None and now - task.error.time < limits.error_visible:
                task.nice_status = task.error.code
            else:
                task.nice_status = "Queued"
                quiet = task.last_error_time is None or now - task.last_error_time >= DAY
                if task.request.type == "TRANSFER" and not task.deadline_given and quiet:
                    task.deadline = max(task.deadline, now + limits.queued_extension)

    def _task_rule(self, task: Task, now: float) -> ErrorRule | None:
        """An active injected rule that fails the whole task now (no path, or a path its
        request names)."""
        for rule in self._rules.values():
            if not rule.active(now) or rule.task_id not in (None, task.task_id):
                continue
            if rule.path is None:
                return rule
            # A skippable error on a source path is the worker's to skip while planning.
            skip = task.request.skip_source_errors and rule.code in SKIPPABLE_CODES
            for item in task.request.items:
                for key in ("source_path", "destination_path", "path"):
                    value = item.get(key)
                    if skip and key == "source_path":
                        continue
                    if isinstance(value, str) and rule.matches_path(value):
                        return rule
        return None

    def path_rule(self, task: Task, path: str, now: float) -> ErrorRule | None:
        """An active injected rule with a path that ``path`` (of one of the task's files) is
        at or below; the worker asks while planning and before each step. A task forced to
        finish (``finish_task``) ignores injected errors."""
        if task.forced:
            return None
        for rule in self._rules.values():
            if rule.path is None or not rule.active(now):
                continue
            if rule.task_id in (None, task.task_id) and rule.matches_path(path):
                return rule
        return None

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
        """Record the steps of a task; ``skipped`` are files sync_level left alone,
        ``skipped_errors`` source paths skip_source_errors skipped (each logged as its error
        event, then one SKIPPED_ERRORS event: task behavior, 4.1; task_events page)."""
        task = self.get(task_id)
        if task.done:
            return
        task.plan = list(steps)
        task.files = files
        task.directories = directories
        task.files_skipped = len(list(skipped))
        errors = list(skipped_errors)
        for err in errors:
            task.skipped_errors.append(err)
            task.add_event(
                now,
                str(err.get("error_code", "FILE_NOT_FOUND")),
                error=True,
                details=str(err.get("error_details", "")),
            )
        if errors:
            task.add_event(
                now,
                "SKIPPED_ERRORS",
                details=f"{len(errors)} source path(s) skipped because of errors",
            )
        self._recovered(task, now)

    # -- faults --------------------------------------------------------------------------
    def inject_error(
        self,
        *,
        code: str,
        now: float,
        task_id: str | None = None,
        path: str | None = None,
        details: str = "",
        heal_after: float | None = None,
        heal_count: int | None = None,
    ) -> ErrorRule:
        """Make matching tasks fault with ``code`` at every attempt until the rule heals."""
        if task_id is not None:
            self.get(task_id)
        if heal_count is not None and heal_count < 1:
            raise ValueError("heal_count must be at least 1 (or None)")
        if heal_after is not None and heal_after < 0:
            raise ValueError("heal_after must not be negative")
        rule = ErrorRule(
            rule_id=str(uuid.uuid4()),
            code=code,
            details=details or f"Simulated {code} error",
            task_id=task_id,
            path=path,
            heal_at=None if heal_after is None else now + heal_after,
            heal_count=heal_count,
        )
        self._rules[rule.rule_id] = rule
        return rule

    def heal_errors(self, rule_id: str | None = None) -> int:
        """Remove one injected rule (or all); returns how many were removed."""
        if rule_id is None:
            count = len(self._rules)
            self._rules.clear()
            return count
        return 1 if self._rules.pop(rule_id, None) is not None else 0

    def rules(self) -> list[ErrorRule]:
        return list(self._rules.values())

    def fault(
        self,
        task_id: str,
        *,
        now: float,
        code: str,
        details: str = "",
        step: Step | None = None,
        rule: ErrorRule | None = None,
    ) -> bool:
        """A retryable error: the task stays ACTIVE, counts a fault, logs an error event and
        backs off. ``step`` is the step that failed (it and the steps handed out after it
        in the same batch are taken back, so the retry starts with it); a task that failed
        while being planned has no plan yet and is planned afresh at its retry. False when
        the task had already ended."""
        task = self.get(task_id)
        if task.done:
            return False
        if rule is not None:
            rule.hits += 1
        if step is not None and task.plan is not None:
            self._take_back(task, step)
        self._fault(task, now, code, details)
        return True

    def _fault(self, task: Task, now: float, code: str, details: str) -> None:
        task.faults += 1
        task.error = TaskError(code=code, details=details, time=now)
        task.last_error_time = now
        if not (task.paused or task.credential_expired):
            # A pause or an expired credential shows over the error.
            task.nice_status = code
        task.running = False
        task.retry_at = now + self.limits.retry_interval
        task.add_event(now, code, error=True, details=details)

    def _take_back(self, task: Task, step: Step) -> None:
        assert task.plan is not None
        index = next((i for i, s in enumerate(task.plan) if s is step), None)
        if index is None or index >= task.cursor:
            return
        for undone in task.plan[index : task.cursor]:
            if undone.kind == "copy":
                task.bytes_done -= undone.size
                task.files_transferred -= 1
                task.successful.pop()
        task.cursor = index
        task.partial = 0.0

    def _recovered(self, task: Task, now: float) -> None:
        """A batch of work succeeded: the error is over, the deadline moves on."""
        task.error = None
        if task.running and not task.done:
            task.nice_status = "OK"
        task.last_progress = now
        if task.request.type == "TRANSFER" and not task.deadline_given:
            task.deadline = max(task.deadline, now + self.limits.progress_extension)

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
            if task.done or task.paused or task.credential_expired or task.plan is None:
                continue
            if not (task.running or task.forced):
                continue
            before = (task.cursor, task.partial)
            if task.forced:
                completed.extend(self._take(task, float("inf")))
            else:
                completed.extend(self._take(task, budget))
            if (task.cursor, task.partial) != before:
                self._recovered(task, now)
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
            if task.done or task.plan is None or task.paused or task.credential_expired:
                continue
            if task.backing_off or task.cursor < len(task.plan):
                continue
            started = task.started_time if task.started_time is not None else now
            if not task.forced and now - started < self.limits.min_task_seconds:
                continue
            task.status = "SUCCEEDED"
            task.nice_status = None
            task.running = False
            task.error = None
            task.completion_time = now
            task.add_event(now, "SUCCEEDED")
            self._open.pop(task.task_id, None)
            finished.append(task)
        if finished:
            self.schedule(now)
        return finished

    # -- control -------------------------------------------------------------------------
    def _fail(
        self,
        task: Task,
        now: float,
        code: str,
        *,
        description: str | None = None,
        details: str = "",
    ) -> None:
        self._open.pop(task.task_id, None)
        task.status = "FAILED"
        task.nice_status = None
        task.running = False
        task.paused = False
        task.credential_expired = False
        task.retry_at = None
        task.error = None
        task.completion_time = now
        # fatal_error {code, description} with the short description (CLI fixture
        # submit_delete_failed.yaml: {"code": "FILE_NOT_FOUND", "description": "file not found"}).
        task.fatal_error = {"code": code, "description": description or describe(code)}
        task.add_event(now, code, error=True, details=details or description or "")

    def fail(
        self,
        task_id: str,
        *,
        now: float,
        code: str = "FAILED",
        description: str | None = None,
        details: str = "",
    ) -> bool:
        """Fail an unfinished task with ``fatal_error``; False when it had already ended."""
        task = self.get(task_id)
        if task.done:
            return False
        task.faults += 1
        self._fail(task, now, code, description=description, details=details)
        self.schedule(now)
        return True

    def cancel(self, task_id: str, *, now: float) -> tuple[str, str]:
        """Cancel a task; returns the result code and message of POST /task/{id}/cancel."""
        task = self.get(task_id)
        if task.done:
            return "TaskComplete", f"Task {task_id} is already complete ({task.status})"
        # CLI fixture task_event_list.yaml: CANCELED, "canceled", "Canceled by the task owner".
        self._fail(task, now, "CANCELED", details="Canceled by the task owner")
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
        """An administrator's pause: the task stays ACTIVE with ``is_paused`` true and makes
        no progress until :meth:`unpause`; its deadline moves to 90 days from now."""
        task = self.get(task_id)
        if task.done or task.paused:
            return False
        task.paused = True
        task.running = False
        task.pause_nice_status = nice_status
        task.pause_message = message
        task.deadline = now + self.limits.paused_deadline
        task.add_event(now, "PAUSED", details=message)
        self.schedule(now)
        return True

    def unpause(self, task_id: str, *, now: float) -> bool:
        """End a pause; the deadline moves to 24 h from now."""
        task = self.get(task_id)
        if task.done or not task.paused:
            return False
        task.paused = False
        task.pause_message = None
        task.deadline = now + self.limits.unpaused_deadline
        task.add_event(now, "UNPAUSED")
        self.schedule(now)
        return True

    def expire_credential(
        self,
        task_id: str,
        *,
        now: float,
        nice_status: str = "CREDENTIAL_EXPIRED",
        message: str = "The credential of an endpoint of this task has expired",
    ) -> bool:
        """The credential the task uses on one of its endpoints expired: INACTIVE until
        :meth:`renew_credential` (the only cause of INACTIVE Globus documents)."""
        task = self.get(task_id)
        if task.done or task.credential_expired:
            return False
        task.credential_expired = True
        task.credential_nice_status = nice_status
        task.credential_message = message
        task.status = "INACTIVE"
        task.running = False
        self.schedule(now)
        return True

    def renew_credential(self, task_id: str, *, now: float) -> bool:
        task = self.get(task_id)
        if task.done or not task.credential_expired:
            return False
        task.credential_expired = False
        task.credential_message = None
        task.status = "ACTIVE"
        self.schedule(now)
        return True

    def force_finish(self, task_id: str, *, now: float) -> bool:
        """Let a task complete at the next :meth:`advance`, whatever the throughput."""
        task = self.get(task_id)
        if task.done:
            return False
        if task.paused:
            self.unpause(task_id, now=now)
        if task.credential_expired:
            self.renew_credential(task_id, now=now)
        task.retry_at = None
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
            task.deadline_given = True
        return task
