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
from typing import Any

from .errors import ApiError, UnknownTask
from .task import (
    DAY,
    SKIPPABLE_CODES,
    EngineLimits,
    ErrorRule,
    Event,
    Step,
    Task,
    TaskError,
    TaskRequest,
    describe,
    iso_time,
)

# The records are defined in task.py and re-exported: callers import them from here.
__all__ = [
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
        sub_id = str(uuid.uuid4())
        self._issued_submission_ids.add(sub_id)
        return sub_id

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
            self._end(task, now, "SUCCEEDED")
            task.add_event(now, "SUCCEEDED")
            finished.append(task)
        if finished:
            self.schedule(now)
        return finished

    def _end(self, task: Task, now: float, status: str) -> None:
        """The task reaches ``status`` (SUCCEEDED or FAILED) and never changes again."""
        self._open.pop(task.task_id, None)
        task.status = status
        task.nice_status = None
        task.running = False
        task.paused = False
        task.credential_expired = False
        task.retry_at = None
        task.error = None
        task.completion_time = now

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
        self._end(task, now, "FAILED")
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
