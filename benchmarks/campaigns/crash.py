"""Crash campaign: concurrent clients submit while the daemon is killed.

Client threads, each with its own ``GlobusClient``, its own simulator user and its own
session, submit transfers as fast as the daemon answers. The real daemon process is killed
with SIGKILL at seeded random moments and started again on the same state folder, ``rounds``
times; clients re-register by themselves (the client hands its credential over again when
the daemon answers ``CredentialMissing``). The clients stop while the daemon lies dead after
the last kill; it is started once more, every session is registered again, and the campaign
waits until the daemon has settled: no submission pending, every simulator task ended and
recorded.

An *acknowledged submit* is one whose client got a task_id (or QUEUED), or a 503
SubmitPending with a submission_id (the daemon promises to finish it). Every submit carries a
label of its own, so one label with two Globus tasks is a submission executed twice.

With ``library_retries`` (the default, ``--no-library-retries`` for the old behaviour) the
clients use the library's own retries (issue 14): a submit is repeated with its
submission_id through kills, restarts and SubmitPending until it has an answer or
``submit_timeout`` passed. Then every call should end with an answer; a call that ends in an
error counts as *resolved* only if its fate is known after the campaign (the ledger has its
submission and Globus its one task, or neither has anything). Reported:

- acknowledged submits lost: not in the ledger as submitted after the final restart, or
  their task missing from the ledger or from the simulator (target 0);
- client errors without a resolved outcome (target 0), and the calls that rode through a
  kill (the library's retries at work);
- duplicate Globus tasks for one submission (target 0);
- ``PRAGMA integrity_check`` failures, checked on the ledger file after every kill (0);
- simulator tasks left untracked: missing from the ledger, or with another status (0).

Run: ``python benchmarks/campaigns/crash.py [--rounds 15] [--clients 8] [--seed N]``. The
kill moments and the simulator's fault draws come from the printed seed; thread scheduling
adds its own variation. In a share of the rounds (``--outage-rounds``, default 0.4) the
daemon lives longer (4-6 s) and the simulator answers every submit request with 503 for
its first 4 s (longer than the SDK's retries, about 3 s): the submits in flight are
acknowledged as SubmitPending, and their background retries are then cut by the kill.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign_common import (
    Ack,
    LedgerView,
    Outcome,
    Producer,
    SubmitTally,
    markdown_table,
    pick_seed,
    run_campaign,
    simulated_daemon,
    start_registered,
    wait_settled,
)

from radical.orbit import GlobusClient
from radical.orbit.client.errors import (
    DaemonUnavailable,
    OrbitError,
    RequestError,
    SubmitPendingError,
    SubmitUnresolved,
)
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2

__all__ = ["CrashConfig", "CrashResult", "run_crash"]

SOURCE_FILE = "/home/share/godata/file1.txt"


@dataclass(frozen=True, kw_only=True)
class CrashConfig:
    rounds: int = 15
    clients: int = 8
    seed: int = 0
    # The daemon lives this long (uniform, seconds) between its start and the next kill.
    uptime: tuple[float, float] = (0.5, 4.0)
    # Tasks stay ACTIVE this long in the simulator, so kills also hit running tasks.
    task_seconds: float = 1.0
    poll_interval: float = 0.2
    # Added to every simulator request: widens the window between a submit's two ledger
    # appends, where a kill leaves a submission pending.
    latency: float = 0.05
    # Share of rounds in which the daemon lives ``outage_uptime`` and the simulator answers
    # every submit_transfer with 503 for its first ``outage`` seconds: longer than the SDK's
    # retries, so submits end as 503 SubmitPending (retried in the background, across
    # kills, resumed at re-registration).
    outage_rounds: float = 0.4
    outage: float = 4.0
    outage_uptime: tuple[float, float] = (4.0, 6.0)
    settle_timeout: float = 120.0
    # Clients repeat a submit with its submission_id until they have an answer (issue 14).
    library_retries: bool = True
    submit_timeout: float = 90.0


class CrashProducer(Producer):
    """Submits as fast as the daemon answers."""

    register_every = 0.1
    local_collection = TUTORIAL_COLLECTION_2

    def __init__(self, *, retries: bool, submit_timeout: float, **common: Any) -> None:
        super().__init__(campaign="crash", **common)
        self.unavailable = 0
        # With the library's retries: calls that ended in an error, by (label, submission_id
        # or None), judged after the campaign; and (start, end) of every call.
        self.failed: list[tuple[str, str | None, str]] = []
        self.calls: list[tuple[float, float]] = []
        self.retries = retries
        # Without the library's retries a call gives up at the first failure (the old
        # campaign); with them it keeps the same submission_id until an answer.
        self.submit_timeout = submit_timeout if retries else 0.0

    def connect(self) -> GlobusClient:
        return GlobusClient(
            self.endpoint.url, self.endpoint.token, timeout=15, submit_timeout=self.submit_timeout
        )

    def produce(self, globus: GlobusClient) -> None:
        while not self.stop.is_set():
            label = self.next_label()
            item = {"source": SOURCE_FILE, "destination": f"/~/crash/{label}.txt"}
            began = time.monotonic()
            try:
                answer = globus.submit_transfer(
                    TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, [item], label=label
                )
            except SubmitUnresolved as exc:
                if self.retries:
                    self.failed.append((label, exc.submission_id, "SubmitUnresolved"))
                    self.errors["SubmitUnresolved"] += 1
                else:
                    self._count(exc.last_error, label)
            except OrbitError as exc:
                if self.retries:
                    self.failed.append((label, None, type(exc).__name__))
                self._count(exc, label)
            else:
                self.acks.append(Ack.of(label, answer))
            finally:
                self.calls.append((began, time.monotonic()))

    def _count(self, exc: BaseException, label: str) -> None:
        """A call that gave up: an acknowledgement (SubmitPending) or an error by kind."""
        if isinstance(exc, SubmitPendingError):
            if exc.submission_id:
                self.acks.append(Ack(label, exc.submission_id, None))
            else:
                self.errors["SubmitPending without submission_id"] += 1
            return
        if isinstance(exc, DaemonUnavailable):
            self.unavailable += 1
        elif isinstance(exc, RequestError):
            self.errors[exc.code] += 1
        else:
            self.errors[type(exc).__name__] += 1
        self.stop.wait(0.05)


@dataclass(kw_only=True)
class CrashResult(SubmitTally):
    config: CrashConfig
    seconds: float = 0.0
    unavailable: int = 0
    integrity_checks: int = 0
    integrity_failures: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    sim_tasks: int = 0
    ledger_tasks: int = 0
    pending_at_final_restart: int = 0
    pending_after_kills: int = 0
    outage_rounds: int = 0
    settle_seconds: float = 0.0
    # With the library's retries: calls that ended in an error, and those of them whose
    # fate is not known after the campaign; calls that were under way across a kill.
    client_errors: int = 0
    unresolved: list[str] = field(default_factory=list)
    rode_through_kill: int = 0
    kills: list[float] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = super().problems()
        if self.duplicates:
            out.append(f"{len(self.duplicates)} submissions with two tasks: {self.duplicates[:5]}")
        if self.integrity_failures:
            out.append(f"integrity_check failed: {self.integrity_failures[:3]}")
        if self.untracked:
            out.append(f"{len(self.untracked)} tasks untracked: {self.untracked[:5]}")
        if self.unresolved:
            out.append(f"{len(self.unresolved)} client errors unresolved: {self.unresolved[:5]}")
        if self.acknowledged == 0:
            out.append("no submit was acknowledged: the campaign tested nothing")
        return out

    def table(self) -> str:
        cfg = self.config
        rows: list[tuple[str, object, str]] = [
            ("seed", cfg.seed, ""),
            ("rounds (SIGKILL + restart)", cfg.rounds, ""),
            ("concurrent clients (threads, one session each)", cfg.clients, ""),
            (
                "rounds with a submit outage (503 for the first 4 s)",
                f"{self.outage_rounds} of {cfg.rounds}",
                "",
            ),
            ("duration (rounds + settle)", f"{self.seconds:.1f} s", ""),
            ("submit attempts", self.attempts, ""),
            ("acknowledged: task_id", self.acked_with_task, ""),
            ("acknowledged: 503 SubmitPending", self.acked_pending, ""),
            ("not acknowledged: daemon unreachable (down or killed)", self.unavailable, ""),
            ("other error answers", self.error_kinds(), ""),
            ("submissions found pending after a kill (sum)", self.pending_after_kills, ""),
            ("submissions pending at the final restart", self.pending_at_final_restart, ""),
            ("settle time after final restart", f"{self.settle_seconds:.1f} s", ""),
            ("simulator tasks / ledger tasks", f"{self.sim_tasks} / {self.ledger_tasks}", ""),
            (
                "tasks of submits whose answer a kill cut off (finished anyway)",
                self.sim_tasks - self.acknowledged,
                "",
            ),
            ("**acknowledged submits lost**", len(self.lost), "0"),
            ("**duplicate Globus tasks for one submission**", len(self.duplicates), "0"),
            (
                "**integrity_check failures**",
                f"{len(self.integrity_failures)} of {self.integrity_checks}",
                "0",
            ),
            ("**tasks untracked or in a wrong state**", len(self.untracked), "0"),
        ]
        if cfg.library_retries:
            rows[6:6] = [
                ("client library retries (submit_timeout)", f"on ({cfg.submit_timeout:g} s)", ""),
                ("calls under way across a kill (rode it out)", self.rode_through_kill, ""),
                ("calls that ended in a client error", self.client_errors, ""),
            ]
            rows.append(("**client errors without a resolved outcome**", len(self.unresolved), "0"))
        return markdown_table(["crash campaign", "measured", "target"], rows)


def _check_integrity(view: LedgerView, result: CrashResult, when: str) -> None:
    if not view.path.exists():
        return
    result.integrity_checks += 1
    verdict = view.integrity()
    if verdict != "ok":
        result.integrity_failures.append(f"{when}: {verdict}")


def run_crash(config: CrashConfig, *, root: Path, log: bool = False) -> CrashResult:
    """Run the campaign in ``root`` (simulator files and the daemon's state folder)."""
    rng = random.Random(config.seed)
    result = CrashResult(config=config)
    started = time.monotonic()
    say = print if log else (lambda *_a, **_k: None)
    with simulated_daemon(
        root,
        raised_pending=100_000,
        poll_interval=config.poll_interval,
        bytes_per_second=1e9,
        min_task_seconds=config.task_seconds,
        max_active=100_000,
        rate_limit=None,
        latency=config.latency,
        seed=config.seed,
    ) as (sim, daemon):
        view = LedgerView(daemon.state_dir / "ledger.db")
        users = [sim.add_user(f"crash{i}") for i in range(config.clients)]
        stop = threading.Event()
        outage = threading.Timer(0, lambda: None)
        producers = [
            CrashProducer(
                index=i,
                daemon=daemon,
                creds=creds,
                stop=stop,
                retries=config.library_retries,
                submit_timeout=config.submit_timeout,
            )
            for i, creds in enumerate(users)
        ]
        try:
            start_registered(producers, timeout=30)
            for n in range(1, config.rounds + 1):
                if rng.random() < config.outage_rounds:
                    result.outage_rounds += 1
                    sim.schedule_fault(route="submit_transfer", status=503, count=None)
                    outage = threading.Timer(config.outage, sim.clear_faults)
                    outage.start()
                    time.sleep(rng.uniform(*config.outage_uptime))
                    outage.cancel()
                    sim.clear_faults()
                else:
                    time.sleep(rng.uniform(*config.uptime))
                daemon.kill()
                result.kills.append(time.monotonic())
                _check_integrity(view, result, f"after kill {n}")
                pending = sum(s.state == "pending" for s in view.submissions().values())
                result.pending_after_kills += pending
                acks = sum(len(p.acks) for p in producers)
                say(f"round {n}/{config.rounds}: killed; {acks} acks, {pending} pending")
                if n == config.rounds:
                    # The last kill also hits clients in full flight; they stop while the
                    # daemon is down, and the final start must finish what they left.
                    # Clients with the library's retries are still repeating their last
                    # submit: they end once the daemon is back.
                    stop.set()
                    if not config.library_retries:
                        for p in producers:
                            p.join(30)
                    outage.cancel()
                    sim.clear_faults()
                    result.pending_at_final_restart = pending
                else:
                    time.sleep(rng.uniform(0.0, 0.3))
                    daemon.start()
            daemon.start()
            for p in producers:
                p.join(config.submit_timeout + 30)
            settle_start = time.monotonic()
            for p in producers:
                with GlobusClient(daemon.url, daemon.token, timeout=15) as globus:
                    globus.register_session(
                        access_token=p.creds.access_token, session_id=p.session_id
                    )
            names = {u.username for u in users}
            wait_settled(sim, view, names, timeout=config.settle_timeout)
            result.settle_seconds = time.monotonic() - settle_start
        finally:
            stop.set()
            outage.cancel()
            daemon.stop()
        _check_integrity(view, result, "after the final stop")
        _verdict(result, producers, Outcome.read(sim, view, {u.username for u in users}))
    result.seconds = time.monotonic() - started
    return result


def _verdict(result: CrashResult, producers: list[CrashProducer], outcome: Outcome) -> None:
    result.sim_tasks, result.ledger_tasks = len(outcome.sim_tasks), len(outcome.tasks)
    result.count(producers, outcome)
    result.unavailable += sum(p.unavailable for p in producers)
    labels = Counter(str(d["label"]) for d in outcome.sim_tasks.values())
    result.duplicates = sorted(label for label, n in labels.items() if n > 1)
    result.untracked = outcome.off_truth()
    subs = outcome.submissions
    by_label = {s.label: s for s in subs.values() if s.label is not None}
    for p in producers:
        result.rode_through_kill += sum(
            1 for began, ended in p.calls if any(began < k < ended for k in result.kills)
        )
        for label, submission_id, kind in p.failed:
            result.client_errors += 1
            # Resolved: the ledger has the submission submitted and Globus its one task, or
            # neither has anything of it.
            sub = subs.get(submission_id) if submission_id else by_label.get(label)
            ran = labels.get(label, 0)
            if sub is not None and sub.state == "submitted" and ran == 1:
                continue
            if sub is None and ran == 0:
                continue
            state = sub.state if sub is not None else "absent"
            result.unresolved.append(f"{label} ({kind}): ledger {state}, {ran} Globus task(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="kill/restart rounds")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument(
        "--outage-rounds", type=float, default=0.4, help="share of rounds with a submit outage"
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument(
        "--no-library-retries",
        action="store_true",
        help="clients give up at the first failure (the campaign before issue 14)",
    )
    parser.add_argument("--verbose", action="store_true", help="one line per round")
    args = parser.parse_args(argv)
    seed = pick_seed(args.seed)
    config = CrashConfig(
        rounds=args.rounds,
        clients=args.clients,
        outage_rounds=args.outage_rounds,
        seed=seed,
        library_retries=not args.no_library_retries,
    )
    return run_campaign(
        lambda root: run_crash(config, root=root, log=args.verbose),
        success="nothing lost, nothing doubled",
        seed=seed,
    )


if __name__ == "__main__":
    sys.exit(main())
