"""A hypothesis state machine over submit / retry / cancel / restart / capacity, with the
ledger and the simulator (real limits: 100 pending tasks, 3 active, 20 requests/s) as the
two truths.

Each example is a new Globus user whose 100 places are almost all taken by tasks submitted
outside the daemon, so a few submits through the daemon reach the limit and queue. After every
step: no submit ran twice in Globus, no submit cancelled while queued ran at all, and every
task the ledger names for a submit is the one Globus has for it. At the end (capacity freed,
daemon up) every submit that was not cancelled while queued ran exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import globus_sdk
import pytest
from e2e_support import run_machine
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from radical.orbit.client import GlobusClient
from radical.orbit.client.errors import RequestError
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator, transfer_client
from timing import LONG, UNIT, size

# Bounded for the default run (about a minute): a restart costs seconds, so at most two per
# example; the "long" profile explores more.
MAX_EXAMPLES = size("ADMISSION_SM_EXAMPLES", default=4, long=40)
STEPS = size("ADMISSION_SM_STEPS", default=12, long=30)
RESTARTS = 6 if LONG else 2
ITEM = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1"}]
OUTSIDE = 97  # places taken outside the daemon: the 4th submit through it queues
_users = itertools.count()


@dataclass
class World:
    sim: Simulator
    daemon: DaemonProcess
    examples: int = 0
    restarts: int = 0
    queued: int = 0


@dataclass
class Submit:
    submission_id: str
    label: str
    answers: list[dict[str, Any]] = field(default_factory=list)
    cancelled_queued: bool = False


class AdmissionMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.w = type(self).world
        self.w.examples += 1
        self.name = f"user{next(_users)}"
        self.creds = self.w.sim.add_user(self.name)
        tc = transfer_client(self.w.sim, self.creds)
        self.outside: list[str] = []
        for n in range(OUTSIDE):
            td = globus_sdk.TransferData(
                source_endpoint=C1,
                destination_endpoint=C2,
                label=f"{self.name}-outside-{n}",
                submission_id=str(uuid.uuid4()),
            )
            td.add_item("/home/share/godata/file1.txt", f"/~/o{n}")
            self.outside.append(str(tc.submit_transfer(td)["task_id"]))
        self.globus = GlobusClient(self.w.daemon.url, self.w.daemon.token, submit_timeout=60 * UNIT)
        self.globus.register_session(access_token=self.creds.access_token)
        self.submits: list[Submit] = []
        self.restarts = 0

    # -- the two truths ------------------------------------------------------------------

    def _globus_tasks(self, label: str) -> list[dict[str, Any]]:
        return [t for t in self.w.sim.tasks() if t.get("label") == label]

    # -- rules ---------------------------------------------------------------------------

    @rule()
    def submit(self) -> None:
        sub = Submit(str(uuid.uuid4()), f"{self.name}-s{len(self.submits)}")
        answer = self.globus.submit_transfer(
            C1, C2, ITEM, label=sub.label, submission_id=sub.submission_id
        )
        assert answer["submission_id"] == sub.submission_id
        assert answer["status"] in ("ACTIVE", "QUEUED"), answer
        self.w.queued += answer["status"] == "QUEUED"
        sub.answers.append(answer)
        self.submits.append(sub)

    @precondition(lambda self: self.submits)
    @rule(pick=st.integers(min_value=0))
    def retry(self, pick: int) -> None:
        sub = self.submits[pick % len(self.submits)]
        answer = self.globus.submit_transfer(
            C1, C2, ITEM, label=sub.label, submission_id=sub.submission_id
        )
        earlier = [a["task_id"] for a in sub.answers if a.get("task_id")]
        if earlier and answer.get("task_id"):
            assert answer["task_id"] == earlier[0], (sub, answer)
        if sub.cancelled_queued:
            assert answer["task_id"] is None and answer["status"] == "FAILED", answer
        sub.answers.append(answer)

    @precondition(lambda self: self.submits)
    @rule(pick=st.integers(min_value=0))
    def cancel(self, pick: int) -> None:
        sub = self.submits[pick % len(self.submits)]
        try:
            answer = self.globus.cancel_task(sub.submission_id)
        except RequestError as exc:
            # 503: being sent, no task id yet; or Globus refused the cancel of a finished one.
            assert exc.status in (400, 409, 503), exc
            return
        if answer.get("task_id") is None and answer["code"] == "Canceled":
            sub.cancelled_queued = True

    @rule(count=st.integers(min_value=1, max_value=4))
    def capacity_frees(self, count: int) -> None:
        for task_id in self.outside[:count]:
            self.w.sim.finish_task(task_id)
        del self.outside[:count]

    @precondition(lambda self: self.restarts < RESTARTS)
    @rule()
    def restart(self) -> None:
        self.restarts += 1
        self.w.daemon.kill()
        self.w.daemon.start()
        self.w.restarts += 1
        # As a workflow would after a restart: hand the credential over again.
        self.globus.register_session(access_token=self.creds.access_token)

    # -- after every step ----------------------------------------------------------------

    @invariant()
    def never_twice_and_cancelled_never_ran(self) -> None:
        for sub in self.submits:
            tasks = self._globus_tasks(sub.label)
            assert len(tasks) <= 1, (sub, tasks)
            if sub.cancelled_queued:
                assert not tasks, sub
            for answer in sub.answers:
                if answer.get("task_id"):
                    assert tasks and tasks[0]["task_id"] == answer["task_id"], (sub, answer)

    def teardown(self) -> None:
        try:
            for task_id in self.outside:
                self.w.sim.finish_task(task_id)
            deadline = time.monotonic() + 90 * UNIT
            pending = [s for s in self.submits if not s.cancelled_queued]
            while pending and time.monotonic() < deadline:
                pending = [s for s in pending if not self._globus_tasks(s.label)]
                time.sleep(0.1)
            assert not pending, f"never reached Globus: {pending}"
            for sub in self.submits:
                tasks = self._globus_tasks(sub.label)
                assert len(tasks) == (0 if sub.cancelled_queued else 1), (sub, tasks)
                if tasks:
                    # The ledger's truth: the submission id names that very task.
                    row = self.globus.get_task(sub.submission_id)
                    assert row["task_id"] == tasks[0]["task_id"], (sub, row)
            self.w.sim.finish_all()
        finally:
            with contextlib.suppress(Exception):
                self.globus.unregister_session()
            self.globus.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("admission-sm")
    with running_simulator(
        root,
        min_task_seconds=3600.0,
        max_pending=100,
        max_active=3,
        rate_limit=20.0,
        rate_window=10.0,
    ) as sim:
        daemon = DaemonProcess(
            state_dir=Path(root) / "state",
            env={**sim.environ(), "RADICAL_ORBIT_ADMISSION_PROBE_INTERVAL": "0.3"},
            poll_interval=0.2,
        ).start()
        try:
            yield World(sim=sim, daemon=daemon)
        finally:
            daemon.stop()


def test_admission_state_machine(world: World) -> None:
    AdmissionMachine.world = world
    elapsed = run_machine(AdmissionMachine, max_examples=MAX_EXAMPLES, steps=STEPS)
    print(
        f"\nadmission state machine: {world.examples} examples, {world.restarts} restarts, "
        f"{world.queued} QUEUED answers, {elapsed:.1f} s"
    )
    assert world.examples >= 1
