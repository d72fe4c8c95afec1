"""End-to-end state machine: real simulator, real daemon process, real client.

Hypothesis drives random sequences of what users and Globus do (submits, deletes, cancels,
tasks finishing/failing/pausing/faulting in Globus, endpoint credentials expiring, token
expiry and re-registration, 429/5xx storms, WebSocket subscribers dropping and resuming,
daemon restarts: SIGTERM and SIGKILL, also in the middle of a submit). After each step the
test waits (bounded) until the daemon has caught up, then checks:

- the ledger's task rows (history view=tasks) equal the simulator's truth for every task of
  a session with a working credential; no row claims a final state Globus does not have;
- every Globus task of our users is tracked, and no submission produced two Globus tasks;
- every subscriber got each event of its filter exactly once, in seq order, exactly as the
  history route lists them (drops and daemon restarts included);
- a task that was seen SUCCEEDED/FAILED never changes again (row and event history);
- an open task's row says why it needs attention (INACTIVE, paused, Globus retrying an
  error), and its needs-attention / recovered events alternate, ending as the row says.

One simulator and one daemon serve every example; each example gets its own daemon token
and simulator users, so examples do not see each other's data.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from e2e_support import C1, C2, fresh_access_token, run_machine, wait_until
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from live_stack import start_daemon
from radical.orbit import (
    AuthenticationError,
    DaemonUnavailable,
    GlobusClient,
    RequestError,
    SubmitPendingError,
    SubmitUnresolved,
    Subscription,
)
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.protocol import TERMINAL_STATUSES
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from radical.orbit.simulator.testing import running_simulator
from timing import size

# The default run: 6 examples of up to 15 steps (20-70 s on 2 shared cores; a new random
# draw each run, failures found before are replayed first). "long": 150 x 40.
MAX_EXAMPLES = size("E2E_MAX_EXAMPLES", default=6, long=150)
STEPS = size("E2E_STEPS", default=15, long=40)
SETTLE_TIMEOUT = 20.0
CRASH_SUBMIT_TIMEOUT = 10.0
TERMINAL = TERMINAL_STATUSES
FIELDS = (
    "status",
    "nice_status",
    "bytes_transferred",
    "files_transferred",
    "is_ok",
    "is_paused",
    "faults",
)
# Retryable errors Globus keeps a task ACTIVE through (is_ok false, faults counting).
RETRYABLE = ("PERMISSION_DENIED", "ENDPOINT_ERROR", "CONNECT_FAILED")
GODATA = "/home/share/godata/"
_names = itertools.count()


@dataclass
class World:
    sim: Simulator
    daemon: DaemonProcess
    examples: int = 0
    steps: int = 0
    restarts: int = 0


class SessionModel:
    """What the test knows of one session. A plain class (not a dataclass) so that
    hypothesis prints it by its repr, which names no credential."""

    def __init__(self, *, creds: Credentials, kind: str, client: GlobusClient) -> None:
        self.creds = creds
        self.kind = kind  # "access_token" or "refresh_token"
        self.client = client
        self.session_id = ""
        self.live = True  # the daemon holds a credential Globus accepts
        self.intents = 0  # submits asked for (an upper bound of its Globus tasks)
        self.pending: set[str] = set()  # submission ids answered SubmitPending

    def __repr__(self) -> str:
        return f"Session({self.creds.username}, {self.kind}, live={self.live})"


class SubscriberModel:
    def __init__(self, *, session: SessionModel | None, client: GlobusClient) -> None:
        self.session = session  # None: every session of the example's token
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.sub: Subscription | None = None

    def start(self) -> None:
        since = self.events[-1]["seq"] if self.events else 0
        self.sub = self.client.subscribe(
            self.events.append, since=since, all_sessions=self.session is None
        )

    def stop(self) -> None:
        if self.sub is not None:
            self.sub.stop()
            self.sub = None

    def __repr__(self) -> str:
        target = self.session.creds.username if self.session else "all"
        return f"Subscriber({target}, running={self.sub is not None})"


class E2EMachine(RuleBasedStateMachine):
    world: ClassVar[World]

    # Tasks are not a Bundle: whether a submit yields a task now (or only after a
    # SubmitPending) is up to the real system, and hypothesis needs the same draws to mean
    # the same steps when it replays. Rules pick a task by index among those that exist.
    sessions = Bundle("sessions")
    subscribers = Bundle("subscribers")

    def __init__(self) -> None:
        super().__init__()
        self.w = type(self).world
        self.w.examples += 1
        self.tag = next(_names)
        self.token = self.w.daemon.add_token(f"sm{self.tag}")
        self.observer = GlobusClient(self.w.daemon.url, self.token)
        self.all_sessions: list[SessionModel] = []
        self.all_subscribers: list[SubscriberModel] = []
        self.task_session: dict[str, SessionModel] = {}
        self.task_ids: list[str] = []
        self.final: dict[str, dict[str, Any]] = {}  # task_id -> row first seen terminal
        self.unsure_intents = 0  # submits whose answer was lost in a crash

    # -- helpers ---------------------------------------------------------------------------

    def _client(self, **kwargs: Any) -> GlobusClient:
        return GlobusClient(self.w.daemon.url, self.token, **kwargs)

    def _register(self, model: SessionModel, *, first: bool = False) -> None:
        """Register (again), retrying while an injected storm makes Globus Auth fail."""
        for attempt in itertools.count():
            try:
                if model.kind == "refresh_token":
                    model.client.register_session(
                        refresh_token=model.creds.refresh_token, client_id=model.creds.client_id
                    )
                elif first:
                    model.client.register_session(access_token=model.creds.access_token)
                else:
                    model.client.register_session(
                        access_token=fresh_access_token(self.w.sim, model.creds)
                    )
                break
            except RequestError as exc:
                if exc.status not in (429, 502, 503) or attempt > 30:
                    raise
                time.sleep(0.1)
        model.live = True

    def _new_session(self, kind: str) -> SessionModel:
        creds = self.w.sim.add_user(f"sm{self.tag}u{len(self.all_sessions)}")
        client = self._client()
        model = SessionModel(creds=creds, kind=kind, client=client)
        self._register(model, first=True)
        assert client.session_id is not None
        model.session_id = client.session_id
        self.all_sessions.append(model)
        return model

    def _submit(
        self, model: SessionModel, n: int, *, delete: bool, in_crash: bool = False
    ) -> str | None:
        """One submit through the client; the task id, or None when there is none yet."""
        model.intents += 1
        try:
            if delete:
                answer = model.client.delete(C2, [f"/~/gone{n}/"], recursive=True, label=f"d{n}")
            else:
                answer = model.client.submit_transfer(
                    C1,
                    C2,
                    [{"source": GODATA, "destination": f"/~/out{n}/", "recursive": True}],
                    label=f"t{n}",
                )
        except SubmitPendingError as exc:
            # Recorded; the daemon resends it and announces the task itself.
            model.pending.add(str(exc.info["submission_id"]))
            return None
        except SubmitUnresolved as exc:
            if in_crash:
                # Retried while the daemon was down: it may never have recorded the submit.
                self.unsure_intents += 1
                return None
            # The library's retries ran out of time: the id says what became of it.
            model.pending.add(exc.submission_id)
            return None
        except AuthenticationError:
            assert not model.live, f"{model} refused its credential while it should work"
            return None
        except RequestError as exc:
            # A storm outlasting the SDK's retries on get_submission_id: nothing recorded.
            assert exc.status in (429, 502, 503), exc
            return None
        if answer["task_id"] is None:
            # QUEUED (a 429 storm outlasting the SDK's retries): the daemon sends it later.
            model.pending.add(str(answer["submission_id"]))
            return None
        task_id = str(answer["task_id"])
        self.task_session[task_id] = model
        self.task_ids.append(task_id)
        return task_id

    def _task(self, index: int) -> str | None:
        return self.task_ids[index % len(self.task_ids)] if self.task_ids else None

    # -- rules -----------------------------------------------------------------------------

    @initialize(target=sessions, kind=st.sampled_from(["access_token", "refresh_token"]))
    def first_session(self, kind: str) -> SessionModel:
        return self._new_session(kind)

    @precondition(lambda self: len(self.all_sessions) < 3)
    @rule(target=sessions, kind=st.sampled_from(["access_token", "refresh_token"]))
    def open_session(self, kind: str) -> SessionModel:
        return self._new_session(kind)

    @rule(session=sessions, delete=st.booleans(), n=st.integers(0, 5))
    def submit(self, session: SessionModel, delete: bool, n: int) -> None:
        self._submit(session, n, delete=delete)

    @rule(index=st.integers(0, 255))
    def cancel(self, index: int) -> None:
        task_id = self._task(index)
        if task_id is None:
            return
        model = self.task_session[task_id]
        try:
            answer = model.client.cancel_task(task_id)
        except AuthenticationError:
            assert not model.live, f"{model}: cancel refused its credential"
            return
        except RequestError as exc:
            # Transient Globus trouble: the cancel stays recorded and is resent later.
            assert exc.status in (429, 502, 503), exc
            return
        assert answer["code"] in ("Canceled", "TaskComplete"), answer

    @rule(
        index=st.integers(0, 255),
        action=st.sampled_from(["finish", "fail", "pause", "resume", "expire", "renew"]),
    )
    def globus_changes_task(self, index: int, action: str) -> None:
        task_id = self._task(index)
        if task_id is None:
            return
        sim = self.w.sim
        if action == "finish":
            sim.finish_task(task_id)
        elif action == "fail":
            sim.fail_task(task_id, code="ENDPOINT_ERROR", description="the endpoint broke")
        elif action == "pause":
            sim.pause_task(task_id)  # ACTIVE with is_paused, as with Globus
        elif action == "resume":
            sim.unpause_task(task_id)
        elif action == "expire":
            sim.expire_credential(task_id)  # INACTIVE until renewed
        else:
            sim.renew_credential(task_id)

    @rule(
        index=st.integers(0, 255),
        code=st.sampled_from(RETRYABLE),
        heal_count=st.integers(1, 3),
    )
    def globus_faults_task(self, index: int, code: str, heal_count: int) -> None:
        """An error Globus retries: the task stays ACTIVE, is_ok false, faults counting,
        until the error heals after ``heal_count`` faults."""
        task_id = self._task(index)
        if task_id is None:
            return
        self.w.sim.inject_error(code, task_id=task_id, heal_count=heal_count)

    @rule(index=st.integers(0, 255))
    def finish_and_wait(self, index: int) -> None:
        """Globus ends the task; a client waiting on it gets the final row."""
        task_id = self._task(index)
        if task_id is None:
            return
        model = self.task_session[task_id]
        self.w.sim.finish_task(task_id)
        if not model.live:
            return
        row = model.client.task_wait(task_id, timeout=SETTLE_TIMEOUT, polling_interval=1)
        truth = self.w.sim.task(task_id)
        assert row["status"] == truth["status"] in TERMINAL, (row, truth)

    @rule(session=sessions)
    def expire_token(self, session: SessionModel) -> None:
        self.w.sim.expire_token(session.creds.username)
        # A refresh token gets the daemon a new access token by itself.
        if session.kind == "access_token":
            session.live = False

    @rule(session=sessions)
    def register_again(self, session: SessionModel) -> None:
        self._register(session)

    @rule(
        route=st.sampled_from(
            [
                "task_list",
                "get_submission_id",
                "submit_transfer",
                "submit_delete",
                "cancel_task",
                "*",
            ]
        ),
        status=st.sampled_from([429, 500, 502, 503]),
        count=st.integers(1, 6),
    )
    def fault_storm(self, route: str, status: int, count: int) -> None:
        self.w.sim.schedule_fault(route=route, status=status, count=count)

    @precondition(lambda self: len(self.all_subscribers) < 4)
    @rule(target=subscribers, session=st.none() | sessions)
    def subscribe(self, session: SessionModel | None) -> SubscriberModel:
        client = self._client(
            session_id=session.session_id if session else None, remember_credential=False
        )
        model = SubscriberModel(session=session, client=client)
        model.start()
        self.all_subscribers.append(model)
        return model

    @rule(subscriber=subscribers)
    def drop_or_resume_subscriber(self, subscriber: SubscriberModel) -> None:
        if subscriber.sub is None:
            subscriber.start()  # from the last event it got: replay fills the gap
        else:
            subscriber.stop()

    @rule(
        hard=st.booleans(),
        during_submit=st.none() | st.tuples(st.floats(0, 0.15), st.integers(0, 5)),
        data=st.data(),
    )
    def restart_daemon(
        self, hard: bool, during_submit: tuple[float, int] | None, data: st.DataObject
    ) -> None:
        daemon = self.w.daemon
        inflight: threading.Thread | None = None
        if during_submit is not None:
            live = [s for s in self.all_sessions if s.live]
            if live:
                model = data.draw(st.sampled_from(live))
                inflight = threading.Thread(
                    target=self._submit_in_crash, args=(model, during_submit[1]), daemon=True
                )
                inflight.start()
                time.sleep(during_submit[0])
        if hard:
            daemon.kill()
        else:
            daemon.stop()
        if inflight is not None:
            inflight.join(30)
            assert not inflight.is_alive(), "a submit hung across the daemon restart"
        daemon.start()
        self.w.restarts += 1
        # The daemon lost every credential; hand fresh ones over.
        for model in self.all_sessions:
            self._register(model)

    def _submit_in_crash(self, model: SessionModel, n: int) -> None:
        # The library repeats a submit while the daemon is down, and the daemon starts again
        # only once this thread ended: give up well within the 30 s the rule waits.
        saved, model.client.submit_timeout = model.client.submit_timeout, CRASH_SUBMIT_TIMEOUT
        try:
            self._submit(model, n, delete=False, in_crash=True)
        except (DaemonUnavailable, RequestError):
            # The answer was lost with the daemon: the submit may or may not be recorded.
            self.unsure_intents += 1
        finally:
            model.client.submit_timeout = saved

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def settled_and_consistent(self) -> None:
        self.w.steps += 1
        wait_until(self._lagging, timeout=SETTLE_TIMEOUT)
        self._check_exact()

    def _our_truth(self) -> dict[str, dict[str, Any]]:
        users = {s.creds.username for s in self.all_sessions}
        return {d["task_id"]: d for d in self.w.sim.tasks() if d["username"] in users}

    def _rows(self) -> dict[str, dict[str, Any]]:
        rows = self.observer.history(view="tasks", limit=1000)["tasks"]
        return {r["task_id"]: r for r in rows}

    def _session_of_sid(self, session_id: str) -> SessionModel:
        for model in self.all_sessions:
            if model.session_id == session_id:
                return model
        raise AssertionError(
            f"the ledger shows session {session_id} that this example never opened"
        )

    def _lagging(self) -> list[str]:
        """What the daemon has not caught up with yet (eventually empty, or a bug)."""
        problems: list[str] = []
        truth = self._our_truth()
        rows = self._rows()
        by_user = {s.creds.username: s for s in self.all_sessions}
        for task_id, doc in truth.items():
            model = by_user[doc["username"]]
            row = rows.get(task_id)
            if row is None:
                if model.live:
                    problems.append(f"Globus task {task_id} of {model} is not tracked")
                continue
            if model.live:
                for key in FIELDS:
                    if row[key] != doc[key]:
                        problems.append(f"{task_id} {key}: ledger {row[key]!r} != {doc[key]!r}")
                fatal = (doc["fatal_error"] or {}).get("code")
                got = (row["fatal_error"] or {}).get("code")
                if fatal != got:
                    problems.append(f"{task_id} fatal_error: ledger {got!r} != {fatal!r}")
        for model in self.all_sessions:
            if model.live:
                known = {r["submission_id"] for r in rows.values()}
                for submission_id in model.pending - known:
                    problems.append(f"{model}: pending submission {submission_id} not resolved")
        for subscriber in self.all_subscribers:
            if subscriber.sub is None:
                continue
            expected = self._expected_events(subscriber)
            got_last = subscriber.events[-1]["seq"] if subscriber.events else 0
            want_last = expected[-1]["seq"] if expected else 0
            if got_last < want_last:
                sub = subscriber.sub
                problems.append(
                    f"{subscriber} at seq {got_last}, history at {want_last} (thread alive: "
                    f"{sub.running}, connects: {sub.connects}, error: {sub.error!r})"
                )
        return problems

    def _expected_events(self, subscriber: SubscriberModel) -> list[dict[str, Any]]:
        session_id = subscriber.session.session_id if subscriber.session else None
        return list(self.observer.iter_history(session_id=session_id, page_size=1000))

    def _check_exact(self) -> None:
        truth = self._our_truth()
        rows = self._rows()
        # Every row is a real Globus task of this example; no final state Globus lacks.
        for task_id, row in rows.items():
            assert task_id in truth, f"ledger row {task_id} has no Globus task"
            model = self._session_of_sid(row["session_id"])
            if task_id not in self.task_session:
                # Announced later (a SubmitPending or a submit cut by a kill): rules may
                # pick it from now on.
                self.task_session[task_id] = model
                self.task_ids.append(task_id)
            if row["status"] in TERMINAL:
                assert row["status"] == truth[task_id]["status"], (row, truth[task_id])
        # One Globus task per submission, no more tasks than submits.
        submissions = [r["submission_id"] for r in rows.values()]
        assert len(submissions) == len(set(submissions)), "a submission has two tasks"
        for model in self.all_sessions:
            mine = [d for d in truth.values() if d["username"] == model.creds.username]
            assert len(mine) <= model.intents + self.unsure_intents, (
                f"{model}: {len(mine)} Globus tasks for {model.intents} submits"
            )
        # Trouble: an open task's row says why it needs attention, derived from the state
        # it records; its episodes alternate (needs attention, recovered, ...).
        for task_id, row in rows.items():
            if row["status"] in TERMINAL:
                continue
            expected = (
                "inactive"
                if row["status"] == "INACTIVE"
                else "paused"
                if row["is_paused"]
                else "erroring"
                if row["is_ok"] is False
                else None
            )
            assert row["needs_attention"] == expected, (task_id, row)
            marks = [
                e["kind"]
                for e in self.observer.iter_history(task_id=task_id, page_size=1000)
                if e["kind"] in ("task_needs_attention", "task_recovered")
            ]
            assert all(a != b for a, b in itertools.pairwise(marks)), (task_id, marks)
            assert marks[:1] in ([], ["task_needs_attention"]), (task_id, marks)
            if expected is None:
                assert marks[-1:] in ([], ["task_recovered"]), (task_id, marks)
            else:
                assert marks[-1:] == ["task_needs_attention"], (task_id, marks)
        # Terminal rows never change again (last_seq may: a late cancel is still recorded),
        # and no state change or progress event follows the terminal one.
        for task_id, row in rows.items():
            row = {k: v for k, v in row.items() if k != "last_seq"}
            if task_id in self.final:
                assert row == self.final[task_id], (task_id, self.final[task_id], row)
            elif row["status"] in TERMINAL:
                self.final[task_id] = row
                statuses = [
                    e["data"]["status"]
                    for e in self.observer.iter_history(task_id=task_id, page_size=1000)
                    if e["topic"] == "transfer_status"
                ]
                assert statuses and statuses[-1] == row["status"], (task_id, statuses)
                assert statuses.count(row["status"]) == 1, (task_id, statuses)
        # Subscribers: exactly the history of their filter, once each, in order.
        for subscriber in self.all_subscribers:
            expected = self._expected_events(subscriber)
            seqs = [e["seq"] for e in subscriber.events]
            assert seqs == sorted(set(seqs)), f"{subscriber}: duplicate or out of order {seqs}"
            want = [e["seq"] for e in expected if e["seq"] <= (seqs[-1] if seqs else 0)]
            assert seqs == want, f"{subscriber}: got {seqs}, history has {want}"
            for got, exp in zip(subscriber.events, expected, strict=False):
                assert (got["kind"], got["task_id"], got["data"]) == (
                    exp["kind"],
                    exp["task_id"],
                    exp["data"],
                )

    def teardown(self) -> None:
        for subscriber in self.all_subscribers:
            subscriber.stop()
            subscriber.client.close()
        self.w.sim.clear_faults()
        if not self.w.daemon.running:
            self.w.daemon.start()
        for model in self.all_sessions:
            with contextlib.suppress(RequestError, DaemonUnavailable):
                model.client.unregister_session()
            model.client.close()
        self.observer.close()
        self.w.sim.finish_all()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-sm")
    # Tasks stay ACTIVE until a rule ends them (or a cancel), so the test decides when.
    with running_simulator(root, min_task_seconds=3600.0) as sim:
        daemon = start_daemon(root / "state", sim)
        try:
            yield World(sim=sim, daemon=daemon)
        finally:
            daemon.stop()


def test_end_to_end_state_machine(world: World) -> None:
    E2EMachine.world = world
    elapsed = run_machine(E2EMachine, max_examples=MAX_EXAMPLES, steps=STEPS)
    print(
        f"\ne2e state machine: {world.examples} examples, {world.steps} checked steps, "
        f"{world.restarts} daemon restarts, {elapsed:.1f} s"
    )
    assert world.examples >= 1
