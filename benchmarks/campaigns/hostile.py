"""Oversized-work campaign: one token holder tries to exhaust the daemon's memory and disk.

The attacker (its own token and Globus user) sends ``submits`` transfers to a collection
that does not exist (Globus answers 404, so each is recorded as requested, then failed),
``parallel`` at a time: first at 3.9 MB of paths each (the attack as first reported), then
each just under the daemon's per-submit byte budget. Then it reads its whole history with
``history?limit=1000``, four readers at once, and replays everything over a WebSocket with
``since=0``. Meanwhile another client (another token and user) calls the API every 50 ms
(its tasks, its history, the endpoint). The campaign samples the daemon's memory every
50 ms.

What must hold: the daemon's RSS stays under ``max_rss_mb`` (300 MB), the other client's
p99 under ``max_p99_ms`` (250 ms), and every byte of a request is stored once.

    python3 dev.py campaigns hostile [--submits 60] [--parallel 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import websockets
from campaign_common import markdown_table, memory_mb, run_campaign, simulated_daemon

from radical.orbit.simulator import TUTORIAL_COLLECTION_1

__all__ = ["HostileConfig", "HostileResult", "run_hostile"]

MB = 1_000_000


@dataclasses.dataclass(frozen=True)
class HostileConfig:
    submits: int = 60
    parallel: int = 4
    reported_size: int = 3_900_000  # bytes of paths per submit, as in the report
    history_readers: int = 4
    max_rss_mb: float = 300.0
    max_p99_ms: float = 250.0


@dataclasses.dataclass
class HostileResult:
    config: HostileConfig
    budget: int = 0
    answers: Counter[str] = dataclasses.field(default_factory=Counter)
    stored_requests: int = 0
    request_bytes_stored: int = 0
    ledger_mb: float = 0.0
    history_pages: int = 0
    history_events: int = 0
    history_largest_page_mb: float = 0.0
    ws_events: int = 0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_end: float = 0.0
    anon_peak: float = 0.0
    anon_end: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    other: list[float] = dataclasses.field(default_factory=list)
    other_errors: list[str] = dataclasses.field(default_factory=list)

    def p(self, q: float) -> float:
        ordered = sorted(self.other)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0

    def table(self) -> str:
        c = self.config
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        rows = [
            ("submits per size / at once", f"{c.submits} / {c.parallel}", ""),
            ("sizes: as reported / the budget", f"{c.reported_size} / {self.budget} B", ""),
            ("answers to the attacker's submits", answers, "413 over the budget"),
            (
                "requests stored / their bytes in the ledger",
                f"{self.stored_requests} / {self.request_bytes_stored / MB:.1f} MB",
                "once each",
            ),
            ("ledger file", f"{self.ledger_mb:.1f} MB", ""),
            (
                f"history?limit=1000 x{c.history_readers}: pages / events / largest page",
                f"{self.history_pages} / {self.history_events} / "
                f"{self.history_largest_page_mb:.1f} MB",
                "",
            ),
            ("WebSocket since=0: events replayed", self.ws_events, ""),
            (
                "**daemon RSS start / peak / end**",
                f"{self.rss_start:.0f} / {self.rss_peak:.0f} / {self.rss_end:.0f} MB",
                f"peak < {c.max_rss_mb:.0f} MB",
            ),
            (
                "daemon heap (RssAnon) peak / end",
                f"{self.anon_peak:.0f} / {self.anon_end:.0f} MB",
                "",
            ),
            (
                "peak RSS by phase (submits, history, replay)",
                " / ".join(f"{v:.0f}" for v in self.phases.values()) + " MB",
                "",
            ),
            (
                "other client's calls / errors",
                f"{len(self.other)} / {len(self.other_errors)}",
                "0 errors",
            ),
            (
                "machine load at the end (1 / 5 / 15 min)",
                " / ".join(f"{x:.1f}" for x in os.getloadavg()),
                "",
            ),
            (
                "**other client's p50 / p99 / max**",
                f"{self.p(0.5):.0f} / {self.p(0.99):.0f} / {self.p(1.0):.0f} ms",
                f"p99 < {c.max_p99_ms:.0f} ms",
            ),
        ]  # fmt: skip
        return markdown_table(("oversized work", "measured", "target"), rows)

    def problems(self) -> list[str]:
        out = []
        if self.rss_peak >= self.config.max_rss_mb:
            out.append(f"daemon RSS peaked at {self.rss_peak:.0f} MB")
        if self.p(0.99) >= self.config.max_p99_ms:
            out.append(f"other client's p99 {self.p(0.99):.0f} ms")
        if self.other_errors:
            out.append(f"other client's calls failed: {self.other_errors[:3]}")
        if self.answers.get("200", 0):
            out.append("a submit to a missing collection was accepted")
        return out


def _body(size: int, collection: str) -> dict[str, Any]:
    items = 500
    length = max(1, (size - 200) // (2 * items))
    path = "/" + "x" * (length - 1)
    return {
        "source": TUTORIAL_COLLECTION_1,
        "destination": collection,
        "items": [{"source": path, "destination": path}] * items,
        "label": "hostile",
    }


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(name="rss", daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak = 0.0
        self.peak_anon = 0.0

    def run(self) -> None:
        while not self.stop.wait(0.05):
            with contextlib.suppress(Exception):
                memory = memory_mb(self.pid)
                self.peak = max(self.peak, memory.vm_rss)
                self.peak_anon = max(self.peak_anon, memory.anon)

    def take(self) -> float:
        peak, self.peak = self.peak, memory_mb(self.pid).vm_rss
        return peak


def _other(url: str, token: str, session_id: str, stop: Any, out: Any) -> None:
    """The other client, in a process of its own so that the campaign's own work (the
    simulator, the attacker's threads) never delays it; sends its latencies and errors."""
    headers = {"Authorization": f"Bearer {token}"}
    calls = [
        f"/globus/sessions/{session_id}/tasks",
        "/globus/history?limit=20",
        "/endpoints",
    ]
    latencies: list[float] = []
    errors: list[str] = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        n = 0
        while not stop.is_set():
            start = time.monotonic()
            try:
                http.get(calls[n % len(calls)]).raise_for_status()
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                latencies.append(time.monotonic() - start)
            n += 1
            stop.wait(max(0.0, 0.05 - (time.monotonic() - start)))
    out.put((latencies, errors))


