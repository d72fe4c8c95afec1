"""Stateful property test of the ledger against an independent model.

Hypothesis drives random sequences of valid and invalid appends (single, all-or-nothing
batches, and concurrent appends that share group commits), attempts to smuggle a credential,
closes and reopens the file, rebuilds the projections and replays from random cursors. After
every step it checks the ledger's invariants:

* projection == fold(events): the tasks (with their last observation time), pending
  submissions, open sessions and pending cancels read from the ledger equal the package's
  fold of the replayed events and the model's own bookkeeping;
* seqs strictly increasing and never reused (across reopen, refusals and failed batches);
* ``events_since(k)`` is exactly the suffix of the log after ``k``;
* terminal states absorbing (the model refuses changes out of them and so must the ledger);
* no event holds a credential (the credential values never appear in the database files).

Ids are drawn mostly from the ones the model knows, so valid transitions are as common as
refusals. With the "ci" profile (100 examples x 40 steps) it runs a few thousand appends;
"long" runs 2000 examples. A step costs what it checks and little more: each example starts
from a copy of one migrated empty file, in RAM where there is a tmpfs (no fsync per commit),
the invariant makes its reads in one turn of the loop with the whole log in one page (the
tiny pages are replay_from_cursor's), and the fold of the log grows with each acknowledged
event instead of being redone from seq 0. Checked by injecting bugs (a fold step that keeps a
submission change when the task part of the same event is refused; a replay that skips a row
at each page boundary; a fold that silently ignores progress on finished tasks; a writer that
forgets a single cancel's row; a cancel that moves ``observed_time``): each one failed this
test under "ci".
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import event as note_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from ledger_builders import transfer_request

from radical.orbit import protocol
from radical.orbit.daemon.globus.credentials import Secret
from radical.orbit.ledger import (
    CancelRequested,
    CancelResult,
    CredentialExpired,
    CredentialRefused,
    DeleteRequest,
    DeleteSubmitted,
    DuplicateSubmission,
    DuplicateTask,
    Event,
    FatalError,
    IllegalTransition,
    Ledger,
    RejectedEvent,
    SessionClosed,
    SessionOpened,
    StoredEvent,
    SubmissionResolved,
    SubmitFailed,
    SubmitRequested,
    TaskProgress,
    TaskStateChanged,
    TaskSubmitted,
    UnknownSubmission,
    UnknownTask,
    fold,
)
from radical.orbit.ledger.fold import step

SUBMISSIONS = [f"sub-{i}" for i in range(6)]
TASKS = [f"task-{i}" for i in range(6)]
SESSIONS = ["s1", "s2"]
STATUSES = list(protocol.STATUSES)
TERMINAL = protocol.TERMINAL_STATUSES
CANCEL_KINDS = ("cancel_requested", "cancel_result")  # they say nothing of a task's state
# Long enough to be registered as live secrets, distinctive enough to grep the file for.
TOKENS = ["AgTOKEN-never-in-ledger-0001", "AgTOKEN-never-in-ledger-0002"]


class Model:
    """What the ledger should hold, kept with plain dicts and no ledger code."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}  # task_id -> status
        self.task_sessions: dict[str, str | None] = {}  # task_id -> its session
        self.submissions: dict[str, str] = {}  # submission_id -> pending/submitted/failed
        self.open_sessions: dict[str, str | None] = {}  # session_id -> local_collection
        self.pending_cancels: dict[str, str | None] = {}  # task_id -> session of the cancel

    def copy(self) -> Model:
        other = Model()
        other.tasks = dict(self.tasks)
        other.task_sessions = dict(self.task_sessions)
        other.submissions = dict(self.submissions)
        other.open_sessions = dict(self.open_sessions)
        other.pending_cancels = dict(self.pending_cancels)
        return other

    def refusal(self, event: Event) -> type[RejectedEvent] | None:
        """The error the ledger must raise for ``event``, or None (then it is applied)."""
        if isinstance(event, SubmitRequested):
            if event.submission_id in self.submissions:
                return DuplicateSubmission
            self.submissions[event.submission_id] = "pending"
        elif isinstance(event, TaskSubmitted | DeleteSubmitted | SubmitFailed):
            state = self.submissions.get(event.submission_id)
            if state is None:
                return UnknownSubmission
            if state != "pending":
                return SubmissionResolved
            if isinstance(event, SubmitFailed):
                self.submissions[event.submission_id] = "failed"
            else:
                if event.task_id in self.tasks:
                    return DuplicateTask
                self.submissions[event.submission_id] = "submitted"
                self.tasks[event.task_id] = event.status
                self.task_sessions[event.task_id] = event.session_id
        elif isinstance(event, TaskProgress | TaskStateChanged):
            status = self.tasks.get(event.task_id)
            if status is None:
                return UnknownTask
            if status in TERMINAL:
                return IllegalTransition
            self.tasks[event.task_id] = event.status
        elif isinstance(event, CancelRequested | CancelResult):
            if event.task_id not in self.tasks:
                return UnknownTask
            if isinstance(event, CancelRequested):
                session_id = event.session_id
                self.pending_cancels.pop(event.task_id, None)  # a new request goes last
                self.pending_cancels[event.task_id] = (
                    session_id if session_id is not None else self.task_sessions[event.task_id]
                )
            else:
                self.pending_cancels.pop(event.task_id, None)
        elif isinstance(event, SessionOpened) and event.session_id is not None:
            self.open_sessions.pop(event.session_id, None)  # reopening goes last
            self.open_sessions[event.session_id] = event.local_collection
        elif isinstance(event, SessionClosed) and event.session_id is not None:
            self.open_sessions.pop(event.session_id, None)
        return None


