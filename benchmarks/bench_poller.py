"""Poller and notification benchmark, against the real daemon process.

1. Bulk polling: N = 1, 100, 1000 in-flight tasks in one session (simulator: 50 ms added to
   every API request, per-user task limits raised). All tasks finish together right after a
   sweep (the worst moment); we report Transfer API requests per sweep (target
   <= 1 + ceil(N/100)) and the delay from the finish to the last WebSocket notification
   (target: interval + 2 s at N = 1000).
2. Notification latency: tasks in flight in S sessions of one credential (the daemon's
   defaults: its request budget, early sweeps at most 1 request/s per credential) finish one
   by one at random moments over ``--spread`` seconds; p50/p99/max of (WebSocket
   notification - finish) per task, beside the Transfer API requests/s the poller spent
   meanwhile (targets: p99 <= 2 s for 100 tasks in one session, <= interval + 2 s for 1,000
   in 10 sessions), and the requests/s once every task has ended (idle sessions: 0).
3. Fan-out: 1000 WebSocket subscribers receive one event; p99 of (client receive time - ledger
   commit time) (target < 100 ms), and the daemon's memory (RSS) before/after.

Run alone: ``python benchmarks/bench_poller.py [--interval 10] [--sizes 1,100,1000]
[--latency 100x1,1000x10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from harness import (
    RawSubscriber,
    print_table,
    quantile,
    quiet_logs,
    rss_mb,
    simulated_daemon,
)

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

LATENCY = 0.05
ITEM = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1.txt"}]


def _quiet_counts(sim: Simulator, route: str, *, quiet: float, timeout: float) -> int:
    """Wait for a burst of ``route`` requests (one sweep) to start and go quiet; its size."""
    deadline = time.monotonic() + timeout
    sim.reset_counts()
    while sim.request_counts()[route] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {route} request within {timeout} s")
        time.sleep(0.005)
    last, since = sim.request_counts()[route], time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.005)
        now = sim.request_counts()[route]
        if now != last:
            last, since = now, time.monotonic()
    return last


async def _collect_succeeded(
    url: str, token: str, want: set[str], seen: dict[str, float], ready: threading.Event
) -> None:
    """Every session of the token: the receive time of each task's SUCCEEDED event."""
    async with websockets.connect(
        f"{url}?topic=transfer_status",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as ws:
        ready.set()
        while want:
            message = json.loads(await ws.recv())
            if message["type"] == "event" and message["data"]["status"] == "SUCCEEDED":
                task_id = message["task_id"]
                if task_id in want:
                    want.discard(task_id)
                    seen[task_id] = time.time()


def bench_polling(n: int, *, interval: float, root: Path) -> dict[str, Any]:
    with simulated_daemon(
        root / f"polling{n}",
        raised_pending=n + 10,
        poll_interval=interval,
        bytes_per_second=1e9,
        min_task_seconds=1e6,  # tasks run until finish_all()
        max_active=n + 10,
        rate_limit=None,
    ) as (sim, daemon):
        creds = sim.add_user("bench")
        http = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
        session_id = http.post(
            "/globus/sessions", json={"access_token": creds.access_token}
        ).json()["session_id"]
        body = {
            "source": TUTORIAL_COLLECTION_1,
            "destination": TUTORIAL_COLLECTION_2,
            "items": ITEM,
        }

        def submit(i: int) -> str:
            answer = http.post(
                f"/globus/sessions/{session_id}/transfers", json={**body, "label": f"b{i}"}
            )
            answer.raise_for_status()
            return str(answer.json()["task_id"])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            ids = set(pool.map(submit, range(n)))
        submit_seconds = time.monotonic() - started
        sim.latency = LATENCY
        # One whole sweep at 50 ms per request: its size is the requests per sweep.
        # Early sweeps of one request come about 1 s apart (1 request/s per credential):
        # such a sweep has ended after 0.5 s without a request; a longer one after 1 s.
        quiet = 0.5 if n <= 100 else 1.0
        per_sweep = _quiet_counts(
            sim, "task_list", quiet=min(quiet, interval / 2), timeout=interval * 3
        )
        seen: dict[str, float] = {}
        loop = asyncio.new_event_loop()
        waiter = loop.create_task(
            _collect_succeeded(daemon.ws_url, daemon.token, set(ids), seen, threading.Event())
        )
        loop.run_until_complete(asyncio.sleep(0.2))
        # Finish right after a sweep ended: the worst case, a whole interval to wait.
        _quiet_counts(sim, "task_list", quiet=0.3, timeout=interval * 3)
        finished_at = time.time()
        sim.finish_all()
        loop.run_until_complete(asyncio.wait_for(waiter, timeout=interval * 3 + 60))
        loop.close()
        rss = rss_mb(daemon.pid or 0)
        http.close()
    return {
        "n": n,
        "requests_per_sweep": per_sweep,
        "target_requests": 1 + math.ceil(n / 100),
        "finish_to_last_notification_s": max(seen.values()) - finished_at,
        "target_delay_s": interval + 2,
        "submit_s": submit_seconds,
        "rss_mb": rss,
    }


def bench_latency(
    tasks: int, sessions: int, *, interval: float, spread: float, root: Path
) -> dict[str, Any]:
    """Finish -> notification for ``tasks`` in flight across ``sessions`` of one credential."""
    with simulated_daemon(
        root / f"latency{tasks}x{sessions}",
        poll_interval=interval,
        bytes_per_second=1e9,
        min_task_seconds=1e6,  # tasks run until finished one by one below
        max_active=tasks + 10,
        max_pending=tasks + 10,
        rate_limit=None,  # the daemon's own budget keeps it under Globus's limit
    ) as (sim, daemon):
        creds = sim.add_user("latency")
        http = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=120)
        sids = [
            http.post("/globus/sessions", json={"access_token": creds.access_token}).json()[
                "session_id"
            ]
            for _ in range(sessions)
        ]
        body = {
            "source": TUTORIAL_COLLECTION_1,
            "destination": TUTORIAL_COLLECTION_2,
            "items": ITEM,
        }

        def submit(i: int) -> str:
            session_id = sids[i % sessions]
            answer = http.post(
                f"/globus/sessions/{session_id}/transfers", json={**body, "label": f"l{i}"}
            )
            answer.raise_for_status()
            return str(answer.json()["task_id"])

        # Submits share the credential's budget too: ~9 submits/s (2 requests each).
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, range(tasks)))
        sim.latency = LATENCY
        seen: dict[str, float] = {}
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        collector = threading.Thread(
            target=loop.run_until_complete,
            args=(_collect_succeeded(daemon.ws_url, daemon.token, set(ids), seen, ready),),
            daemon=True,
        )
        collector.start()
        ready.wait(30)
        time.sleep(interval)  # every session has swept since its submits
        rng = random.Random(7)
        moments = sorted(rng.uniform(0, spread) for _ in ids)
        order = rng.sample(ids, len(ids))
        finished: dict[str, float] = {}
        sim.reset_counts()
        began = time.monotonic()
        for task_id, moment in zip(order, moments, strict=True):
            pause = began + moment - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            finished[task_id] = time.time()
            sim.finish_task(task_id)
        collector.join(timeout=spread + interval * 3 + 60)
        took = time.monotonic() - began
        counts = sim.request_counts()
        polls = counts["task_list"] + counts["task_event_list"]
        # Every task has ended: what the idle sessions cost.
        sim.reset_counts()
        time.sleep(2 * interval)
        idle = sim.request_counts()
        http.close()
        loop.close()
    delays = [seen[t] - finished[t] for t in ids if t in seen]
    return {
        "tasks": tasks,
        "sessions": sessions,
        "notified": len(delays),
        "p50_s": statistics.median(delays),
        "p99_s": quantile(delays, 0.99),
        "max_s": max(delays),
        "target_s": 2.0 if tasks <= 100 else interval + 2.0,
        "requests_per_s": polls / took,
        "idle_requests_per_s": (idle["task_list"] + idle["task_event_list"]) / (2 * interval),
    }


