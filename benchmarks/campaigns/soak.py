"""Fault soak: minutes of Globus faults with hundreds of tasks in flight.

A few sessions (one simulator user each, one client thread each) keep submitting transfers
at a steady pace; every task stays ACTIVE ``task_seconds`` in the simulator, so hundreds are
in flight. A tenth of the submits name a missing source with a deadline a few seconds away
(Globus retries a missing source until the deadline, then fails it EXPIRED: a true FAILED),
and a controller fails a running task now and then (``fail_task``) and expires another's
credential for a few seconds (INACTIVE, then renewed: never terminal). Meanwhile the
simulator, with its 20 requests/s per user rate limit ON, answers a share of all requests
with 429/500/502/503/504, delays some by a second, holds a few past the daemon's 30 s HTTP
timeout (with ``timeouts``) and adds latency to all of them.

At the end the faults stop, the clients stop, INACTIVE tasks get their credential back, and
the campaign waits for the daemon to settle. Reported:

- false FAILED: tasks FAILED in the ledger but not in the simulator (target 0);
- tasks not in their true final state: missing from the ledger or another status (0);
- acknowledged submits lost (0);
- daemon memory, sampled every ``sample_every`` s from /proc/<pid>/status: RssAnon (the
  heap: what a leak grows) and VmRSS (RssAnon plus file pages mapped in, chiefly the
  ledger readers' memory-mapped window, which follows the ledger file's size), start/end/
  max and the slope (least squares, MB per minute) after the first quarter and over the
  second half; memory is flat when the RssAnon slope over the second half is under
  ``max_heap_slope``;
- Globus requests per user: peak mean req/s over any 10 s window (budget 20), the 429s the
  simulator's rate limiter answered (must be 0: the daemon stayed in budget), and the
  injected faults by status. A request hit by an injected fault is answered before
  authentication, so it has no user; the "bound" column adds all of those to each user.

Run: ``python benchmarks/campaigns/soak.py [--minutes 3] [--sessions 3] [--seed N]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from campaign_common import (
    Ack,
    LedgerView,
    Memory,
    Outcome,
    Producer,
    RequestRecorder,
    SubmitTally,
    markdown_table,
    memory_mb,
    pick_seed,
    recording_simulator_requests,
    run_campaign,
    simulated_daemon,
    start_registered,
    wait_settled,
)

from radical.orbit import GlobusClient
from radical.orbit.client.errors import OrbitError, RequestError, SubmitPendingError
from radical.orbit.protocol import TERMINAL_STATUSES
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

__all__ = ["SoakConfig", "SoakResult", "run_soak"]

GOOD_SOURCE = "/home/share/godata/file2.txt"
TERMINAL = TERMINAL_STATUSES
BUDGET = 20.0  # Globus Transfer: requests per second per user, over 10 s windows


@dataclass(frozen=True, kw_only=True)
class SoakConfig:
    seconds: float = 180.0
    sessions: int = 3
    # Submits per second per session; in flight ~ sessions x submit_rate x task_seconds.
    submit_rate: float = 3.0
    task_seconds: float = 60.0
    poll_interval: float = 2.0
    max_backoff: float = 60.0
    # Faults: share of all Transfer requests answered with an error, share delayed by
    # slow_delay seconds, and (timeouts) 1% of task_list/submit_transfer held 31 s.
    error_fraction: float = 0.15
    slow_fraction: float = 0.05
    slow_delay: float = 1.0
    timeouts: bool = True
    latency: float = 0.02
    bad_source_fraction: float = 0.1
    # A missing source is retried until its deadline, this many seconds after the submit.
    bad_source_deadline: float = 5.0
    # Every this many seconds the controller fails one running task and expires the
    # credential of another (INACTIVE for pause_seconds).
    disturb_every: float = 3.0
    pause_seconds: float = 5.0
    sample_every: float = 2.0
    settle_timeout: float = 240.0
    # Flat memory: RssAnon's least-squares slope over the second half, MB per minute.
    max_heap_slope: float = 0.5
    seed: int = 0


class SoakProducer(Producer):
    """Submits at a steady pace; a share of the submits name a missing source."""

    def __init__(self, *, config: SoakConfig, **common: Any) -> None:
        super().__init__(campaign="soak", **common)
        self.config = config
        self.rng = random.Random(config.seed * 1000 + self.index)

    def connect(self) -> GlobusClient:
        return GlobusClient(self.endpoint.url, self.endpoint.token, timeout=120)

    def produce(self, globus: GlobusClient) -> None:
        pace = 1.0 / self.config.submit_rate
        next_at = time.monotonic()
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + pace, time.monotonic())
            label = self.next_label()
            bad = self.rng.random() < self.config.bad_source_fraction
            source = f"/home/share/godata/missing-{label}.txt" if bad else GOOD_SOURCE
            item = {"source": source, "destination": f"/~/soak/{label}.txt"}
            deadline = (
                datetime.now(UTC) + timedelta(seconds=self.config.bad_source_deadline)
                if bad
                else None
            )
            try:
                answer = globus.submit_transfer(
                    TUTORIAL_COLLECTION_1,
                    TUTORIAL_COLLECTION_2,
                    [item],
                    label=label,
                    deadline=deadline,
                )
            except SubmitPendingError as exc:
                self.acks.append(Ack(label, exc.submission_id or "?", None))
            except RequestError as exc:
                self.errors[exc.code] += 1
            except OrbitError as exc:
                self.errors[type(exc).__name__] += 1
            else:
                self.acks.append(Ack.of(label, answer))


@dataclass(kw_only=True)
class SoakResult(SubmitTally):
    config: SoakConfig
    peak_in_flight: int = 0
    sim_tasks: int = 0
    sim_failed: int = 0
    controller_failed: int = 0
    controller_paused: int = 0
    settle_seconds: float = 0.0
    not_settled: str = ""
    false_failed: list[str] = field(default_factory=list)
    wrong_final: list[str] = field(default_factory=list)
    memory: list[tuple[float, Memory]] = field(default_factory=list)
    requests_total: int = 0
    peak_per_user: dict[str, float] = field(default_factory=dict)
    peak_bound: float = 0.0
    rate_limited: int = 0
    injected: Counter[int] = field(default_factory=Counter)

    def heap_slope(self, *, after: float) -> float:
        """RssAnon growth in MB per minute, least squares after that share of the run."""
        return self._slope(after=after, anon=True)

    def rss_slope(self, *, after: float) -> float:
        """VmRSS growth in MB per minute, least squares after that share of the run."""
        return self._slope(after=after, anon=False)

    def _slope(self, *, after: float, anon: bool) -> float:
        if len(self.memory) < 4:
            return float("nan")
        t_end = self.memory[-1][0]
        points = [(t, m.anon if anon else m.vm_rss) for t, m in self.memory if t >= t_end * after]
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_m = sum(m for _, m in points) / n
        var = sum((t - mean_t) ** 2 for t, _ in points)
        if var == 0:
            return float("nan")
        cov = sum((t - mean_t) * (m - mean_m) for t, m in points)
        return cov / var * 60.0

    def problems(self) -> list[str]:
        out = super().problems()
        if self.not_settled:
            out.append(self.not_settled)
        if self.false_failed:
            out.append(f"{len(self.false_failed)} false FAILED: {self.false_failed[:5]}")
        if self.wrong_final:
            out.append(f"{len(self.wrong_final)} not in their final state: {self.wrong_final[:5]}")
        if self.rate_limited:
            out.append(f"{self.rate_limited} requests refused by the simulator's rate limiter")
        if self.peak_per_user and max(self.peak_per_user.values()) > BUDGET:
            out.append(f"peak request rate above {BUDGET:g}/s: {self.peak_per_user}")
        slope = self.heap_slope(after=0.5)
        if not slope < self.config.max_heap_slope:
            out.append(
                f"daemon heap (RssAnon) grows {slope:+.2f} MB/min over the second half"
                f" (limit {self.config.max_heap_slope:g})"
            )
        if self.acknowledged == 0 or self.requests_total == 0:
            out.append("nothing was submitted or no request was seen: the soak tested nothing")
        return out

    def table(self) -> str:
        cfg = self.config
        anon = [m.anon for _, m in self.memory]
        rss = [m.vm_rss for _, m in self.memory]
        peaks = ", ".join(f"{v:.1f}" for _, v in sorted(self.peak_per_user.items()))
        injected = ", ".join(f"{k}: {v}" for k, v in sorted(self.injected.items())) or "none"
        rows: list[tuple[str, object, str]] = [
            ("seed", cfg.seed, ""),
            ("soak duration", f"{cfg.seconds:.0f} s", ""),
            ("sessions (one user and client thread each)", cfg.sessions, ""),
            (
                "faults",
                f"{cfg.error_fraction:.0%} errors, {cfg.slow_fraction:.0%} +{cfg.slow_delay:g} s, "
                f"{'1% of polls/submits held 31 s, ' if cfg.timeouts else ''}"
                f"+{cfg.latency * 1000:.0f} ms latency",
                "",
            ),
            ("injected fault answers by status", injected, ""),
            ("submit attempts / acknowledged", f"{self.attempts} / {self.acknowledged}", ""),
            ("of which 503 SubmitPending", self.acked_pending, ""),
            ("submit error answers (not acknowledged)", self.error_kinds(), ""),
            ("peak tasks in flight (simulator)", self.peak_in_flight, ""),
            (
                "simulator tasks / FAILED (missing source expired, fail_task)",
                f"{self.sim_tasks} / {self.sim_failed} ({self.controller_failed} by fail_task)",
                "",
            ),
            ("tasks INACTIVE (credential expired) and renewed", self.controller_paused, ""),
            ("settle time after the faults stopped", f"{self.settle_seconds:.1f} s", ""),
            ("**false FAILED**", len(self.false_failed), "0"),
            ("**tasks not in their true final state**", len(self.wrong_final), "0"),
            ("**acknowledged submits lost**", len(self.lost), "0"),
            ("daemon heap (RssAnon) start / end / max", _start_end_max(anon), ""),
            (
                "**daemon heap (RssAnon) slope: after the first quarter / second half**",
                f"{self.heap_slope(after=0.25):+.2f} / {self.heap_slope(after=0.5):+.2f} MB/min",
                f"< {self.config.max_heap_slope:g}",
            ),
            ("daemon VmRSS (heap + mapped files) start / end / max", _start_end_max(rss), ""),
            (
                "daemon VmRSS slope: after the first quarter / second half",
                f"{self.rss_slope(after=0.25):+.2f} / {self.rss_slope(after=0.5):+.2f} MB/min",
                "",
            ),
            ("Transfer API requests seen", self.requests_total, ""),
            ("**peak req/s per user, 10 s windows**", peaks, f"<= {BUDGET:g}"),
            ("peak bound with every unattributed request", f"{self.peak_bound:.1f}", ""),
            ("**429s from the simulator's rate limiter**", self.rate_limited, "0"),
        ]
        return markdown_table(["fault soak", "measured", "target"], rows)


def _start_end_max(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{values[0]:.1f} / {values[-1]:.1f} / {max(values):.1f} MB"


def _schedule_faults(sim: Simulator, config: SoakConfig) -> None:
    if config.timeouts:
        # Longer than the daemon's 30 s HTTP timeout: the request is answered normally after
        # the hold (a submit is executed), but the daemon has given up on it: a timeout.
        for route in ("task_list", "submit_transfer"):
            sim.schedule_fault(route=route, delay=31.0, count=None, fraction=0.01)
    share = config.error_fraction
    # Faults are tried in order, each with its fraction of what reaches it; close enough.
    for status, part in ((429, 0.4), (500, 0.2), (502, 0.2), (503, 0.1), (504, 0.1)):
        sim.schedule_fault(
            route="*",
            status=status,
            count=None,
            fraction=share * part,
            retry_after=1 if status == 429 else None,
        )
    if config.slow_fraction > 0:
        sim.schedule_fault(
            route="*", delay=config.slow_delay, count=None, fraction=config.slow_fraction
        )


def run_soak(config: SoakConfig, *, root: Path, log: bool = False) -> SoakResult:
    with recording_simulator_requests() as recorder:
        result = _run(config, root=root, recorder=recorder, log=log)
    result.requests_total = recorder.total
    result.peak_per_user = recorder.peak_per_user()
    result.peak_bound = recorder.peak_bound()
    result.rate_limited = sum(recorder.rate_limited.values())
    result.injected = Counter(recorder.injected)
    return result


def _run(config: SoakConfig, *, root: Path, recorder: RequestRecorder, log: bool) -> SoakResult:
    rng = random.Random(config.seed)
    result = SoakResult(config=config)
    say = print if log else (lambda *_a, **_k: None)
    with simulated_daemon(
        root,
        # The simulator's pending limit is raised: the admission queue must know.
        env={
            "RADICAL_ORBIT_MAX_BACKOFF": str(config.max_backoff),
            "RADICAL_ORBIT_GLOBUS_MAX_PENDING": "100000",
        },
        poll_interval=config.poll_interval,
        bytes_per_second=1e9,
        min_task_seconds=config.task_seconds,
        max_active=100_000,
        max_pending=100_000,
        rate_limit=BUDGET,
        rate_window=10.0,
        latency=config.latency,
        seed=config.seed,
    ) as (sim, daemon):
        users = [sim.add_user(f"soak{i}") for i in range(config.sessions)]
        names = {u.username for u in users}
        stop = threading.Event()
        producers = [
            SoakProducer(index=i, daemon=daemon, creds=c, config=config, stop=stop)
            for i, c in enumerate(users)
        ]
        paused: dict[str, float] = {}
        view = LedgerView(daemon.state_dir / "ledger.db")
        try:
            start_registered(producers, timeout=60)
            _schedule_faults(sim, config)
            pid = daemon.pid
            assert pid is not None
            t0 = time.monotonic()
            next_disturb = t0 + config.disturb_every
            while (now := time.monotonic()) - t0 < config.seconds:
                result.memory.append((now - t0, memory_mb(pid)))
                docs = [d for d in sim.tasks() if d["username"] in names]
                running = [d for d in docs if d["status"] == "ACTIVE" and not d["is_paused"]]
                result.peak_in_flight = max(
                    result.peak_in_flight, sum(d["status"] not in TERMINAL for d in docs)
                )
                for task_id, until in list(paused.items()):
                    if now >= until:
                        sim.renew_credential(task_id)
                        del paused[task_id]
                if now >= next_disturb and len(running) >= 2:
                    next_disturb = now + config.disturb_every
                    victim, sleeper = rng.sample(running, 2)
                    if sim.fail_task(victim["task_id"], code="SOAK", description="failed by soak"):
                        result.controller_failed += 1
                    if sim.expire_credential(sleeper["task_id"]):
                        paused[sleeper["task_id"]] = now + config.pause_seconds
                        result.controller_paused += 1
                in_flight = sum(d["status"] not in TERMINAL for d in docs)
                mem = result.memory[-1][1]
                say(
                    f"t={now - t0:5.0f} s  in flight {in_flight}  heap {mem.anon:.1f} MB"
                    f"  file {mem.file:.1f} MB  rss {mem.vm_rss:.1f} MB  requests {recorder.total}"
                )
                time.sleep(config.sample_every)
            result.memory.append((time.monotonic() - t0, memory_mb(pid)))
            stop.set()
            sim.clear_faults()
            sim.latency = 0.0
            for task_id in paused:
                sim.renew_credential(task_id)
            for p in producers:
                p.join(120)
            settle_start = time.monotonic()
            try:
                wait_settled(sim, view, names, timeout=config.settle_timeout)
            except TimeoutError as exc:
                # Still judge the rest (memory, rates, truth) so a long run is not wasted.
                result.not_settled = str(exc)
            result.settle_seconds = time.monotonic() - settle_start
        finally:
            stop.set()
            daemon.stop()
        _verdict(result, producers, Outcome.read(sim, view, names))
    return result


def _verdict(result: SoakResult, producers: list[SoakProducer], outcome: Outcome) -> None:
    docs = outcome.sim_tasks
    result.sim_tasks = len(docs)
    result.sim_failed = sum(d["status"] == "FAILED" for d in docs.values())
    result.count(producers, outcome)
    for task_id, row in outcome.tasks.items():
        doc = docs.get(task_id)
        if row.status == "FAILED" and (doc is None or doc["status"] != "FAILED"):
            result.false_failed.append(f"{task_id}: simulator {doc['status'] if doc else '-'}")
    result.wrong_final = outcome.off_truth()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="soak duration")
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--rate", type=float, default=3.0, help="submits/s per session")
    parser.add_argument("--task-seconds", type=float, default=60.0)
    parser.add_argument("--max-backoff", type=float, default=60.0, help="daemon option")
    parser.add_argument("--no-timeouts", action="store_true", help="no 31 s holds")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--verbose", action="store_true", help="a line per sample")
    args = parser.parse_args(argv)
    seed = pick_seed(args.seed)
    config = SoakConfig(
        seconds=args.minutes * 60,
        sessions=args.sessions,
        submit_rate=args.rate,
        task_seconds=args.task_seconds,
        timeouts=not args.no_timeouts,
        max_backoff=args.max_backoff,
        seed=seed,
    )
    return run_campaign(
        lambda root: run_soak(config, root=root, log=args.verbose),
        success="all targets met",
        seed=seed,
    )


if __name__ == "__main__":
    sys.exit(main())
