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
import base64
import concurrent.futures
import json
import logging
import math
import os
import random
import resource
import statistics
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import structlog
import websockets

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator

LATENCY = 0.05
ITEM = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1.txt"}]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _raise_fd_limit(want: int = 8192) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


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
    url: str, token: str, session_id: str, want: set[str], box: dict[str, float]
) -> None:
    async with websockets.connect(
        f"{url}?session_id={session_id}&topic=transfer_status",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    ) as ws:
        box["ready"] = time.time()
        while want:
            message = json.loads(await ws.recv())
            if message["type"] == "event" and message["data"]["status"] == "SUCCEEDED":
                want.discard(message["task_id"])
        box["last"] = time.time()


def bench_polling(n: int, *, interval: float, root: Path) -> dict[str, Any]:
    sim = Simulator(
        root=root / f"sim{n}",
        bytes_per_second=1e9,
        min_task_seconds=1e6,  # tasks run until finish_all()
        max_active=n + 10,
        max_pending=n + 10,
        rate_limit=None,
    )
    with sim:
        creds = sim.add_user("bench")
        daemon = DaemonProcess(
            state_dir=root / f"state{n}",
            # The simulator's limits are raised: the daemon's admission queue must know.
            env={
                **sim.environ(),
                "RADICAL_ORBIT_GLOBUS_MAX_PENDING": str(n + 10),
                "RADICAL_ORBIT_ADMISSION_RATE": "0",
            },
            poll_interval=interval,
            extra_args=["--log-level", "warning"],
        )
        with daemon:
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
            box: dict[str, float] = {}
            loop = asyncio.new_event_loop()
            waiter = loop.create_task(
                _collect_succeeded(daemon.ws_url, daemon.token, session_id, set(ids), box)
            )
            loop.run_until_complete(asyncio.sleep(0.2))
            # Finish right after a sweep ended: the worst case, a whole interval to wait.
            _quiet_counts(sim, "task_list", quiet=0.3, timeout=interval * 3)
            finished_at = time.time()
            sim.finish_all()
            loop.run_until_complete(asyncio.wait_for(waiter, timeout=interval * 3 + 60))
            loop.close()
            rss = _rss_mb(daemon.pid or 0)
            http.close()
    return {
        "n": n,
        "requests_per_sweep": per_sweep,
        "target_requests": 1 + math.ceil(n / 100),
        "finish_to_last_notification_s": box["last"] - finished_at,
        "target_delay_s": interval + 2,
        "submit_s": submit_seconds,
        "rss_mb": rss,
    }


async def _collect_finished(
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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def bench_latency(
    tasks: int, sessions: int, *, interval: float, spread: float, root: Path
) -> dict[str, Any]:
    """Finish -> notification for ``tasks`` in flight across ``sessions`` of one credential."""
    sim = Simulator(
        root=root / f"lat{tasks}x{sessions}",
        bytes_per_second=1e9,
        min_task_seconds=1e6,  # tasks run until finished one by one below
        max_active=tasks + 10,
        max_pending=tasks + 10,
        rate_limit=None,  # the daemon's own budget keeps it under Globus's limit
    )
    with sim:
        creds = sim.add_user("latency")
        daemon = DaemonProcess(
            state_dir=root / f"state-lat{tasks}x{sessions}",
            env=sim.environ(),
            poll_interval=interval,
            extra_args=["--log-level", "warning"],
        )
        with daemon:
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
                args=(_collect_finished(daemon.ws_url, daemon.token, set(ids), seen, ready),),
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
        "p99_s": _percentile(delays, 0.99),
        "max_s": max(delays),
        "target_s": 2.0 if tasks <= 100 else interval + 2.0,
        "requests_per_s": polls / took,
        "idle_requests_per_s": (idle["task_list"] + idle["task_event_list"]) / (2 * interval),
    }


