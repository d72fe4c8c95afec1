"""``orbit-globus-sim``: run the simulator as a process.

Prints one JSON line on stdout once listening::

    {"url": "http://127.0.0.1:PORT", "root": "...", "environ": {...},
     "user": {"username", "access_token", "refresh_token", "client_id", ...}}

and serves until SIGINT/SIGTERM. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import structlog

from .errors import SimulatorError
from .service import Simulator
from .world import MAPPED_COLLECTION_ID

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orbit-globus-sim", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    p.add_argument("--root", type=Path, help="folder of the collections (default: a temp dir)")
    p.add_argument("--world", type=Path, help="world file (JSON); default: tutorial world")
    p.add_argument("--user", default="alice", help="name of the default user")
    p.add_argument(
        "--consent",
        action="store_true",
        help="give the default user the mapped collection's data_access consent",
    )
    p.add_argument("--bytes-per-second", type=float, default=10_000_000.0)
    p.add_argument("--min-task-seconds", type=float, default=0.0)
    p.add_argument("--token-lifetime", type=float, default=48 * 3600.0)
    p.add_argument("--max-active", type=int, default=3)
    p.add_argument("--max-pending", type=int, default=100)
    p.add_argument(
        "--rate-limit",
        type=float,
        default=20.0,
        help="requests per second per user; 0 switches the limit off",
    )
    p.add_argument("--rate-window", type=float, default=10.0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument(
        "--retry-interval", type=float, default=60.0, help="seconds a faulted task backs off"
    )
    p.add_argument(
        "--max-filter-task-ids",
        type=int,
        default=100,
        help="task ids allowed in one task_list filter; 0 switches the limit off",
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="orbit-globus-sim-")
        root = Path(tmp.name)
    try:
        sim = Simulator(
            root=root,
            host=args.host,
            port=args.port,
            world=args.world,
            bytes_per_second=args.bytes_per_second,
            min_task_seconds=args.min_task_seconds,
            token_lifetime=args.token_lifetime,
            max_active=args.max_active,
            max_pending=args.max_pending,
            rate_limit=args.rate_limit or None,
            rate_window=args.rate_window,
            latency=args.latency,
            retry_interval=args.retry_interval,
            max_filter_task_ids=args.max_filter_task_ids or None,
            time_scale=args.time_scale,
        )
        sim.start()
    except (SimulatorError, OSError) as exc:
        print(f"orbit-globus-sim: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        consents = [MAPPED_COLLECTION_ID] if args.consent else []
        creds = sim.add_user(args.user, consents=consents)
        line = {"url": sim.url, "root": str(root), "environ": sim.environ(), "user": asdict(creds)}
        # The credentials go to our own stdout only: the parent that started us reads them.
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        stop.wait()
    finally:
        sim.stop()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
