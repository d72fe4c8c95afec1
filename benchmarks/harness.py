"""Pieces shared by the benchmarks and the campaigns: the in-process simulator with the real
daemon pointed at it, process measures from /proc, a lean WebSocket subscriber, quantiles
and the printed tables.

Not a benchmark itself (``run.py`` runs the ``bench_*.py`` files only); the benchmarks import
it as a sibling module, the campaigns through ``campaign_common``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import resource
import shutil
import struct
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import structlog

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator

__all__ = [
    "RawSubscriber",
    "cpu_seconds",
    "print_table",
    "quantile",
    "quiet_logs",
    "raise_fd_limit",
    "rss_mb",
    "scratch_folder",
    "simulated_daemon",
]

# Where the ledger benchmarks put their files by default: on the disk the repository is on,
# not in a /tmp that may be memory.
BUILD = Path(__file__).resolve().parent.parent / "build"


def quiet_logs() -> None:
    """Warnings only from this process: the in-process simulator logs every request, and the
    printed tables are what matters."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@contextmanager
def simulated_daemon(
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    poll_interval: float | None = None,
    raised_pending: int | None = None,
    **simulator: Any,
) -> Iterator[tuple[Simulator, DaemonProcess]]:
    """The simulator (files in ``root/sim``, options ``simulator``) and the real daemon
    process (state in ``root/state``) pointed at it, logging warnings only, with ``env`` on
    top; both stopped afterwards (the daemon first).

    ``raised_pending``: the simulator's limit of unfinished tasks per user is raised to
    this, and the daemon's admission queue is told so, with its pacing off: the load
    generators, not the admission rate, set the pace.
    """
    settings = {**(env or {})}
    if raised_pending is not None:
        simulator["max_pending"] = raised_pending
        settings.setdefault("RADICAL_ORBIT_GLOBUS_MAX_PENDING", str(raised_pending))
        settings.setdefault("RADICAL_ORBIT_ADMISSION_RATE", "0")
    with Simulator(root=root / "sim", **simulator) as sim:
        daemon = DaemonProcess(
            state_dir=root / "state",
            env={**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning", **settings},
            poll_interval=poll_interval,
        )
        with daemon:
            yield sim, daemon


@contextmanager
def scratch_folder(name: str, *, under: Path | None = None) -> Iterator[Path]:
    """A fresh folder ``bench-<name>-*`` in ``under`` (default: the repository's ``build/``),
    removed afterwards whatever happened."""
    base = under or BUILD
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS from /proc), NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, in seconds (``/proc/<pid>/stat``,
    in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit(want: int = 8192) -> None:
    """Raise this process's soft descriptor limit: a thousand sockets need more than 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (p99 of 100 values is the 99th smallest); NaN if
    there are none."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)] if ordered else float("nan")


def print_table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> None:
    """Print one line per row, right-aligned under the headers: ``columns`` pairs a header
    with the format of its cells, filled from the row (``"{p99_ms:.1f} ms"``)."""
    lines = [[header for header, _ in columns]]
    lines += [[cell.format_map(row) for _, cell in columns] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


class RawSubscriber(asyncio.Protocol):
    """A lean WebSocket subscriber: it stamps each read the moment its bytes reach the
    process, then parses the frames in it (a relayed heartbeat and an event may share one).

    A thousand full ``websockets`` clients in one Python process cost about as much CPU per
    message as the daemon itself, so their receive times would measure the client more than
    the daemon. :meth:`on_frame` sees every frame with the stamp of its read; by default the
    first event is kept, and parsed only when :meth:`next_event` asks for it.
    """

    TEXT, CLOSE = 0x1, 0x8

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.event: asyncio.Future[tuple[float, bytes]] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        stamp = time.time()
        self.buffer += data
        if not self.handshake.done():
            if b"\r\n\r\n" not in self.buffer:
                return
            head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                self.handshake.set_exception(ConnectionError(f"refused: {head[:80]!r}"))
                return
            self.handshake.set_result(None)
            self.buffer = bytearray(rest)
        self._frames(stamp)

    def _frames(self, stamp: float) -> None:
        # Server frames are unmasked: 2 header bytes, then a 2- or 8-byte length if needed.
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            opcode, size, start = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size, start = struct.unpack_from("!H", buf, pos + 2)[0], pos + 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size, start = struct.unpack_from("!Q", buf, pos + 2)[0], pos + 10
            if len(buf) - start < size:
                break
            self.on_frame(stamp, opcode, bytes(buf[start : start + size]))
            pos = start + size
        del buf[:pos]

    def on_frame(self, stamp: float, opcode: int, payload: bytes) -> None:
        if opcode == self.TEXT and not self.event.done() and b'"type":"event"' in payload:
            self.event.set_result((stamp, payload))

    async def next_event(self) -> tuple[float, dict[str, Any]]:
        """The first event: the stamp of its arrival and the parsed message."""
        stamp, payload = await self.event
        return stamp, json.loads(payload)

    @classmethod
    async def connect(cls, url: str, token: str) -> Self:
        parts = urllib.parse.urlsplit(url)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        loop = asyncio.get_running_loop()
        _, sub = await loop.create_connection(cls, parts.hostname or "", parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        assert sub.transport is not None
        sub.transport.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(sub.handshake, 60)
        return sub

    @classmethod
    async def connect_many(cls, url: str, token: str, count: int, *, batch: int) -> list[Self]:
        """``count`` subscribers, connected ``batch`` at a time (not thousands of handshakes
        at once); this process may hold thousands of sockets for it."""
        raise_fd_limit()
        subscribers: list[Self] = []
        for start in range(0, count, batch):
            size = min(batch, count - start)
            subscribers += await asyncio.gather(*(cls.connect(url, token) for _ in range(size)))
        return subscribers

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
