"""Pieces shared by the reliability campaigns: the machine line, tables, daemon memory, a
read-only view of the daemon's ledger, and a recorder of the in-process simulator's requests.

The campaigns read the ledger file with the sqlite3 module directly (read-only, WAL
readers never block the daemon's writer) instead of through the daemon: what they check is
what is on disk, which is what a crash leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from radical.orbit import GlobusClient
from radical.orbit.client.errors import OrbitError
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.protocol import TERMINAL_STATUSES
from radical.orbit.simulator.auth import Credentials

# The machine line is benchmarks/run.py's, so every published figure names it the same way;
# the simulator + daemon set-up and the process measures are the benchmarks' too.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import cpu_seconds, quiet_logs, rss_mb, simulated_daemon
from run import machine

__all__ = [
    "Ack",
    "LedgerView",
    "Memory",
    "Outcome",
    "Producer",
    "RequestRecorder",
    "SubmitTally",
    "cpu_seconds",
    "machine",
    "markdown_table",
    "memory_mb",
    "pick_seed",
    "recording_simulator_requests",
    "report",
    "rss_mb",
    "run_campaign",
    "simulated_daemon",
    "start_registered",
    "unsettled",
    "wait_settled",
    "wait_until",
]

T = TypeVar("T")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (it reads fine on a terminal and pastes into the docs as is)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


@dataclass(frozen=True)
class Memory:
    """A process's resident memory in MB, split as /proc/<pid>/status does.

    ``anon`` (RssAnon) is the heap and stacks: what a leak grows. ``file`` (RssFile) is
    file pages mapped into the process, its shared libraries and the ledger's readers'
    ``mmap_size`` window: it follows the ledger file's size and the kernel may drop it.
    """

    vm_rss: float
    anon: float
    file: float


def memory_mb(pid: int) -> Memory:
    """VmRSS, RssAnon and RssFile of a process in MB; NaN when it is gone."""
    fields: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    nan = float("nan")
    return Memory(
        vm_rss=fields.get("VmRSS", nan),
        anon=fields.get("RssAnon", nan),
        file=fields.get("RssFile", nan),
    )


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, every: float = 0.25, what: str = ""
) -> T:
    """Call ``probe`` until it returns something truthy; TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what or probe}")
        time.sleep(every)


@dataclass(frozen=True)
class LedgerTask:
    task_id: str
    submission_id: str
    session_id: str | None
    status: str
    label: str | None


@dataclass(frozen=True)
class LedgerSubmission:
    submission_id: str
    session_id: str | None
    state: str
    task_id: str | None
    label: str | None


@dataclass(frozen=True)
class Ack:
    """A submit the client was told about: a task_id, or 503 SubmitPending (task_id None)."""

    label: str
    submission_id: str
    task_id: str | None

    @classmethod
    def of(cls, label: str, answer: dict[str, Any]) -> Ack:
        """The acknowledgement in a submit's answer (no task_id yet when it is QUEUED)."""
        task_id = answer.get("task_id")
        return cls(label, str(answer["submission_id"]), str(task_id) if task_id else None)


class Producer(threading.Thread):
    """One client of a campaign, in a thread: its own GlobusClient, simulator user and
    session. It registers (again every ``register_every`` s until the daemon takes it), then
    submits in :meth:`produce` until ``stop`` is set, recording what it was told."""

    register_every = 0.5
    local_collection: str | None = None

    def __init__(
        self,
        *,
        campaign: str,
        index: int,
        daemon: DaemonProcess,
        creds: Credentials,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"{campaign}-producer-{index}", daemon=True)
        self.campaign = campaign
        self.index = index
        self.endpoint = daemon  # (``self.daemon`` is the thread's daemon flag)
        self.creds = creds
        self.stop = stop
        self.session_id: str | None = None
        self.registered = threading.Event()
        self.acks: list[Ack] = []
        self.attempts = 0
        self.errors: Counter[str] = Counter()

    def connect(self) -> GlobusClient:
        """The producer's client of ``endpoint`` (its timeouts are the campaign's choice)."""
        raise NotImplementedError

    def produce(self, globus: GlobusClient) -> None:
        raise NotImplementedError

    def run(self) -> None:
        with self.connect() as globus:
            while not self.stop.is_set():
                try:
                    globus.register_session(
                        access_token=self.creds.access_token, local_collection=self.local_collection
                    )
                    break
                except OrbitError as exc:
                    self.errors[f"register {type(exc).__name__}"] += 1
                    self.stop.wait(self.register_every)
            self.session_id = globus.session_id
            self.registered.set()
            self.produce(globus)

    def next_label(self) -> str:
        """A label of its own for the next submit (one label with two Globus tasks is a
        submission executed twice); counts the attempt."""
        label = f"{self.campaign}-{self.index}-{self.attempts}"
        self.attempts += 1
        return label