async def _fanout(daemon: DaemonProcess, sim: Simulator, clients: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    rss_before = rss_mb(daemon.pid or 0)
    sockets = await RawSubscriber.connect_many(daemon.ws_url, daemon.token, clients, batch=100)
    await asyncio.sleep(0.5)
    rss_after = rss_mb(daemon.pid or 0)
    receivers = [asyncio.create_task(ws.next_event()) for ws in sockets]
    await asyncio.sleep(0.2)
    creds = sim.add_user("fanout")
    async with httpx.AsyncClient(base_url=daemon.url, headers=headers) as http:
        await http.post("/globus/sessions", json={"access_token": creds.access_token})
    results = await asyncio.wait_for(asyncio.gather(*receivers), timeout=60)
    delays = sorted((got - float(message["time"])) * 1000 for got, message in results)
    for ws in sockets:
        ws.close()
    return {
        "clients": clients,
        "p50_ms": statistics.median(delays),
        "p99_ms": quantile(delays, 0.99),
        "min_ms": delays[0],
        "max_ms": delays[-1],
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
    }


def bench_fanout(clients: int, *, root: Path) -> dict[str, Any]:
    with simulated_daemon(root / "fanout", poll_interval=10, rate_limit=None) as (sim, daemon):
        return asyncio.run(_fanout(daemon, sim, clients))


def _print_latency(rows: list[dict[str, Any]], *, interval: float, spread: float) -> None:
    print(
        f"\nNotification latency: one credential, tasks finishing one by one over {spread:g} s,"
        f" interval {interval:g} s, {LATENCY * 1000:.0f} ms per API request"
    )
    columns = [
        ("tasks", "{tasks}"),
        ("sessions", "{sessions}"),
        ("finish -> notification p50", "{p50_s:.2f} s"),
        ("p99", "{p99_s:.2f} s"),
        ("max", "{max_s:.2f} s"),
        ("target p99", "<= {target_s:g} s"),
        ("poll requests/s", "{requests_per_s:.2f}"),
        ("requests/s once idle", "{idle_requests_per_s:.2f}"),
    ]
    print_table(columns, rows)


def _print_polling(rows: list[dict[str, Any]], *, interval: float) -> None:
    print(f"\nBulk polling: {LATENCY * 1000:.0f} ms per API request, interval {interval:g} s")
    columns = [
        ("N", "{n}"),
        ("requests/sweep", "{requests_per_sweep}"),
        ("target", "<= {target_requests}"),
        ("finish -> last notification", "{finish_to_last_notification_s:.2f} s"),
        ("target", "<= {target_delay_s:g} s"),
        ("daemon RSS", "{rss_mb:.1f} MB"),
    ]
    print_table(columns, rows)


def _print_fanout(fan: dict[str, Any]) -> None:
    print(f"\nWebSocket fan-out: {fan['clients']} subscribers, one event, ledger commit -> client")
    columns = [
        ("min", "{min_ms:.1f} ms"),
        ("p50", "{p50_ms:.1f} ms"),
        ("p99", "{p99_ms:.1f} ms"),
        ("max", "{max_ms:.1f} ms"),
        ("target p99", "< 100 ms"),
        ("RSS idle", "{rss_before_mb:.1f} MB"),
        (f"RSS with {fan['clients']}", "{rss_after_mb:.1f} MB"),
    ]
    print_table(columns, [fan])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval (s)")
    parser.add_argument("--sizes", default="1,100,1000", help="in-flight task counts")
    parser.add_argument("--subscribers", type=int, default=1000, help="0: no fan-out run")
    parser.add_argument(
        "--latency", default="100x1,1000x10", help="TASKSxSESSIONS for the latency runs"
    )
    parser.add_argument("--spread", type=float, default=40.0, help="seconds tasks finish over")
    args = parser.parse_args(argv)
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-poller-") as tmp:
        root = Path(tmp)
        # Each table as soon as its figures are in: a long run is not lost to a late failure.
        rows = [
            bench_polling(int(n), interval=args.interval, root=root)
            for n in args.sizes.split(",")
            if n
        ]
        if rows:
            _print_polling(rows, interval=args.interval)
        latency = [
            bench_latency(
                int(tasks), int(sessions), interval=args.interval, spread=args.spread, root=root
            )
            for tasks, sessions in (run.split("x") for run in args.latency.split(",") if run)
        ]
        if latency:
            _print_latency(latency, interval=args.interval, spread=args.spread)
        fan = bench_fanout(args.subscribers, root=root) if args.subscribers else None
        if fan is not None:
            _print_fanout(fan)
    ok = (
        all(
            r["requests_per_sweep"] <= r["target_requests"]
            and r["finish_to_last_notification_s"] <= r["target_delay_s"]
            for r in rows
        )
        and all(
            r["notified"] == r["tasks"]
            and r["p99_s"] <= r["target_s"]
            and r["idle_requests_per_s"] == 0
            for r in latency
        )
        and (fan is None or fan["p99_ms"] < 100)
    )
    print("\nall targets met" if ok else "\nSOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
