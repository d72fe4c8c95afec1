"""The public in-process API: :class:`Simulator` runs the HTTP server and the task worker in
background threads and offers the controls tests, benchmarks and the demo use.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Unpack

import structlog

from ..protocol import is_terminal
from .auth import Credentials
from .core import SimConfig, SimCore, SimOptions
from .errors import SimulatorError
from .faults import Fault
from .httpserver import SimHTTPServer
from .world import World, default_world, load_world

__all__ = ["Simulator"]

log = structlog.get_logger("radical.orbit.simulator")


class Simulator:
    """A Globus Transfer API v0.10 + Auth token service on 127.0.0.1.

    ``root`` holds the collections' folders (the default world's, or those of ``world`` that
    are given relative). ``world`` is a :class:`World`, a world file path, or None for the
    default world (Tutorial Collections 1 and 2, and one mapped collection).

    Throughput: every running task moves ``bytes_per_second`` bytes per second, and stays
    ACTIVE at least ``min_task_seconds``. Limits per user: ``max_active`` running tasks per
    type, ``max_pending`` unfinished tasks, ``rate_limit`` requests per second over
    ``rate_window`` seconds (None: no limit), ``max_filter_task_ids`` task ids in one
    task_list ``filter=task_id:...`` (None: no limit). Access tokens live
    ``token_lifetime`` seconds. A faulted task tries again after ``retry_interval``
    seconds. Simulated time runs ``time_scale`` times faster than real time. Every request
    is held ``latency`` seconds; ``seed`` seeds the random faults, and the worker moves tasks
    on every ``tick`` seconds. These options (:class:`SimOptions`) default to
    :class:`SimConfig`'s values.
    """

    def __init__(
        self,
        *,
        root: Path | str,
        port: int = 0,
        host: str = "127.0.0.1",
        world: World | Path | str | None = None,
        **options: Unpack[SimOptions],
    ) -> None:
        config = SimConfig(**options)
        if config.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        if config.tick <= 0:
            raise ValueError("tick must be positive")
        if config.retry_interval <= 0 or config.time_scale <= 0:
            raise ValueError("retry_interval and time_scale must be positive")
        if config.max_filter_task_ids is not None and config.max_filter_task_ids < 1:
            raise ValueError("max_filter_task_ids must be at least 1 (or None)")
        self.root = Path(root)
        self._address = (host, port)
        if world is None:
            the_world = default_world(self.root)
        elif isinstance(world, World):
            the_world = world
        else:
            the_world = load_world(Path(world), root=self.root)
        self._core = SimCore(world=the_world, config=config)
        self._server: SimHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._server is not None:
            raise SimulatorError("the simulator is running already")
        self.root.mkdir(parents=True, exist_ok=True)
        self._core.world.materialise(self._core.users.names())
        self._server = SimHTTPServer(self._address, self._core)
        # A restart after stop() comes back on the same port, so clients keep their URL.
        self._address = (self._address[0], int(self._server.server_address[1]))
        self._stopping.clear()
        self._core.stopping.clear()
        serve = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="orbit-sim-http",
            daemon=True,
        )
        work = threading.Thread(target=self._work, name="orbit-sim-worker", daemon=True)
        self._threads = [serve, work]
        for thread in self._threads:
            thread.start()
        log.info("simulator started", url=self.url, root=str(self.root))
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        self._core.stopping.set()
        server.shutdown()
        server.drop_connections()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        log.info("simulator stopped")

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _work(self) -> None:
        while not self._stopping.wait(self._core.config.tick):
            try:
                self._core.step()
            except Exception:
                # A bug in one step must not stop every later task; it is logged loudly.
                log.error("simulator worker step failed", traceback=traceback.format_exc())

    # -- addresses ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise SimulatorError("the simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def environ(self) -> dict[str, str]:
        """Environment variables that point globus-sdk clients at this simulator."""
        return {
            "GLOBUS_SDK_SERVICE_URL_TRANSFER": self.url + "/",
            "GLOBUS_SDK_SERVICE_URL_AUTH": self.url + "/",
        }

    @property
    def world(self) -> World:
        return self._core.world

    def local_path(self, collection_id: str, path: str, *, username: str = "") -> Path:
        """The local file behind ``path`` on a collection (``/~/`` needs ``username``)."""
        coll = self._core.world.get(collection_id)
        if coll is None:
            raise SimulatorError(f"no collection {collection_id} in this world")
        return coll.local(coll.virtual(path, username))

    # -- users -------------------------------------------------------------------------
    def add_user(self, name: str = "alice", *, consents: Iterable[str] = ()) -> Credentials:
        """A new user with fresh tokens; ``consents`` are collection ids consented to."""
        return self._core.add_user(name, consents)

    def grant_consent(self, username: str, collection_id: str) -> None:
        with self._core.lock:
            self._core.users.grant(username, collection_id)

    def revoke_consent(self, username: str, collection_id: str) -> None:
        with self._core.lock:
            self._core.users.revoke(username, collection_id)

    def expire_token(self, token: str) -> bool:
        """Expire an access token now (or all of a user's, given the user name)."""
        with self._core.lock:
            return self._core.users.expire(token)

    def revoke_refresh_token(self, token: str) -> bool:
        with self._core.lock:
            return self._core.users.revoke_refresh(token)

    # -- faults ------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        return self._core.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self._core.latency = seconds

    def schedule_fault(
        self,
        *,
        route: str,
        status: int | None = None,
        count: int | None = 1,
        fraction: float = 1.0,
        delay: float = 0.0,
        retry_after: int | None = None,
        code: str | None = None,
    ) -> None:
        """The next ``count`` requests to ``route`` (``"*"``: any) answer ``status`` and/or
        wait ``delay`` seconds first; with ``fraction`` < 1 each matching request is hit
        with that probability. ``count=None`` lasts until :meth:`clear_faults`."""
        self._core.schedule_fault(
            Fault(
                route=route,
                status=status,
                count=count,
                fraction=fraction,
                delay=delay,
                retry_after=retry_after,
                code=code,
            )
        )

    def clear_faults(self) -> None:
        with self._core.lock:
            self._core.faults.clear()

    # -- tasks -------------------------------------------------------------------------
    def task(self, task_id: str) -> dict[str, Any]:
        """The task document as GET /task/{id} shows it to its owner."""
        return self._core.document(task_id)

    def tasks(self) -> list[dict[str, Any]]:
        return self._core.documents()

    def pause_task(
        self,
        task_id: str,
        *,
        nice_status: str = "PAUSED_BY_ADMIN",
        message: str = "The task was paused by the simulator",
    ) -> bool:
        """Pause a task as an endpoint administrator would: it stays ACTIVE with
        ``is_paused`` true (event PAUSED, ``pause_info`` shows ``message``); False when it
        had ended or was paused already."""
        with self._core.locked() as (engine, now):
            return engine.pause(task_id, now=now, nice_status=nice_status, message=message)

    def unpause_task(self, task_id: str) -> bool:
        """End a pause (event UNPAUSED); False when the task was not paused."""
        with self._core.locked() as (engine, now):
            return engine.unpause(task_id, now=now)

    resume_task = unpause_task

    def expire_credential(
        self,
        task_id: str,
        *,
        nice_status: str = "CREDENTIAL_EXPIRED",
        message: str = "The credential of an endpoint of this task has expired",
    ) -> bool:
        """The task's endpoint credential expires: INACTIVE until :meth:`renew_credential`."""
        with self._core.locked() as (engine, now):
            return engine.expire_credential(
                task_id, now=now, nice_status=nice_status, message=message
            )

    def renew_credential(self, task_id: str) -> bool:
        """The credential is renewed: the task is ACTIVE again."""
        with self._core.locked() as (engine, now):
            return engine.renew_credential(task_id, now=now)

    def inject_error(
        self,
        code: str,
        *,
        task_id: str | None = None,
        path: str | None = None,
        details: str = "",
        heal_after: float | None = None,
        heal_count: int | None = None,
    ) -> str:
        """A retryable error (e.g. ``PERMISSION_DENIED``, ``ENDPOINT_ERROR``,
        ``CONNECT_FAILED``) for the task ``task_id`` and/or the tasks touching ``path`` (at
        or below it, as the request names it); it heals ``heal_after`` simulated seconds
        from now or after ``heal_count`` faults. Returns the rule id for
        :meth:`heal_errors`."""
        with self._core.locked() as (engine, now):
            return engine.inject_error(
                code=code,
                now=now,
                task_id=task_id,
                path=path,
                details=details,
                heal_after=heal_after,
                heal_count=heal_count,
            ).rule_id

    def heal_errors(self, rule_id: str | None = None) -> int:
        """Remove one injected error rule, or all; returns how many were removed."""
        return self._core.heal_errors(rule_id)

    # -- time --------------------------------------------------------------------------
    def now(self) -> float:
        """The simulator's clock (Unix seconds)."""
        return self._core.clock()

    def advance_clock(self, seconds: float) -> float:
        """Move the simulator's clock ``seconds`` on (deadlines, retries, tokens, heals);
        returns the new time."""
        return self._core.advance_clock(seconds)

    @property
    def time_scale(self) -> float:
        return self._core.sim_clock.scale

    @time_scale.setter
    def time_scale(self, scale: float) -> None:
        self._core.sim_clock.scale = scale

    def fail_task(
        self, task_id: str, *, code: str = "FAILED", description: str = "The task failed"
    ) -> bool:
        self._core.check_task(task_id)
        return self._core.fail(task_id, code=code, description=description)

    def finish_task(self, task_id: str) -> bool:
        """Complete a task now, its files really copied; False if it had already ended."""
        self._core.check_task(task_id)
        return bool(self._core.finish([task_id]))

    def finish_all(self) -> list[str]:
        """Complete every unfinished task now; returns their ids."""
        return self._core.finish_all()

    def wait_task(self, task_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a task has ended (SUCCEEDED/FAILED); returns its document."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.task(task_id)
            if is_terminal(doc["status"]) or time.monotonic() > deadline:
                return doc
            time.sleep(min(self._core.config.tick, 0.05))

    # -- metering ----------------------------------------------------------------------
    def request_counts(self) -> Counter[str]:
        """Transfer API requests received per route name (SDK method names)."""
        with self._core.lock:
            return Counter(self._core.counts)

    def reset_counts(self) -> None:
        with self._core.lock:
            self._core.counts.clear()