def start_registered(producers: Sequence[Producer], *, timeout: float) -> None:
    """Start every producer and wait until each has a session."""
    for p in producers:
        p.start()
    for p in producers:
        if not p.registered.wait(timeout):
            raise TimeoutError(f"{p.name} could not register a session")


@dataclass(kw_only=True)
class SubmitTally:
    """What the producers' submits came to: attempts, acknowledgements, error answers by
    kind, and the acknowledged submits the ledger or the simulator lost."""

    attempts: int = 0
    acked_with_task: int = 0
    acked_pending: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)

    @property
    def acknowledged(self) -> int:
        return self.acked_with_task + self.acked_pending

    def count(self, producers: Sequence[Producer], outcome: Outcome) -> None:
        for p in producers:
            self.attempts += p.attempts
            self.errors.update(p.errors)
            self.acked_pending += sum(a.task_id is None for a in p.acks)
            self.acked_with_task += sum(a.task_id is not None for a in p.acks)
            self.lost += outcome.lost(p.acks)

    def error_kinds(self) -> str:
        """The error answers by kind, for a table cell."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"

    def problems(self) -> list[str]:
        if self.lost:
            return [f"{len(self.lost)} acknowledged submits lost: {self.lost[:5]}"]
        return []


@dataclass(frozen=True)
class Outcome:
    """What a campaign left behind, read once it is over: the simulator's tasks of the
    campaign's users (Globus's truth, by task_id), the ledger's tasks and submissions."""

    sim_tasks: dict[str, Any]
    tasks: dict[str, LedgerTask]
    submissions: dict[str, LedgerSubmission]

    @classmethod
    def read(cls, sim: Any, view: LedgerView, users: set[str]) -> Outcome:
        docs = {d["task_id"]: d for d in sim.tasks() if d["username"] in users}
        return cls(docs, view.tasks(), view.submissions())

    def lost(self, acks: Sequence[Ack]) -> list[str]:
        """Acknowledged submits without their submitted submission and task, in the ledger
        and in the simulator; one line per loss saying what is missing."""
        lost = []
        for ack in acks:
            sub = self.submissions.get(ack.submission_id)
            if sub is None or sub.state != "submitted" or sub.task_id is None:
                state = sub.state if sub else "absent"
                lost.append(f"{ack.label}: submission {state} in the ledger")
            elif ack.task_id is not None and sub.task_id != ack.task_id:
                lost.append(f"{ack.label}: answered {ack.task_id}, ledger {sub.task_id}")
            elif sub.task_id not in self.tasks:
                lost.append(f"{ack.label}: task {sub.task_id} not in the ledger")
            elif sub.task_id not in self.sim_tasks:
                lost.append(f"{ack.label}: task {sub.task_id} not in the simulator")
        return lost

    def off_truth(self) -> list[str]:
        """Simulator tasks missing from the ledger or with another status there; one line
        each."""
        out = []
        for task_id, doc in self.sim_tasks.items():
            row = self.tasks.get(task_id)
            if row is None:
                out.append(f"{task_id} ({doc['label']}): not in the ledger")
            elif row.status != doc["status"]:
                out.append(f"{task_id}: ledger {row.status}, simulator {doc['status']}")
        return out


class Verdict(Protocol):
    def table(self) -> str: ...
    def problems(self) -> list[str]: ...


def pick_seed(seed: int | None) -> int:
    """The seed asked for, or a random one (printed, so that a run can be repeated)."""
    return seed if seed is not None else random.SystemRandom().randrange(2**32)


def run_campaign(run: Callable[[Path], Verdict], *, success: str, seed: int | None = None) -> int:
    """A campaign's main: the machine line (and the seed to rerun with), ``run`` in a
    temporary folder with this process's logs quiet, then its report; the exit status."""
    quiet_logs()
    print(f"machine: {machine()}", flush=True)
    if seed is not None:
        print(f"seed: {seed} (rerun with --seed {seed})", flush=True)
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        result = run(Path(tmp))
    return report(result, success=success)


def report(result: Verdict, *, success: str) -> int:
    """Print the result's table and problems; the exit status (1 if any problem)."""
    print(result.table())
    problems = result.problems()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"\n{success}" if not problems else "\nCAMPAIGN FAILED")
    return 1 if problems else 0


class LedgerView:
    """Read-only snapshots of a daemon's ``ledger.db`` (the daemon may be running)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        # mode=ro: a campaign must never be the one that writes (or repairs) the ledger.
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: "ok", or SQLite's list of problems."""
        with contextlib.closing(self._connect()) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def tasks(self) -> dict[str, LedgerTask]:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute(
                "SELECT task_id, submission_id, session_id, status, label FROM tasks"
            ).fetchall()
        return {r[0]: LedgerTask(*r) for r in rows}

    def submissions(self) -> dict[str, LedgerSubmission]:
        with contextlib.closing(self._connect()) as db:
            # The request is stored once, in the submission's submit_requested event.
            rows = db.execute(
                "SELECT s.submission_id, s.session_id, s.state, s.task_id, e.data "
                "FROM submissions s LEFT JOIN events e ON e.seq = s.requested_seq"
            ).fetchall()
        out: dict[str, LedgerSubmission] = {}
        for sub_id, session_id, state, task_id, data in rows:
            label = json.loads(data or "{}").get("request", {}).get("label")
            out[sub_id] = LedgerSubmission(sub_id, session_id, state, task_id, label)
        return out