def _history(
    url: str, headers: dict[str, str], result: HostileResult, lock: threading.Lock
) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        after = 0
        while True:
            answer = http.get("/globus/history", params={"limit": 1000, "after": after})
            answer.raise_for_status()
            page = answer.json()
            with lock:
                result.history_pages += 1
                result.history_events += len(page["events"])
                result.history_largest_page_mb = max(
                    result.history_largest_page_mb, len(answer.content) / MB
                )
            if page["next_after"] is None:
                return
            after = page["next_after"]


async def _replay(url: str, headers: dict[str, str], head: int) -> int:
    seen = 0
    async with websockets.connect(
        url.replace("http", "ws", 1) + "/ws?since=0",
        additional_headers=headers,
        max_size=None,
        open_timeout=30,
    ) as ws:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if message.get("type") == "event":
                seen += 1
                if message["seq"] >= head:
                    return seen


def _stored(ledger: Path) -> tuple[int, int]:
    """(submit_requested events, bytes of their data) plus any request copies elsewhere."""
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        count, size = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM events "
            "WHERE kind = 'submit_requested'"
        ).fetchone()
        columns = [r[1] for r in db.execute("PRAGMA table_info(submissions)")]
        if "request" in columns:
            size += db.execute(
                "SELECT coalesce(sum(length(request)), 0) FROM submissions"
            ).fetchone()[0]
        return int(count), int(size)
    finally:
        db.close()


def run_hostile(config: HostileConfig, *, root: Path) -> HostileResult:
    result = HostileResult(config=config)
    missing = str(uuid.uuid4())
    with simulated_daemon(root, rate_limit=None) as (sim, daemon):
        assert daemon.proc is not None
        pid = daemon.proc.pid
        # The other client has a token of its own, made as an operator would (token add).
        other_token = daemon.add_token("other")
        attacker, victim = sim.add_user("attacker"), sim.add_user("victim")
        headers = daemon.headers
        with httpx.Client(base_url=daemon.url, headers=headers, timeout=120) as http:
            session_id = http.post(
                "/globus/sessions", json={"access_token": attacker.access_token}
            ).json()["session_id"]
            result.budget = int(
                http.post(
                    f"/globus/sessions/{session_id}/transfers",
                    json=_body(config.reported_size, missing),
                ).json()["limit"]
            )
        with httpx.Client(
            base_url=daemon.url, headers={"Authorization": f"Bearer {other_token}"}
        ) as http:
            other_sid = http.post(
                "/globus/sessions", json={"access_token": victim.access_token}
            ).json()["session_id"]
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        measured = ctx.Queue()
        other = ctx.Process(
            target=_other,
            args=(daemon.url, other_token, other_sid, stop, measured),
            daemon=True,
        )
        sampler = Sampler(pid)
        result.rss_start = memory_mb(pid).vm_rss
        sampler.start()
        other.start()

        def submit(size: int) -> str:
            with httpx.Client(base_url=daemon.url, headers=headers, timeout=120) as http:
                return str(
                    http.post(
                        f"/globus/sessions/{session_id}/transfers", json=_body(size, missing)
                    ).status_code
                )

        with ThreadPoolExecutor(config.parallel) as pool:
            for size in (config.reported_size, result.budget):
                result.answers.update(pool.map(submit, [size] * config.submits))
        result.phases["submits"] = sampler.take()
        lock = threading.Lock()
        with ThreadPoolExecutor(config.history_readers) as pool:
            for future in [
                pool.submit(_history, daemon.url, headers, result, lock)
                for _ in range(config.history_readers)
            ]:
                future.result()
        result.phases["history"] = sampler.take()
        # The replay reads until the attacker's newest event (the last page's last seq).
        with httpx.Client(base_url=daemon.url, headers=headers) as http:
            last = 0
            after = 0
            while True:
                page = http.get(
                    "/globus/history", params={"limit": 1000, "after": after, "view": "events"}
                ).json()
                if page["events"]:
                    last = page["events"][-1]["seq"]
                if page["next_after"] is None:
                    break
                after = page["next_after"]
        result.ws_events = asyncio.run(_replay(daemon.url, headers, last))
        result.phases["replay"] = sampler.take()
        stop.set()
        result.other, result.other_errors = measured.get(timeout=60)
        other.join(30)
        sampler.stop.set()
        sampler.join(5)
        result.rss_peak = max(result.phases.values())
        result.rss_end = memory_mb(pid).vm_rss
        result.anon_peak = sampler.peak_anon
        result.anon_end = memory_mb(pid).anon
        result.stored_requests, result.request_bytes_stored = _stored(
            daemon.state_dir / "ledger.db"
        )
        result.ledger_mb = sum(p.stat().st_size for p in daemon.state_dir.glob("ledger.db*")) / MB
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=60)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args(argv)
    config = HostileConfig(submits=args.submits, parallel=args.parallel)
    return run_campaign(
        lambda root: run_hostile(config, root=root),
        success="memory bounded, other clients served",
    )


if __name__ == "__main__":
    sys.exit(main())
