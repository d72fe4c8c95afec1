"""Costs that follow the work, not the history: the real daemon on an empty ledger and on
ledgers of 10,000 and 100,000 finished tasks (3 events each), measured through the public
client.

    .venv/bin/python benchmarks/bench_history.py [--sizes 0,10000,100000] [--repeats 20]

Per size: the ledger is filled directly through the Ledger API (``history_fill.py``: runs of
100 tasks labelled ``run-RRRR-III``, 1 in 100 FAILED), then the daemon is started on it and
measured with ``GlobusClient`` against the simulator:

- daemon start-up (process start to its first answer) and its RSS 3 s later, nothing in
  flight;
- history queries, mean of ``--repeats``: events by label, status and time range (the
  default view) and tasks by label, label glob (``run-RRRR-*``, one run), status and time
  range (``view="tasks"``), each a page of at most 100; wall time at the client and the
  daemon's CPU time per query (all its threads, from ``/proc``: on a loaded machine the
  wall time mostly measures the other jobs);
- replay: a client streaming from ``since`` = head - 100,000 (all events when fewer), time
  from ``events()`` to the last event delivered, and the CPU time the daemon process and
  the client process spent per event meanwhile (what the machine's other load does not
  change);
- cancel: mean time of ``cancel_task`` on 5 running tasks;
- restart + catch-up: 8 running tasks, the daemon stopped, the tasks finished meanwhile,
  the daemon started again and the session re-registered: the time until the client sees
  every task SUCCEEDED.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import rss_mb, scratch_folder
from history_fill import FAIL_EVERY, RUN, fill, label_of

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.ledger import Ledger
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

__all__ = ["main"]

OWNER = "default"  # the daemon's default token
REPLAY = 100_000
CANCELS = 5
CATCH_UP = 8
ITEMS = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1.txt"}]


def _cpu_s(pid: int) -> float:
    """CPU seconds a process's threads have run so far (``schedstat``: nanoseconds, where
    ``stat`` counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def _mean_ms(fn: Callable[[], Any], repeats: int, pid: int) -> tuple[float, float]:
    """Mean wall time per call, and the daemon's CPU time per call, in milliseconds."""
    fn()  # warm: the first call opens connections and reads pages
    start, cpu = time.perf_counter(), _cpu_s(pid)
    for _ in range(repeats):
        fn()
    wall, cpu = time.perf_counter() - start, _cpu_s(pid) - cpu
    return wall / repeats * 1000, cpu / repeats * 1000


