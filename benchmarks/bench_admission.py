"""Admission queue benchmark (issue 14): many clients, one session, Globus's real limits.

10 clients (threads, each its own GlobusClient) submit 5,000 transfers into one daemon
session as fast as they can. The simulator has Globus's limits: 100 pending tasks and 3
running per user (docs.globus.org/api/transfer/task_behavior), 20 requests/s metered over
10 s windows (Globus FAQ, second-hand: /work/shared/GLOBUS_BEHAVIOUR.md); its tasks take
``--task-seconds`` each. We check and print:

- every submit answered (ACTIVE or QUEUED, never an error) and run exactly once in Globus;
- the most unfinished tasks Globus ever held for the user (<= 100) and the most Transfer API
  requests it received in any 10 s (<= 200: 20 requests/s as Globus meters them, over 10 s
  windows) and, for information, in any 1 s (counted when the simulator handles them, so a
  loaded machine bunches them), sampled every 50 ms;
- when the last task was submitted, beside the time the limits themselves impose:
  max(requests: (N - 20) / 20 s, at 20 requests/s with one request per submit;
      places: (N - 100) * task_seconds / 3, the (N-100)th task must end before the Nth
      submit fits), target within 10 %.

Run alone: ``python benchmarks/bench_admission.py [--count 5000] [--clients 10]
[--task-seconds 0.2] [--poll-interval 1]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import structlog

from radical.orbit.client import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

ITEM = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1.txt"}]
MAX_PENDING, MAX_ACTIVE, RATE, WINDOW = 100, 3, 20.0, 10.0


class Sampler(threading.Thread):
    """Every 50 ms: Transfer API requests so far, the user's unfinished tasks, tasks made."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(daemon=True)
        self.sim = sim
        self.samples: list[tuple[float, int, int, int]] = []
        self.routes: list[dict[str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        core = self.sim._core  # a benchmark may look inside: counting must not cost requests
        while not self.stop.wait(0.05):
            with core.lock:
                now = time.monotonic()
                routes = dict(core.counts)
                requests = sum(routes.values())
                engine = core.engine
                unfinished = sum(1 for t in engine._open.values() if not t.done)
                made = len(engine._tasks)
            self.samples.append((now, requests, unfinished, made))
            self.routes.append(routes)

    def most_in(self, seconds: float) -> tuple[int, dict[str, int]]:
        """The most requests counted within any ``seconds`` (from the samples), and how
        they split by route."""
        best, split = 0, {}
        window: deque[int] = deque()
        for index, (at, requests, _u, _m) in enumerate(self.samples):
            window.append(index)
            while window and at - self.samples[window[0]][0] > seconds:
                window.popleft()
            first = window[0]
            if requests - self.samples[first][1] > best:
                best = requests - self.samples[first][1]
                before, after = self.routes[first], self.routes[index]
                split = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
        return best, split

    def when_made(self, count: int) -> float | None:
        for at, _r, _u, made in self.samples:
            if made >= count:
                return at
        return None


def run(*, count: int, clients: int, task_seconds: float, poll_interval: float) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    sim = Simulator(
        root=root / "sim",
        bytes_per_second=1e9,
        min_task_seconds=task_seconds,
        max_active=MAX_ACTIVE,
        max_pending=MAX_PENDING,
        rate_limit=RATE,
        rate_window=WINDOW,
    )
    with sim:
        creds = sim.add_user("bench")
        daemon = DaemonProcess(
            state_dir=root / "state",
            env=sim.environ(),
            poll_interval=poll_interval,
            extra_args=["--log-level", "warning"],
        )
        with daemon:
            first = GlobusClient(daemon.url, daemon.token, submit_timeout=600)
            session_id = first.register_session(access_token=creds.access_token)["session_id"]
            answers: list[dict[str, Any]] = []
            errors: list[BaseException] = []
            per_client = count // clients

            def submit(worker: int) -> None:
                globus = GlobusClient(
                    daemon.url, daemon.token, session_id=session_id, submit_timeout=600
                )
                try:
                    for n in range(per_client):
                        answers.append(
                            globus.submit_transfer(
                                TUTORIAL_COLLECTION_1,
                                TUTORIAL_COLLECTION_2,
                                ITEM,
                                label=f"c{worker}-{n}",
                            )
                        )
                except BaseException as exc:
                    errors.append(exc)
                finally:
                    globus.close()

            sampler = Sampler(sim)
            sampler.start()
            started = time.monotonic()
            threads = [threading.Thread(target=submit, args=(w,)) for w in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            answered = time.monotonic() - started
            total = per_client * clients
            deadline = time.monotonic() + 3 * total
            while time.monotonic() < deadline and sampler.when_made(total) is None:
                time.sleep(0.2)
            # Let the last ones finish so "exactly once" is judged on settled tasks.
            while time.monotonic() < deadline and sampler.samples[-1][2] > 0:
                time.sleep(0.2)
            sampler.stop.set()
            sampler.join()
            first.close()
    made_at = sampler.when_made(total)
    last_submit = (made_at - started) if made_at is not None else float("nan")
    docs = sim.tasks()
    labels = [d["label"] for d in docs]
    once = len(labels) == len(set(labels)) == total
    statuses = {str(a.get("status")) for a in answers}
    queued = sum(a.get("status") == "QUEUED" for a in answers)
    bound_rate = (total - RATE) / RATE
    # Tasks run a little longer than task_seconds (the simulator settles them on its 20 ms
    # tick): the places bound uses how long they really ran.
    ran = [
        t.completion_time - t.started_time
        for t in sim._core.engine._tasks.values()
        if t.completion_time is not None and t.started_time is not None
    ]
    task_run = sum(ran) / len(ran) if ran else task_seconds
    bound_places = max(0, total - MAX_PENDING) * task_run / MAX_ACTIVE
    bound = max(bound_rate, bound_places)
    most_pending = max(u for _a, _r, u, _m in sampler.samples)
    (per_s, split), (per_window, _) = sampler.most_in(1.0), sampler.most_in(WINDOW)
    rows = [
        ("submits answered", f"{len(answers)} / {total}", f"errors {len(errors)}"),
        ("answer statuses", ", ".join(sorted(statuses)), f"{queued} QUEUED"),
        ("tasks in Globus, each once", f"{len(labels)}", "yes" if once else "NO"),
        ("most unfinished tasks in Globus", f"{most_pending}", f"limit {MAX_PENDING}"),
        ("most requests in 10 s", f"{per_window}", f"limit {RATE * WINDOW:g} (20/s over 10 s)"),
        (
            "most requests in 1 s",
            f"{per_s}",
            f"20/s ({', '.join(f'{k} {v}' for k, v in sorted(split.items()))})",
        ),
        ("all answered after", f"{answered:.1f} s", ""),
        (
            "last task submitted after",
            f"{last_submit:.1f} s",
            f"limits impose {bound:.1f} s (rate {bound_rate:.1f}, places {bound_places:.1f}"
            f" at {task_run:.3f} s a task); {100 * (last_submit / bound - 1):+.1f} %",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"{total} transfers from {clients} clients into one session; tasks {task_seconds:g} s, "
        f"poll interval {poll_interval:g} s"
    )
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")
    ok = (
        not errors
        and once
        and most_pending <= MAX_PENDING
        and per_window <= RATE * WINDOW
        and last_submit <= 1.1 * bound
    )
    print("  target met" if ok else "  TARGET MISSED")
    for exc in errors[:3]:
        print(f"  error: {exc!r}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--task-seconds", type=float, default=0.2)
    p.add_argument("--poll-interval", type=float, default=1.0)
    args = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return run(
        count=args.count,
        clients=args.clients,
        task_seconds=args.task_seconds,
        poll_interval=args.poll_interval,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
