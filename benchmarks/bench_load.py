"""Load benchmark: many clients submitting while many subscribers listen.

50 client threads, each a ``GlobusClient`` (the real client library) with its own Globus
user and session, submit small transfers back to back for ``--duration`` seconds. Meanwhile
500 WebSocket subscribers, 10 per session, run in a separate process (so their parsing does
not share a GIL with the submitters) and stamp every event on arrival. The daemon is the
real subprocess; the simulator runs in this process with its rate limit off, per-user task
limits raised and 1 GB/s transfers, so Globus (the simulator) is not the bottleneck.

Reported: submits/s, p50/p99 submit latency, p50/p99/max notification delay (ledger commit
time in the event -> the subscriber's receipt), errors (failed submits, subscribers closed
early, and events a subscriber missed or got twice: all must be 0), daemon RSS (idle, peak
VmHWM, end) from ``/proc/<pid>/status``.

Run alone: ``python benchmarks/bench_load.py [--clients 50] [--subscribers 500]
[--duration 30]``; ``python3 dev.py bench load`` runs it through ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
import urllib.parse
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
from harness import (
    RawSubscriber,
    print_table,
    quantile,
    quiet_logs,
    raise_fd_limit,
    simulated_daemon,
)
from run import machine

from radical.orbit import GlobusClient
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2

ITEM = [{"source": "/home/share/godata/file1.txt", "destination": "/~/load.txt"}]
POLL_INTERVAL = 1.0


def _status_kb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


# -- subscribers (a separate process) ------------------------------------------------------


class _Subscriber(RawSubscriber):
    """Records every event: (seq, receive time - event time), and whether the daemon closed
    the stream before the benchmark did. A full client library per connection would cost
    more CPU than the daemon's sending and measure the client instead."""

    def __init__(self) -> None:
        super().__init__()
        self.seqs: list[int] = []
        self.delays: list[float] = []
        self.closed_early = False
        self.stopping = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stopping:
            self.closed_early = True
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError("closed during the handshake"))

    def on_frame(self, stamp: float, opcode: int, payload: bytes) -> None:
        if opcode == self.TEXT:
            message = json.loads(payload)
            if message.get("type") == "event":
                self.seqs.append(int(message["seq"]))
                self.delays.append(stamp - float(message["time"]))
        elif opcode == self.CLOSE and not self.stopping:
            self.closed_early = True


async def _subscribe(
    ws_url: str, token: str, sids: list[str], per_session: int, since: int, pipe: Connection
) -> None:
    subs: list[tuple[str, _Subscriber]] = []
    for session_id in sids:
        url = f"{ws_url}?{urllib.parse.urlencode({'session_id': session_id, 'since': since})}"
        batch = await asyncio.gather(*(_Subscriber.connect(url, token) for _ in range(per_session)))
        subs.extend((session_id, sub) for sub in batch)
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    for _, sub in subs:
        sub.stopping = True
        if sub.transport is not None:
            sub.transport.close()
    delays = [d for _, sub in subs for d in sub.delays]
    pipe.send(
        {
            "delays": delays,
            "seqs": [(session_id, sub.seqs) for session_id, sub in subs],
            "closed_early": sum(sub.closed_early for _, sub in subs),
        }
    )


def _subscriber_process(
    ws_url: str, token: str, sids: list[str], per_session: int, since: int, pipe: Connection
) -> None:
    raise_fd_limit()
    asyncio.run(_subscribe(ws_url, token, sids, per_session, since, pipe))


# -- submitters (threads, real client library) ----------------------------------------------


def _submitter(
    client: GlobusClient, stop: threading.Event, latencies: list[float], errors: list[str]
) -> None:
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            client.submit_transfer(
                TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, ITEM, label=f"load{n}"
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            latencies.append(time.perf_counter() - started)
        n += 1


def _submitter_process(
    url: str, token: str, sids: list[str], duration: float, pipe: Connection
) -> None:
    """One thread per session, each with its own GlobusClient, submitting back to back.
    A process of their own: the simulator (in the parent) never waits for their GIL."""
    clients = [GlobusClient(url, token, session_id=session_id, timeout=60) for session_id in sids]
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_submitter, args=(c, stop, latencies, errors)) for c in clients
    ]
    pipe.recv()  # "go"
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    for c in clients:
        c.close()
    pipe.send({"latencies": latencies, "errors": errors, "elapsed": elapsed})


def _session_seqs(http: httpx.Client, session_id: str, after: int) -> list[int]:
    seqs: list[int] = []
    while True:
        page = http.get(
            "/globus/history", params={"session_id": session_id, "after": after, "limit": 1000}
        ).json()
        seqs += [int(e["seq"]) for e in page["events"]]
        if page["next_after"] is None:
            return seqs
        after = int(page["next_after"])