class _RawSubscriber(asyncio.Protocol):
    """A minimal WebSocket subscriber: handshake, then it stamps the arrival of bytes.

    A thousand full ``websockets`` clients in this one Python process cost about as much CPU
    per message as the daemon itself, so their receive times would measure the client more
    than the daemon. This protocol stamps the moment the first byte of an event frame
    reaches the process (``data_received``) and parses it afterwards.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.event: asyncio.Future[tuple[float, bytes]] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        stamp = time.time()
        if not self.handshake.done():
            self.buffer += data
            if b"\r\n\r\n" in self.buffer:
                head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
                if b" 101 " not in head.split(b"\r\n", 1)[0]:
                    self.handshake.set_exception(RuntimeError(f"refused: {head[:80]!r}"))
                    return
                self.handshake.set_result(None)
                self.buffer = bytearray(rest)
            return
        if not self.event.done() and b'"type":"event"' in data:
            self.event.set_result((stamp, data))

    @classmethod
    async def connect(cls, url: str, token: str) -> _RawSubscriber:
        parts = urllib.parse.urlsplit(url)
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, parts.hostname or "", parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        assert protocol.transport is not None
        protocol.transport.write(
            (
                f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        await protocol.handshake
        return protocol

    async def next_event(self) -> tuple[float, dict[str, Any]]:
        stamp, frame = await self.event
        # Server frames are unmasked; a small text frame has a 2- or 4-byte header. The
        # chunk may hold the start of the next frame too: read this one's length.
        size = frame[1] & 0x7F
        start = 2
        if size == 126:
            size, start = int.from_bytes(frame[2:4], "big"), 4
        return stamp, json.loads(frame[start : start + size])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _fanout(daemon: DaemonProcess, sim: Simulator, clients: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {daemon.token}"}
    rss_before = _rss_mb(daemon.pid or 0)
    sockets: list[_RawSubscriber] = []
    for start in range(0, clients, 100):
        sockets.extend(
            await asyncio.gather(
                *(
                    _RawSubscriber.connect(daemon.ws_url, daemon.token)
                    for _ in range(start, min(clients, start + 100))
                )
            )
        )
    await asyncio.sleep(0.5)
    rss_after = _rss_mb(daemon.pid or 0)
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
        "p99_ms": delays[max(0, math.ceil(len(delays) * 0.99) - 1)],
        "min_ms": delays[0],
        "max_ms": delays[-1],
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
    }


def bench_fanout(clients: int, *, root: Path) -> dict[str, Any]:
    with Simulator(root=root / "sim-fanout", rate_limit=None) as sim:
        daemon = DaemonProcess(
            state_dir=root / "state-fanout",
            env=sim.environ(),
            poll_interval=10,
            extra_args=["--log-level", "warning"],
        )
        with daemon:
            return asyncio.run(_fanout(daemon, sim, clients))


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def _print_latency(rows: list[dict[str, Any]], *, interval: float, spread: float) -> None:
    print(
        f"\nNotification latency: one credential, tasks finishing one by one over {spread:g} s,"
        f" interval {interval:g} s, {LATENCY * 1000:.0f} ms per API request"
    )
    _table(
        [
            "tasks",
            "sessions",
            "finish -> notification p50",
            "p99",
            "max",
            "target p99",
            "poll requests/s",
            "requests/s once idle",
        ],
        [
            [
                str(r["tasks"]),
                str(r["sessions"]),
                f"{r['p50_s']:.2f} s",
                f"{r['p99_s']:.2f} s",
                f"{r['max_s']:.2f} s",
                f"<= {r['target_s']:g} s",
                f"{r['requests_per_s']:.2f}",
                f"{r['idle_requests_per_s']:.2f}",
            ]
            for r in rows
        ],
    )


def _print_polling(rows: list[dict[str, Any]], *, interval: float) -> None:
    print(f"\nBulk polling: {LATENCY * 1000:.0f} ms per API request, interval {interval:g} s")
    _table(
        ["N", "requests/sweep", "target", "finish -> last notification", "target", "daemon RSS"],
        [
            [
                str(r["n"]),
                str(r["requests_per_sweep"]),
                f"<= {r['target_requests']}",
                f"{r['finish_to_last_notification_s']:.2f} s",
                f"<= {r['target_delay_s']:g} s",
                f"{r['rss_mb']:.1f} MB",
            ]
            for r in rows
        ],
    )


def _print_fanout(fan: dict[str, Any]) -> None:
    print(f"\nWebSocket fan-out: {fan['clients']} subscribers, one event, ledger commit -> client")
    _table(
        ["min", "p50", "p99", "max", "target p99", "RSS idle", f"RSS with {fan['clients']}"],
        [
            [
                *(f"{fan[k]:.1f} ms" for k in ("min_ms", "p50_ms", "p99_ms", "max_ms")),
                "< 100 ms",
                f"{fan['rss_before_mb']:.1f} MB",
                f"{fan['rss_after_mb']:.1f} MB",
            ]
        ],
    )


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
    # The in-process simulator logs every request; keep the table readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    _raise_fd_limit()
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