class RequestRecorder:
    """Transfer API requests the simulator answered, from its ``request`` log lines.

    Per second, per user and per route: requests, and 429s of the simulator's own rate
    limiter (those carry the authenticated user; an injected fault is answered before
    authentication, so its line has no user and is counted apart, by status).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.per_user: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.per_route: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.unattributed: Counter[int] = Counter()
        self.rate_limited: Counter[str] = Counter()
        self.injected: Counter[int] = Counter()
        self.total = 0

    def record(self, fields: dict[str, Any]) -> None:
        if fields.get("route") in (None, "control", "unknown", "oauth2_token"):
            return
        if str(fields.get("route", "")).startswith("oauth2"):
            return
        second = int(time.time())
        user = fields.get("user")
        status = int(fields.get("status") or 0)
        with self._lock:
            self.total += 1
            self.per_route[str(fields.get("route"))][second] += 1
            if user is None:
                self.unattributed[second] += 1
                if status >= 400:
                    self.injected[status] += 1
                return
            self.per_user[str(user)][second] += 1
            if status == 429:
                self.rate_limited[str(user)] += 1

    @staticmethod
    def _peak(buckets: Counter[int], window: int) -> float:
        if not buckets:
            return 0.0
        first, last = min(buckets), max(buckets)
        best = 0
        for start in range(first, last + 1):
            best = max(best, sum(buckets[s] for s in range(start, start + window)))
        return best / window

    def peak_per_user(self, window: int = 10) -> dict[str, float]:
        """Highest mean req/s of each user over any ``window`` consecutive seconds."""
        with self._lock:
            return {u: self._peak(b, window) for u, b in self.per_user.items()}

    def peak_per_route(self, window: int = 10) -> dict[str, float]:
        """Highest mean req/s of each route (all users) over any ``window`` seconds."""
        with self._lock:
            return {r: self._peak(b, window) for r, b in self.per_route.items()}

    def peak_bound(self, window: int = 10) -> float:
        """Worst case per user: a user's requests plus every unattributed one, per window."""
        with self._lock:
            worst = 0.0
            for buckets in self.per_user.values():
                merged = buckets + self.unattributed
                worst = max(worst, self._peak(merged, window))
            return worst


@contextmanager
def recording_simulator_requests() -> Iterator[RequestRecorder]:
    """Route the in-process simulator's log lines into a :class:`RequestRecorder`.

    Every other log line of this process is dropped (the tables stay readable); the previous
    structlog configuration comes back afterwards.
    """
    recorder = RequestRecorder()

    def capture(_logger: Any, _method: str, event: Any) -> Any:
        if event.get("event") == "request":
            recorder.record(event)
        raise structlog.DropEvent

    saved = structlog.get_config()
    # Every level reaches the capture, however quiet this process's logs were made before.
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=False,
    )
    try:
        yield recorder
    finally:
        structlog.configure(**saved)


TERMINAL = TERMINAL_STATUSES


def unsettled(sim: Any, view: LedgerView, users: set[str]) -> list[str]:
    """What keeps the daemon from having settled for ``users``; empty once it has.

    Settled: no submission pending, every simulator task ended and recorded in that state.
    """
    out = [
        f"submission {s.submission_id} pending"
        for s in view.submissions().values()
        if s.state in ("pending", "queued")
    ]
    tasks = view.tasks()
    for d in sim.tasks():
        if d["username"] not in users:
            continue
        row = tasks.get(d["task_id"])
        if d["status"] not in TERMINAL:
            out.append(f"task {d['task_id']} still {d['status']} in the simulator")
        elif row is None or row.status != d["status"]:
            out.append(
                f"task {d['task_id']} {d['status']} in the simulator,"
                f" {row.status if row else 'missing'} in the ledger"
            )
    return out


def wait_settled(sim: Any, view: LedgerView, users: set[str], *, timeout: float) -> None:
    """Wait until :func:`unsettled` is empty; TimeoutError says what was still open."""
    deadline = time.monotonic() + timeout
    while open_ := unsettled(sim, view, users):
        if time.monotonic() > deadline:
            shown = "; ".join(open_[:10])
            raise TimeoutError(
                f"not settled after {timeout:g} s: {len(open_)} open, first: {shown}"
            )
        time.sleep(1.0)