def run_load(*, clients: int, subscribers: int, duration: float, root: Path) -> dict[str, Any]:
    per_session = max(1, subscribers // clients)
    with simulated_daemon(
        root,
        raised_pending=1_000_000,
        poll_interval=POLL_INTERVAL,
        bytes_per_second=1e9,
        rate_limit=None,
        max_active=100_000,
    ) as (sim, daemon):
        pid = daemon.pid or 0
        sids = []
        for i in range(clients):
            with GlobusClient(daemon.url, daemon.token, timeout=60) as gc:
                gc.register_session(access_token=sim.add_user(f"load{i}").access_token)
                sids.append(str(gc.session_id))
        http = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=60)
        # The ledger head before any submit: subscribers replay from it, so none can
        # miss an event however long connecting 500 of them takes.
        since = int(_last_events(http)[-1]["seq"])
        rss_idle = _status_kb(pid, "VmRSS") / 1024

        spawn = mp.get_context("spawn")
        sub_pipe, sub_child = spawn.Pipe()
        subscribers_proc = spawn.Process(
            target=_subscriber_process,
            args=(daemon.ws_url, daemon.token, sids, per_session, since, sub_child),
        )
        subscribers_proc.start()
        if not sub_pipe.poll(120) or sub_pipe.recv() != "ready":
            raise RuntimeError("subscribers did not connect")
        rss_subscribed = _status_kb(pid, "VmRSS") / 1024

        load_pipe, load_child = spawn.Pipe()
        submitters_proc = spawn.Process(
            target=_submitter_process,
            args=(daemon.url, daemon.token, sids, duration, load_child),
        )
        submitters_proc.start()
        load_pipe.send("go")
        if not load_pipe.poll(duration + 120):
            raise RuntimeError("submitters did not finish")
        load = load_pipe.recv()
        submitters_proc.join(30)
        latencies, errors, elapsed = load["latencies"], load["errors"], load["elapsed"]
        # Let the last submits' tasks finish and their notifications arrive.
        _wait_settled(http, sids, timeout=POLL_INTERVAL * 10 + 30)
        time.sleep(POLL_INTERVAL + 1)
        sub_pipe.send("stop")
        result = sub_pipe.recv()
        subscribers_proc.join(30)
        rss_end = _status_kb(pid, "VmRSS") / 1024
        rss_peak = _status_kb(pid, "VmHWM") / 1024
        truth = {session_id: _session_seqs(http, session_id, since) for session_id in sids}
        http.close()

    missed = duplicated = 0
    for session_id, seqs in result["seqs"]:
        missed += len(set(truth[session_id]) - set(seqs))
        duplicated += len(seqs) - len(set(seqs))
    delays_ms = [d * 1000 for d in result["delays"]]
    events = sum(len(v) for v in truth.values())
    return {
        "clients": clients,
        "subscribers": per_session * clients,
        "duration_s": elapsed,
        "submits": len(latencies),
        "submits_per_s": len(latencies) / elapsed,
        "lat_p50_ms": quantile(latencies, 0.5) * 1000,
        "lat_p99_ms": quantile(latencies, 0.99) * 1000,
        "events": events,
        "deliveries": len(delays_ms),
        "delay_p50_ms": statistics.median(delays_ms) if delays_ms else float("nan"),
        "delay_p99_ms": quantile(delays_ms, 0.99),
        "delay_max_ms": max(delays_ms) if delays_ms else float("nan"),
        "submit_errors": len(errors),
        "error_samples": errors[:3],
        "closed_early": result["closed_early"],
        "missed": missed,
        "duplicated": duplicated,
        "rss_idle_mb": rss_idle,
        "rss_subscribed_mb": rss_subscribed,
        "rss_peak_mb": rss_peak,
        "rss_end_mb": rss_end,
    }


def _last_events(http: httpx.Client) -> list[dict[str, Any]]:
    """The newest page of history (the head of the ledger is its last event)."""
    after = 0
    events: list[dict[str, Any]] = []
    while True:
        page = http.get("/globus/history", params={"after": after, "limit": 1000}).json()
        events = page["events"] or events
        if page["next_after"] is None:
            return events
        after = int(page["next_after"])


def _wait_settled(http: httpx.Client, sids: list[str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for session_id in sids:
        while time.monotonic() < deadline:
            active = http.get(
                f"/globus/sessions/{session_id}/tasks", params={"status": "ACTIVE", "limit": 1}
            ).json()["tasks"]
            if not active:
                break
            time.sleep(0.2)


def _print(r: dict[str, Any]) -> None:
    print(
        f"\nLoad: {r['clients']} submitting clients (GlobusClient, one session each), "
        f"{r['subscribers']} WebSocket subscribers ({r['subscribers'] // r['clients']} per "
        f"session), {r['duration_s']:.0f} s; simulator rate limit off, task limits raised"
    )
    submits = [
        ("submits", "{submits}"),
        ("submits/s", "{submits_per_s:.1f}"),
        ("p50 latency", "{lat_p50_ms:.1f} ms"),
        ("p99 latency", "{lat_p99_ms:.1f} ms"),
        ("errors", "{submit_errors}"),
    ]
    notifications = [
        ("events", "{events}"),
        ("deliveries", "{deliveries}"),
        ("p50 delay", "{delay_p50_ms:.1f} ms"),
        ("p99 delay", "{delay_p99_ms:.1f} ms"),
        ("max delay", "{delay_max_ms:.1f} ms"),
        ("missed", "{missed}"),
        ("dupes", "{duplicated}"),
        ("closed", "{closed_early}"),
    ]
    memory = [
        ("daemon RSS idle", "{rss_idle_mb:.1f} MB"),
        (f"with {r['subscribers']} subscribers", "{rss_subscribed_mb:.1f} MB"),
        ("peak (VmHWM)", "{rss_peak_mb:.1f} MB"),
        ("end", "{rss_end_mb:.1f} MB"),
    ]
    for n, columns in enumerate((submits, notifications, memory)):
        if n:
            print()
        print_table(columns, [r])
    for sample in r["error_samples"]:
        print(f"error: {sample}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of submitting")
    args = parser.parse_args(argv)
    quiet_logs()
    raise_fd_limit()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        result = run_load(
            clients=args.clients,
            subscribers=args.subscribers,
            duration=args.duration,
            root=Path(tmp),
        )
    _print(result)
    errors = (
        result["submit_errors"] + result["closed_early"] + result["missed"] + result["duplicated"]
    )
    print("\nno errors" if errors == 0 else f"\nERRORS: {errors}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
