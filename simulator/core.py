"""The simulator's state behind one lock, and the worker step that moves tasks on.

``SimCore`` knows nothing about HTTP: route handlers (``routes.py``, ``control.py``) and the
public :class:`~radical.orbit.simulator.service.Simulator` call into it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog

from .auth import Credentials, User, Users
from .clock import SimClock
from .engine import Engine, EngineLimits, Step, Task
from .errors import ApiError, UnknownTask
from .faults import Fault, FaultSchedule, RateLimiter
from .worker import PlanFailure, expand, perform
from .world import Collection, World, data_access_scope

__all__ = ["SimConfig", "SimCore", "SimOptions"]

log = structlog.get_logger("radical.orbit.simulator")


@dataclass(frozen=True, kw_only=True)
class SimConfig(EngineLimits):
    """Knobs of one simulator (the engine's limits and the rest); see ``Simulator`` for
    their meaning."""

    token_lifetime: float = 48 * 3600.0
    rate_limit: float | None = 20.0
    rate_window: float = 10.0
    tick: float = 0.02
    seed: int = 0
    max_filter_task_ids: int | None = 100
    time_scale: float = 1.0
    latency: float = 0.0  # seconds every request is held (changeable while it runs)


class SimOptions(TypedDict, total=False):
    """The knobs ``Simulator`` takes as keyword options: SimConfig's defaults apply."""

    bytes_per_second: float
    min_task_seconds: float
    tick: float
    max_active: int
    max_pending: int
    rate_limit: float | None
    rate_window: float
    max_filter_task_ids: int | None
    retry_interval: float
    time_scale: float
    token_lifetime: float
    latency: float
    seed: int


def _log_task(event: str, task: Task, **fields: Any) -> None:
    log.info(event, task_id=task.task_id, user=task.owner, **fields)


class SimCore:
    def __init__(
        self,
        *,
        world: World,
        config: SimConfig,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.world = world
        self.config = config
        # The simulator's own clock: tests run it faster (time_scale) or move it on
        # (advance); tasks, deadlines, tokens and the rate limit all read it.
        self.sim_clock = SimClock(scale=config.time_scale, source=clock or time.time)
        self.clock: Callable[[], float] = self.sim_clock.now
        self.lock = threading.RLock()
        self.engine = Engine(config)
        self.users = Users(token_lifetime=config.token_lifetime)
        self.faults = FaultSchedule()
        self.faults.rng.seed(config.seed)
        self.limiter = RateLimiter(rate=config.rate_limit, window=config.rate_window)
        self.counts: Counter[str] = Counter()
        self.latency = config.latency
        # Set while the simulator stops, so requests held by latency or a delay fault let go.
        self.stopping = threading.Event()
        self._last_step: float | None = None

    # -- users -------------------------------------------------------------------------
    def add_user(self, name: str, consents: Iterable[str] = ()) -> Credentials:
        with self.lock:
            creds = self.users.add(name, now=self.clock(), consents=[c.lower() for c in consents])
            for coll in self.world.collections.values():
                self.world.make_home(coll, name)
        log.info("user added", user=name, consents=sorted(consents))
        return creds

    def require_consent(self, user: User, coll: Collection) -> None:
        """403 ConsentRequired when ``coll`` is mapped and ``user`` has not consented."""
        if coll.mapped and coll.id not in user.consents:
            raise ApiError(
                403,
                "ConsentRequired",
                "Missing required data_access consent",
                extra={"required_scopes": [data_access_scope(coll.id)]},
            )

    def collection(self, collection_id: str) -> Collection:
        coll = self.world.get(collection_id)
        if coll is None:
            raise ApiError(
                404, "ClientError.NotFound", f"No collection or endpoint with id {collection_id!r}"
            )
        return coll

    # -- tasks -------------------------------------------------------------------------
    def owned_task(self, task_id: str, user: User) -> Task:
        task = self.engine.find(task_id)
        if task is None or task.owner != user.name:
            raise ApiError(404, "ClientError.NotFound", f"Task {task_id} not found")
        return task

    def step(self) -> None:
        """Plan newly running tasks, spend the elapsed time's throughput, finish tasks.

        File work happens under the lock, so no reader sees a SUCCEEDED task whose files are
        not all in place.
        """
        with self.lock:
            now = self.clock()
            elapsed = 0.0 if self._last_step is None else now - self._last_step
            self._last_step = now
            self._run(now, elapsed)

    def _run(self, now: float, elapsed: float) -> None:
        self.engine.schedule(now)
        for task in self.engine.needs_plan():
            plan = expand(task, self.world, engine=self.engine, now=now)
            if isinstance(plan, PlanFailure):
                self._failure(task, now, plan)
                continue
            self.engine.set_plan(
                task.task_id,
                plan.steps,
                now=now,
                files=plan.files,
                directories=plan.directories,
                skipped=plan.skipped,
                skipped_errors=plan.skipped_errors,
            )
        for task, step in self.engine.advance(now, elapsed):
            # A task that faulted on an earlier step of this batch took the later ones back.
            if task.done or task.backing_off:
                continue
            failure = perform(self.engine, task, step, now=now)
            if failure is not None:
                self._failure(task, now, failure, step=step)
        for task in self.engine.settle(now):
            _log_task(
                "task finished",
                task,
                status=task.status,
                files=task.files_transferred,
                bytes=task.bytes_transferred,
            )

    def _failure(
        self, task: Task, now: float, failure: PlanFailure, *, step: Step | None = None
    ) -> None:
        if failure.retryable:
            self.engine.fault(
                task.task_id,
                now=now,
                code=failure.code,
                details=failure.description,
                step=step,
                rule=failure.rule,
            )
            _log_task("task fault", task, code=failure.code)
            return
        self.engine.fail(task.task_id, now=now, code=failure.code, details=failure.description)
        _log_task("task failed", task, code=failure.code)

    # -- control -----------------------------------------------------------------------
    def finish(self, task_ids: Iterable[str]) -> list[str]:
        """Complete the named unfinished tasks now (their files really copied)."""
        with self.lock:
            now = self.clock()
            forced = [tid for tid in task_ids if self.engine.force_finish(tid, now=now)]
            self._run(now, 0.0)
            return forced

    def finish_all(self) -> list[str]:
        with self.lock:
            return self.finish([t.task_id for t in self.engine if not t.done])

    @contextmanager
    def locked(self) -> Iterator[tuple[Engine, float]]:
        """The engine with the lock held, and the simulator's time: for a control action
        (pause, expire a credential, inject an error...) that needs nothing more."""
        with self.lock:
            yield self.engine, self.clock()

    def heal_errors(self, rule_id: str | None = None) -> int:
        with self.lock:
            return self.engine.heal_errors(rule_id)

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator's clock on and let the worker act on the new time at once."""
        with self.lock:
            self.sim_clock.advance(seconds)
            now = self.clock()
            # The jump's throughput is spent as one step, as if the worker had slept through.
            self.step()
            return now

    def fail(self, task_id: str, *, code: str, description: str) -> bool:
        with self.lock:
            return self.engine.fail(
                task_id, now=self.clock(), code=code, description=description, details=description
            )

    def document(self, task_id: str) -> dict[str, Any]:
        with self.lock:
            return self.engine.document(self.engine.get(task_id), self.clock())

    def documents(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.clock()
            return [self.engine.document(t, now) for t in self.engine]

    def schedule_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.add(fault)

    def check_task(self, task_id: str) -> None:
        with self.lock:
            if self.engine.find(task_id) is None:
                raise UnknownTask(task_id)