def _wait(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


async def _fill(path: Path, tasks: int) -> tuple[int, float, float]:
    """Fill; returns the head and a time window holding one run's tasks."""
    async with await Ledger.open(path) as ledger:
        if tasks:
            await fill(ledger, tasks=tasks, owner=OWNER)
        head = await ledger.head()
        middle = (tasks // 2) // RUN * RUN
        first = await ledger.task(f"task-{middle:07d}")
        last = await ledger.task(f"task-{middle + RUN - 1:07d}")
        if first is None or last is None:
            return head, 0.0, 0.0
        return head, first.request_time, last.request_time + 1e-6


def _daemon(state: Path, sim: Simulator) -> DaemonProcess:
    return DaemonProcess(
        state_dir=state,
        env=sim.environ(),
        poll_interval=0.5,
        extra_args=["--log-level", "warning"],
        start_timeout=120.0,
    )


def _measure(size: int, *, sim: Simulator, root: Path, repeats: int) -> dict[str, float]:
    state = root / f"state{size}"
    _daemon(state, sim).start().stop()  # the state folder, its token, an empty ledger
    filled = time.perf_counter()
    head, since, until = asyncio.run(_fill(state / "ledger.db", size))
    fill_s = time.perf_counter() - filled
    out: dict[str, float] = {"events in the ledger": head, "fill (s, untimed setup)": fill_s}
    daemon = _daemon(state, sim)
    started = time.perf_counter()
    daemon.start()
    out["daemon start-up (s)"] = time.perf_counter() - started
    time.sleep(3)
    assert daemon.proc is not None
    out["daemon RSS idle (MB)"] = rss_mb(daemon.proc.pid)
    user = sim.add_user(f"bench{size}")
    try:
        with GlobusClient(daemon.url, daemon.token) as client:
            middle = size // 2
            run = f"run-{middle // RUN:04d}-*"
            queries: dict[str, Callable[[], Any]] = {
                "events by label (ms)": lambda: client.history(label=label_of(middle)),
                "events by status (ms)": lambda: client.history(status="FAILED"),
                "events by time range (ms)": lambda: client.history(since=since, until=until),
                "tasks by label (ms)": lambda: client.history(label=label_of(middle), view="tasks"),
                "tasks by label glob (ms)": lambda: client.history(label=run, view="tasks"),
                "tasks by status (ms)": lambda: client.history(status="FAILED", view="tasks"),
                "tasks by time range (ms)": lambda: client.history(
                    since=since, until=until, view="tasks"
                ),
            }
            if size:
                found = client.history(label=run, view="tasks")["tasks"]
                assert len(found) == RUN, len(found)
                failed = client.history(status="FAILED", view="tasks")["tasks"]
                assert len(failed) == min(100, size // FAIL_EVERY), len(failed)
            for name, query in queries.items():
                wall, cpu = _mean_ms(query, repeats, daemon.proc.pid)
                out[name] = wall
                out[name.replace("(ms)", "daemon CPU (ms)")] = cpu

            want = min(REPLAY, head)
            started = time.perf_counter()
            daemon_cpu, client_cpu = _cpu_s(daemon.proc.pid), time.process_time()
            got = 0
            with client.events(since=head - want, all_sessions=True) as stream:
                while got < want:
                    event = stream.get(timeout=60)
                    if event is None:
                        raise TimeoutError(f"replay stopped after {got} events")
                    got += 1
            seconds = time.perf_counter() - started
            daemon_cpu = _cpu_s(daemon.proc.pid) - daemon_cpu
            client_cpu = time.process_time() - client_cpu
            out[f"replay of min({REPLAY:,}, all) events (s)"] = seconds
            out["replay (events/s)"] = want / seconds
            out["replay CPU, daemon (us/event)"] = daemon_cpu / want * 1e6 if want else 0.0
            out["replay CPU, client (us/event)"] = client_cpu / want * 1e6 if want else 0.0

            client.register_session(
                access_token=user.access_token, local_collection=TUTORIAL_COLLECTION_2
            )

            def submit(i: int) -> str:
                answer = client.submit_transfer(
                    TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, ITEMS, label=f"live-{i}"
                )
                return str(answer["task_id"])

            running = [submit(i) for i in range(CANCELS)]
            started = time.perf_counter()
            for task_id in running:
                client.cancel_task(task_id)
            out["cancel (ms)"] = (time.perf_counter() - started) / CANCELS * 1000

            waiting = [submit(i) for i in range(CANCELS, CANCELS + CATCH_UP)]
            session_id = client.session_id
            daemon.stop()
            sim.finish_all()
            started = time.perf_counter()
            daemon.start()
            client.register_session(
                access_token=user.access_token,
                local_collection=TUTORIAL_COLLECTION_2,
                session_id=session_id,
            )
            _wait(
                lambda: all(client.get_task(t)["status"] == "SUCCEEDED" for t in waiting),
                "every task SUCCEEDED after the restart",
            )
            out["restart + catch-up of 8 tasks (s)"] = time.perf_counter() - started
            assert daemon.proc is not None
            out["daemon RSS after all of it (MB)"] = rss_mb(daemon.proc.pid)
    finally:
        daemon.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,10000,100000", help="finished tasks per ledger")
    parser.add_argument("--repeats", type=int, default=20, help="runs of each query")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the state folders")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s % RUN for s in sizes):
        parser.error(f"sizes must be multiples of {RUN}")
    results: dict[int, dict[str, float]] = {}
    with (
        scratch_folder("history", under=args.dir) as root,
        Simulator(
            root=root / "sim",
            bytes_per_second=1e9,
            min_task_seconds=1e6,  # tasks run until finish_all() or a cancel
            max_active=100,
            max_pending=1000,
            rate_limit=None,
        ) as sim,
    ):
        for size in sizes:
            results[size] = _measure(size, sim=sim, root=root, repeats=args.repeats)
    header = "".join(f"{f'{s:,} tasks':>15}" for s in sizes)
    print(f"{'measure':<42}{header}")
    for name in results[sizes[0]]:
        values = [results[s][name] for s in sizes]
        cells = "".join(
            f"{v:>15,.0f}" if v >= 1000 else f"{v:>15.2f}" if v < 100 else f"{v:>15.1f}"
            for v in values
        )
        print(f"{name:<42}{cells}")
    if len(sizes) >= 2:
        small, large = sizes[-2], sizes[-1]
        print(f"\nratio {large:,} / {small:,} tasks (targets: queries <= 2x, RSS within 10%):")
        for name in results[small]:
            if name.endswith("(ms)") or "RSS" in name or name.endswith("(s)"):
                a, b = results[small][name], results[large][name]
                print(f"  {name:<40} {b / a if a else float('nan'):>6.2f}x")


if __name__ == "__main__":
    main()
