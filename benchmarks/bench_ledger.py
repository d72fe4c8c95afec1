"""Ledger throughput: durable appends with 1/10/100 concurrent appenders, a raw sqlite3
baseline on the same schema in the same run, and replay read throughput.

    .venv/bin/python benchmarks/bench_ledger.py [--events N] [--rounds R] [--dir PATH]

Every append is a ``task_progress`` event for one of 1000 submitted tasks (the poller's
steady-state load): it is validated, folded into the tasks projection in the same
transaction, committed with ``synchronous=FULL`` and acknowledged. The raw baseline inserts
the same rows into the same ``events`` table with ``executemany`` in transactions of 100 and
1000 rows (WAL, ``synchronous=FULL``), without projections. Files go to ``--dir`` (default: a
temporary folder on the same disk as this checkout, never a tmpfs, so fsync costs are real).

After an untimed warm-up, every figure is measured once per round (``--rounds``, default 3)
and the median printed, with the process CPU time per event next to it (less disturbed by
other jobs than events/s); the ratio to the raw baseline is taken per round, each
100-appender run against the baseline measured right after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from harness import scratch_folder

from radical.orbit.ledger import Ledger, SubmitRequested, TaskProgress, TaskSubmitted
from radical.orbit.ledger.events import TransferItem, TransferRequest
from radical.orbit.ledger.schema import connect, split_statements
from radical.orbit.migrations import load_migrations

__all__ = ["main"]

TASKS = 1000


def _submits(n: int) -> list[SubmitRequested | TaskSubmitted]:
    request = TransferRequest(
        source="src", destination="dst", items=(TransferItem(source="/a", destination="/b"),)
    )
    events: list[SubmitRequested | TaskSubmitted] = []
    for i in range(n):
        events.append(
            SubmitRequested(
                owner="bench",
                session_id=f"s{i % 10}",
                submission_id=f"sub-{i}",
                type="TRANSFER",
                request=request,
            )
        )
        events.append(
            TaskSubmitted(
                owner="bench", session_id=f"s{i % 10}", submission_id=f"sub-{i}", task_id=f"t{i}"
            )
        )
    return events


async def _appenders(ledger: Ledger, *, appenders: int, total: int) -> tuple[float, float, float]:
    """Wall seconds to append ``total`` events from ``appenders`` tasks, CPU seconds (all
    threads), events per commit."""
    per = total // appenders
    commits_before = ledger.commits
    cpu = time.process_time()

    async def one(worker: int) -> None:
        rng = random.Random(worker)
        for i in range(per):
            await ledger.append(
                TaskProgress(
                    task_id=f"t{rng.randrange(TASKS)}",
                    bytes_transferred=i * 1000,
                    files_transferred=i,
                    nice_status="OK",
                )
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(appenders)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    commits = max(1, ledger.commits - commits_before)
    return elapsed, cpu, per * appenders / commits


class _Raw:
    """The baseline: plain ``executemany`` into the ledger's own schema, same connection
    settings (WAL, ``synchronous=FULL``), rows like the ledger's (owner and session of the
    task, the same compact JSON), ``batch`` rows per durable transaction."""

    def __init__(self, path: Path, *, batch: int) -> None:
        self.batch = batch
        self.conn = connect(path)
        self.conn.execute("BEGIN")
        for migration in load_migrations():
            for statement in split_statements(migration.sql):
                self.conn.execute(statement)
        self.conn.execute("COMMIT")
        self.rng = random.Random(0)
        self.seq = 0

    def insert(self, total: int) -> tuple[float, float]:
        """Wall and CPU seconds to insert ``total`` rows."""
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(total // self.batch):
            rows = []
            now = time.time()
            for i in range(self.batch):
                self.seq += 1
                task = self.rng.randrange(TASKS)
                data = {
                    "task_id": f"t{task}",
                    "status": "ACTIVE",
                    "nice_status": "OK",
                    "label": None,
                    "bytes_transferred": i * 1000,
                    "files_transferred": i,
                }
                rows.append(
                    (
                        self.seq,
                        now,
                        "task_progress",
                        "bench",
                        f"s{task % 10}",
                        f"t{task}",
                        dumps(data),
                    )
                )
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO events (seq, time, kind, owner, session_id, task_id, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.conn.execute("COMMIT")
        return time.perf_counter() - start, time.process_time() - cpu

    def close(self) -> None:
        self.conn.close()


# One measurement: (events, events per wall second, CPU microseconds per event, note).
Sample = tuple[int, float, float, str]
APPEND100 = "ledger.append, 100 appenders"
RAW100 = "raw sqlite3 executemany, batch 100"
RAW1000 = "raw sqlite3 executemany, batch 1000"


async def _round(
    ledger: Ledger, raws: dict[int, _Raw], *, events: int, out: dict[str, list[Sample]]
) -> None:
    """One measurement of everything; the 100-appender run and its raw baseline back to back."""
    for appenders, total in ((1, max(events // 50, 200)), (10, events // 5), (100, events)):
        wall, cpu, per_commit = await _appenders(ledger, appenders=appenders, total=total)
        name = f"ledger.append, {appenders} appender{'s' if appenders > 1 else ''}"
        out.setdefault(name, []).append(
            (total, total / wall, cpu / total * 1e6, f"{per_commit:.1f} events/commit")
        )
    for batch, raw in raws.items():
        wall, cpu = raw.insert(events)
        out.setdefault(f"raw sqlite3 executemany, batch {batch}", []).append(
            (events, events / wall, cpu / events * 1e6, f"{batch} events/commit")
        )
    head = await ledger.head()
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    async for _ in ledger.events_since(0):
        count += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert count == head, (count, head)
    out.setdefault("replay events_since(0)", []).append(
        (count, count / wall, cpu / count * 1e6, "pages of 1000")
    )


async def _run(folder: Path, *, events: int, rounds: int) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    ledger = await Ledger.open(folder / "ledger.db")
    raws = {batch: _Raw(folder / f"raw{batch}.db", batch=batch) for batch in (100, 1000)}
    try:
        await ledger.append_many(_submits(TASKS))
        # Warm-up, not measured: imports, code paths, the first pages of every file.
        await _appenders(ledger, appenders=100, total=2000)
        for raw in raws.values():
            raw.insert(2000)
        for _ in range(rounds):
            await _round(ledger, raws, events=events, out=out)
    finally:
        await ledger.close()
        for raw in raws.values():
            raw.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events at 100 appenders")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each figure")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the database files")
    args = parser.parse_args(argv)
    with scratch_folder("ledger", under=args.dir) as folder:
        samples = asyncio.run(_run(folder, events=args.events, rounds=args.rounds))
    print(
        f"median of {args.rounds} rounds; CPU = process CPU time (all threads) per event\n"
        f"{'ledger benchmark':<38} {'events':>9} {'events/s':>10} {'CPU us':>7}  note"
    )
    for name, runs in samples.items():
        count = runs[-1][0]
        rate = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        print(f"{name:<38} {count:>9} {rate:>10,.0f} {cpu:>7.1f}  {runs[-1][3]}")
    # Ratios per round (each 100-appender run next to its own baseline), then the median.
    at100 = [r[1] for r in samples[APPEND100]]
    vs100 = statistics.median(a / r[1] for a, r in zip(at100, samples[RAW100], strict=True))
    vs1000 = statistics.median(a / r[1] for a, r in zip(at100, samples[RAW1000], strict=True))
    print(
        f"100 appenders vs raw: {vs100:.2f}x (batch 100), {vs1000:.2f}x (batch 1000); "
        "targets: >= 50,000/s at 100 appenders, >= 0.4x raw, replay >= 200,000/s"
    )


if __name__ == "__main__":
    main()