sessions = st.sampled_from(SESSIONS)
labels = st.one_of(st.none(), st.sampled_from(["alpha", "beta-1", "beta-2", "x*y"]))
counters = st.integers(min_value=0, max_value=2**40)


def _known_or_any(known: list[str], pool: list[str]) -> st.SearchStrategy[str]:
    # Mostly ids the model knows, so that valid transitions are common; sometimes any id, so
    # that unknown and duplicate ids are exercised too.
    if not known:
        return st.sampled_from(pool)
    return st.one_of(st.sampled_from(sorted(known)), st.sampled_from(known), st.sampled_from(pool))


def events(model: Model) -> st.SearchStrategy[Event]:
    """Events biased towards the model's live ids (snapshot taken when called)."""
    pending = [k for k, v in model.submissions.items() if v == "pending"]
    unused = [k for k in SUBMISSIONS if k not in model.submissions]
    live = [k for k, v in model.tasks.items() if v not in TERMINAL]
    free = [k for k in TASKS if k not in model.tasks]
    new_submissions = _known_or_any(unused, SUBMISSIONS)
    open_submissions = _known_or_any(pending, SUBMISSIONS)
    new_tasks = _known_or_any(free, TASKS)
    tasks = _known_or_any(live, TASKS)

    @st.composite
    def build(draw: st.DrawFn) -> Event:
        kind = draw(st.integers(0, 9))
        session_id = draw(sessions)
        if kind == 0:
            delete = draw(st.booleans())
            request: Any = (
                DeleteRequest(collection="c", paths=("/p",), label=draw(labels))
                if delete
                else transfer_request(draw(labels))
            )
            return SubmitRequested(
                session_id=session_id,
                owner="alice",
                submission_id=draw(new_submissions),
                type="DELETE" if delete else "TRANSFER",
                request=request,
            )
        if kind in (1, 2):
            cls = TaskSubmitted if kind == 1 else DeleteSubmitted
            return cls(
                session_id=session_id,
                owner="alice",
                submission_id=draw(open_submissions),
                task_id=draw(new_tasks),
                label=draw(labels),
                status=draw(st.sampled_from(STATUSES)),
            )
        if kind == 3:
            return SubmitFailed(
                session_id=session_id, submission_id=draw(open_submissions), code="C"
            )
        task_id = draw(tasks)
        if kind in (4, 5):
            return TaskProgress(
                task_id=task_id,
                status=draw(st.sampled_from(["ACTIVE", "INACTIVE"])),
                bytes_transferred=draw(counters),
                files_transferred=draw(counters),
                label=draw(labels),
            )
        if kind == 6:
            status = draw(st.sampled_from(STATUSES))
            fatal = (
                FatalError(code="ENDPOINT_ERROR", description="d") if status == "FAILED" else None
            )
            return TaskStateChanged(
                task_id=task_id,
                status=status,
                nice_status=draw(st.one_of(st.none(), st.just("OK"))),
                bytes_transferred=draw(counters),
                files_transferred=draw(counters),
                fatal_error=fatal,
            )
        if kind == 7:
            return CancelRequested(session_id=session_id, task_id=task_id)
        if kind == 8:
            return CancelResult(session_id=session_id, task_id=task_id, code="Canceled")
        return draw(
            st.sampled_from(
                [
                    SessionOpened(
                        session_id=session_id,
                        auth="refresh_token",
                        local_collection=draw(st.sampled_from(["lc", "other"])),
                    ),
                    SessionClosed(session_id=session_id),
                    CredentialExpired(session_id=session_id, message="token expired"),
                ]
            )
        )

    return build()


