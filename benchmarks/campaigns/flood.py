"""Connection flood campaign: thousands of half-open connections against the real daemon.

Anyone on the host can open TCP connections to the daemon without a token. This campaign
holds ``connections`` of them open at once, each having sent ``GET / HTTP/1.1`` and one
header line but never the blank line that ends the headers (reconnecting whenever the
daemon closes one), for ``seconds``. Meanwhile an authenticated client calls
``GET /endpoints`` every 50 ms over one keep-alive connection, and every 250 ms over a
fresh connection, and the campaign watches the daemon's open file descriptors and the
size of its log.

What must hold: the keep-alive client's calls all answer, the slowest within 1 s; fresh
connections are answered too; the daemon's descriptors stay under its limit; its log
grows by kilobytes, not megabytes; once the flood stops, its descriptors come back down.

    python3 dev.py campaigns flood [--connections 5000] [--seconds 20] [--nofile N]

``--nofile`` is the soft descriptor limit the daemon is started with (the hard one stays),
e.g. 1024 as under a systemd unit without ``LimitNOFILE``; the daemon raises it itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import http.client
import multiprocessing
import os
import resource
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from campaign_common import cpu_seconds, markdown_table, run_campaign

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator

__all__ = ["FloodConfig", "FloodResult", "run_flood"]

_HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: flood\r\n"


@dataclasses.dataclass(frozen=True)
class FloodConfig:
    connections: int = 5000
    seconds: float = 20.0
    # The daemon's header timeout: half-open connections are closed after it.
    header_timeout: float = 10.0
    nofile: int | None = None
    # Acceptable keep-alive p99 during the flood.
    max_latency: float = 1.0


@dataclasses.dataclass
class FloodResult:
    config: FloodConfig
    peak_open: int = 0
    connects: int = 0
    connect_errors: int = 0
    closed_by_daemon: int = 0
    keepalive: list[float] = dataclasses.field(default_factory=list)
    # (seconds into the flood, latency) of keep-alive answers slower than 250 ms
    slow: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    keepalive_errors: list[str] = dataclasses.field(default_factory=list)
    fresh: list[float] = dataclasses.field(default_factory=list)
    fresh_errors: list[str] = dataclasses.field(default_factory=list)
    daemon_nofile: int = 0
    fds_before: int = 0
    fds_peak: int = 0
    fds_after: int = 0
    log_growth: int = 0
    resource_log_lines: int = 0
    daemon_cpu: float = 0.0
    reconnects: int = 0

    def table(self) -> str:
        def ms(values: list[float], q: float) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.0f} ms"

        c = self.config
        ka, fr = self.keepalive, self.fresh

        def spread(values: list[float]) -> str:
            return f"{ms(values, 0.5)} / {ms(values, 0.99)} / {ms(values, 1.0)}"

        rows = [
            ("half-open connections wanted / peak held", f"{c.connections} / {self.peak_open}", ""),
            ("flood duration", f"{c.seconds:.0f} s", ""),
            ("header timeout", f"{c.header_timeout:g} s", ""),
            (
                "daemon descriptor limit (started with)",
                f"{self.daemon_nofile} ({c.nofile or 'inherited'})",
                "",
            ),
            ("connects / refused or reset", f"{self.connects} / {self.connect_errors}", ""),
            ("half-open connections closed by the daemon", self.closed_by_daemon, "> 0"),
            ("keep-alive calls / errors", f"{len(ka)} / {len(self.keepalive_errors)}", "0 errors"),
            ("**keep-alive p50 / p99 / max**", spread(ka), f"p99 < {c.max_latency * 1000:.0f} ms"),
            (
                "fresh-connection calls / errors",
                f"{len(fr)} / {len(self.fresh_errors)}",
                "0 errors",
            ),
            ("fresh-connection p50 / p99 / max", spread(fr), ""),
            (
                "daemon fds before / peak / after",
                f"{self.fds_before} / {self.fds_peak} / {self.fds_after}",
                "peak < limit",
            ),
            ("daemon CPU during the flood", f"{self.daemon_cpu:.1f} s", ""),
            ("daemon log growth", f"{self.log_growth / 1024:.1f} kB", "< 1 MB"),
            ("'out of a system resource' log lines", self.resource_log_lines, ""),
            ("machine load at the end (1 / 5 / 15 min)", self.load().split(" ", 2)[2], ""),
        ]
        return markdown_table(("connection flood", "measured", "target"), rows)

    def load(self) -> str:
        return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())

    def problems(self) -> list[str]:
        out = []
        if self.keepalive_errors:
            out.append(f"keep-alive calls failed: {self.keepalive_errors[:3]}")
        ordered = sorted(self.keepalive)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
        if not p99 < self.config.max_latency:
            out.append(f"keep-alive p99 {p99:.2f} s")
        if self.fresh_errors:
            out.append(f"fresh-connection calls failed: {self.fresh_errors[:3]}")
        if self.daemon_nofile and self.fds_peak >= self.daemon_nofile:
            out.append(f"the daemon ran out of descriptors ({self.fds_peak})")
        if self.log_growth > 1 << 20:
            out.append(f"the daemon logged {self.log_growth} bytes during the flood")
        if self.fds_after > self.fds_before + 32:
            out.append(f"descriptors not released: {self.fds_before} -> {self.fds_after}")
        return out


def _fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _nofile_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


def _flood(address: tuple[str, int], target: int, stop: Any, counts: Any) -> None:
    """Keep ``target`` half-open connections to ``address``, reconnecting closed ones.

    Runs in a process of its own, so its work never delays the measuring client; counts
    are (peak open, connects, connect errors, closed by the daemon).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < target + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, target + 256), hard))
    sel = selectors.DefaultSelector()
    peak = opened = connects = errors = closed = 0
    try:
        while not stop.is_set():
            # At most a few hundred new connections per turn, as a real flood.
            for _ in range(min(200, target - opened)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                if sock.connect_ex(address) not in (0, errno.EINPROGRESS):
                    sock.close()
                    errors += 1
                    continue
                sel.register(sock, selectors.EVENT_WRITE, "connecting")
                opened += 1
                connects += 1
            peak = max(peak, opened)
            for key, events in sel.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "connecting":
                    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        with contextlib.suppress(OSError):
                            sock.send(_HALF_REQUEST)
                        sel.modify(sock, selectors.EVENT_READ, "open")
                        continue
                    errors += 1
                elif events & selectors.EVENT_READ:
                    # Any answer (408) or EOF means the daemon gave up on it.
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                    closed += 1
                sel.unregister(sock)
                sock.close()
                opened -= 1
            counts[:] = [peak, connects, errors, closed]
    finally:
        for key in list(sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        sel.close()


def _fresh_call(url: str, headers: dict[str, str]) -> None:
    """One call on a new connection (http.client: no TLS context built per call)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/endpoints", headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise OSError(f"status {answer.status}")
    finally:
        conn.close()


def _client_loop(
    url: str,
    headers: dict[str, str],
    stop: threading.Event,
    result: FloodResult,
    *,
    fresh: bool,
) -> None:
    period = 0.25 if fresh else 0.05
    began = time.monotonic()
    last_port = None
    with httpx.Client(base_url=url, headers=headers, timeout=10) as keep:
        keep.get("/endpoints").raise_for_status()
        while not stop.is_set():
            start = time.monotonic()
            try:
                if fresh:
                    _fresh_call(url, headers)
                else:
                    answer = keep.get("/endpoints")
                    answer.raise_for_status()
                    port = answer.extensions["network_stream"].get_extra_info("client_addr")
                    if port != last_port:
                        result.reconnects += 1
                        last_port = port
            except (httpx.HTTPError, OSError) as exc:
                (result.fresh_errors if fresh else result.keepalive_errors).append(
                    f"{type(exc).__name__}: {exc}"
                )
            else:
                took = time.monotonic() - start
                (result.fresh if fresh else result.keepalive).append(took)
                if not fresh and took > 0.25:
                    result.slow.append((round(start - began, 1), round(took, 2)))
            stop.wait(max(0.0, period - (time.monotonic() - start)))


def run_flood(config: FloodConfig, *, root: Path) -> FloodResult:
    result = FloodResult(config=config)
    with Simulator(root=root / "sim", rate_limit=None) as sim:
        env = {
            **sim.environ(),
            "RADICAL_ORBIT_LOG_LEVEL": "info",
            "RADICAL_ORBIT_HEADER_TIMEOUT": str(config.header_timeout),
            **({"PYTHONPATH": os.environ["FLOOD_PROBE"]} if os.environ.get("FLOOD_PROBE") else {}),
        }
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if config.nofile is not None:
            # The daemon inherits this soft limit (the hard one stays), as under a unit
            # without LimitNOFILE (systemd: soft 1024, hard 524288).
            resource.setrlimit(resource.RLIMIT_NOFILE, (config.nofile, hard))
        try:
            daemon = DaemonProcess(state_dir=root / "state", env=env).start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            result.daemon_nofile = _nofile_of(pid)
            host, port = daemon.url.removeprefix("http://").rsplit(":", 1)
            stop = threading.Event()
            clients = [
                threading.Thread(
                    target=_client_loop,
                    args=(daemon.url, daemon.headers, stop, result),
                    kwargs={"fresh": fresh},
                    daemon=True,
                )
                for fresh in (False, True)
            ]
            result.fds_before = _fd_count(pid)
            log_size = daemon.log_path.stat().st_size
            ctx = multiprocessing.get_context("spawn")
            flood_stop = ctx.Event()
            counts = ctx.Array("q", 4)
            flooder = ctx.Process(
                target=_flood,
                args=((host, int(port)), config.connections, flood_stop, counts),
                daemon=True,
            )
            flooder.start()
            for thread in clients:
                thread.start()
            cpu = cpu_seconds(pid)
            end = time.monotonic() + config.seconds
            while time.monotonic() < end:
                result.fds_peak = max(result.fds_peak, _fd_count(pid))
                time.sleep(0.2)
            result.daemon_cpu = cpu_seconds(pid) - cpu
            stop.set()
            for thread in clients:
                thread.join(30)
            flood_stop.set()
            flooder.join(30)
            result.peak_open, result.connects, result.connect_errors, result.closed_by_daemon = (
                counts[:]
            )
            # The daemon sees the flood's sockets close; give it a moment to notice.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                result.fds_after = _fd_count(pid)
                if result.fds_after <= result.fds_before + 32:
                    break
                time.sleep(0.2)
            text = daemon.log_path.read_bytes()[log_size:]
            result.log_growth = len(text)
            result.resource_log_lines = text.count(b"out of a system resource")
        finally:
            daemon.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--nofile", type=int, default=None)
    args = parser.parse_args(argv)
    config = FloodConfig(
        connections=args.connections,
        seconds=args.seconds,
        header_timeout=args.header_timeout,
        nofile=args.nofile,
    )
    return run_campaign(
        lambda root: run_flood(config, root=root),
        success="authenticated clients unaffected by the flood",
    )


if __name__ == "__main__":
    sys.exit(main())