# Each example's ledger lives in RAM where there is a tmpfs: every append commits with an
# fsync, which on a disk costs several times the append itself, and what this test checks
# does not depend on it (surviving a crash is tests/ledger/test_crash.py's subject).
_RAM = Path("/dev/shm")
_FOLDER = _RAM if _RAM.is_dir() and os.access(_RAM, os.W_OK) else None


@functools.cache
def _empty_ledger() -> Path:
    """A ledger file with every migration applied and no event, made once per run: each
    example starts from a copy instead of migrating a new file (the migrations are
    test_migrations.py's subject)."""
    path = Path(tempfile.mkdtemp(prefix="ledger-sm-empty-", dir=_FOLDER)) / "empty.db"
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(loop.run_until_complete(Ledger.open(path)).close())
    finally:
        loop.close()
    atexit.register(shutil.rmtree, path.parent, ignore_errors=True)
    return path


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ledger-sm-", dir=_FOLDER))
        self.path = self.folder / "ledger.db"
        shutil.copyfile(_empty_ledger(), self.path)
        self.loop = asyncio.new_event_loop()
        self.ledger = self.run(self._open())
        self.model = Model()
        self.log: list[StoredEvent] = []
        self.high = 0  # the highest seq ever acknowledged
        # fold(self.log) and each task's last state-bearing commit time, kept as events are
        # acknowledged rather than recomputed from the whole log after every step.
        self.folded = fold(())
        self.observed: dict[str, float] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> Ledger:
        # A tiny page size makes every replay cross page boundaries.
        return await Ledger.open(self.path, page_size=3)

    def teardown(self) -> None:
        try:
            self.run(self.ledger.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _acknowledged(self, stored: list[StoredEvent]) -> None:
        for event in stored:
            assert event.seq > self.high, "a seq was handed out twice or went backwards"
            self.high = event.seq
            self.log.append(event)
            step(self.folded, event.event(), seq=event.seq, time=event.time)
            if event.task_id is not None and event.kind not in CANCEL_KINDS:
                self.observed[event.task_id] = event.time

    # --- rules ---------------------------------------------------------------------------

    @rule(data=st.data())
    def append_one(self, data: st.DataObject) -> None:
        event = data.draw(events(self.model))
        expected = self.model.refusal(event)
        note_event(f"{event.kind}: {expected.__name__ if expected else 'accepted'}")
        try:
            stored = self.run(self.ledger.append(event))
        except RejectedEvent as exc:
            assert type(exc) is expected, (exc, expected)
            return
        assert expected is None, f"{event} was accepted, expected {expected}"
        assert stored.event() == _with_envelope(event, stored)
        self._acknowledged([stored])

    @rule(data=st.data())
    def append_all_or_nothing(self, data: st.DataObject) -> None:
        # Drawn against the model as it is: later events of the batch may refer to ids that
        # only earlier ones create, or be refused, which must then undo the whole batch.
        batch = data.draw(st.lists(events(self.model), min_size=1, max_size=4))
        trial = self.model.copy()
        expected = next((err for e in batch if (err := trial.refusal(e)) is not None), None)
        try:
            stored = self.run(self.ledger.append_many(batch))
        except RejectedEvent as exc:
            assert type(exc) is expected, (exc, expected)
            return
        assert expected is None
        self.model = trial
        assert len(stored) == len(batch)
        self._acknowledged(stored)

    @rule(data=st.data())
    def append_concurrently(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(events(self.model), min_size=2, max_size=8))
        # Appends made together share group commits; each is judged on its own, in order.
        expected = [self.model.refusal(e) for e in batch]

        async def together() -> list[Any]:
            return await asyncio.gather(
                *(self.ledger.append(e) for e in batch), return_exceptions=True
            )

        results = self.run(together())
        accepted = []
        for result, want in zip(results, expected, strict=True):
            if isinstance(result, BaseException):
                assert type(result) is want, (result, want)
            else:
                assert want is None, f"accepted, expected {want}"
                accepted.append(result)
        assert [s.seq for s in accepted] == sorted(s.seq for s in accepted)
        self._acknowledged(accepted)

    @rule(token=st.sampled_from(TOKENS), which=st.integers(0, 2))
    def credential_is_refused(self, token: str, which: int) -> None:
        secret = Secret(token)
        try:
            if which == 0:
                SessionOpened(session_id="s1", auth="access_token", local_collection=secret)  # type: ignore[arg-type]
            elif which == 1:
                CredentialExpired(session_id="s1", message=secret)  # type: ignore[arg-type]
            else:
                transfer = transfer_request()
                SubmitRequested(
                    submission_id="sub-x",
                    type="TRANSFER",
                    request=type(transfer)(
                        source="a",
                        destination="b",
                        items=(secret,),  # type: ignore[arg-type]
                    ),
                )
        except CredentialRefused as exc:
            assert token not in str(exc)
        else:
            raise AssertionError("an event accepted a Secret")

    @rule()
    def reopen(self) -> None:
        self.run(self.ledger.close())
        self.ledger = self.run(self._open())
        assert self.run(self.ledger.head()) == self.high

    @rule()
    def rebuild(self) -> None:
        before = self.run(self.ledger.projection_snapshot())
        self.run(self.ledger.rebuild_projections())
        assert self.run(self.ledger.projection_snapshot()) == before

    @precondition(lambda self: self.high > 0)
    @rule(data=st.data())
    def replay_from_cursor(self, data: st.DataObject) -> None:
        cursor = data.draw(st.integers(min_value=0, max_value=self.high + 2))
        got = self.run(_collect(self.ledger, cursor))
        assert got == [e for e in self.log if e.seq > cursor]

    # --- invariants ----------------------------------------------------------------------

    async def _read(self) -> list[Any]:
        """Everything the invariant compares, read concurrently in one run of the loop
        (nothing is appended meanwhile)."""
        ledger = self.ledger
        return await asyncio.gather(
            # In one page: replay_from_cursor crosses the ledger's tiny pages.
            _collect(ledger, 0, page_size=len(self.log) + 1),
            ledger.head(),
            ledger.tasks(limit=1000),
            ledger.pending_submissions(),
            ledger.open_sessions(),
            ledger.pending_cancels(),
            *(ledger.pending_cancels(session_id=s) for s in SESSIONS),
        )

    @invariant()
    def projection_is_the_fold_of_the_events(self) -> None:
        replayed, head, rows, pending, sessions, cancels, *by_session = self.run(self._read())
        assert replayed == self.log
        seqs = [e.seq for e in replayed]
        assert seqs == sorted(set(seqs))
        assert head == self.high
        # replayed == self.log, so this is the fold of the replayed events.
        folded = self.folded
        assert {r.task_id: r for r in rows} == folded.tasks
        assert {r.task_id: r.status for r in rows} == self.model.tasks
        assert pending == [s for s in folded.submissions.values() if s.state == "pending"]
        assert {s.submission_id for s in pending} == {
            k for k, v in self.model.submissions.items() if v == "pending"
        }
        # The last observation: the time of the task's last state-bearing event.
        assert {t: r.observed_time for t, r in folded.tasks.items()} == self.observed
        assert sessions == sorted(
            (r for r in folded.sessions.values() if r.state == "open"),
            key=lambda r: r.opened_seq,
        )
        assert {r.session_id: r.local_collection for r in sessions} == self.model.open_sessions
        assert [r.session_id for r in sessions] == list(self.model.open_sessions)
        assert cancels == sorted(
            (c for c in folded.cancels.values() if c.state == "pending"),
            key=lambda c: c.requested_seq,
        )
        assert [(c.task_id, c.session_id) for c in cancels] == list(
            self.model.pending_cancels.items()
        )
        for session_id, mine in zip(SESSIONS, by_session, strict=True):
            assert [c.task_id for c in mine] == [
                t for t, s in self.model.pending_cancels.items() if s == session_id
            ]

    @invariant()
    def no_credential_on_disk(self) -> None:
        for file in self.folder.iterdir():
            content = file.read_bytes()
            for token in TOKENS:
                assert token.encode() not in content


async def _collect(
    ledger: Ledger, cursor: int, *, page_size: int | None = None
) -> list[StoredEvent]:
    return [e async for e in ledger.events_since(cursor, page_size=page_size)]


def _with_envelope(event: Event, stored: StoredEvent) -> Event:
    """``event`` as stored: task events inherit owner/session_id from their task."""
    return type(event)(
        **{
            **{f.name: getattr(event, f.name) for f in dataclasses.fields(event)},
            "owner": stored.owner,
            "session_id": stored.session_id,
        }
    )


LedgerMachine.TestCase.settings = settings(stateful_step_count=40)
TestLedgerStateMachine = LedgerMachine.TestCase
