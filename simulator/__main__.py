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
from dataclasses import asdict, fields
from pathlib import Path
from types import FrameType

import structlog

from .core import SimConfig
from .errors import SimulatorError
from .service import Simulator
from .world import MAPPED_COLLECTION_ID

__all__ = ["main"]


# Simulator's keyword options, offered as --flags of the same names and with SimConfig's
# defaults (see Simulator for their meaning).
_KNOBS = {
    "bytes_per_second": "",
    "min_task_seconds": "",
    "token_lifetime": "",
    "max_active": "",
    "max_pending": "",
    "rate_limit": "requests per second per user; 0 switches the limit off",
    "rate_window": "",
    "latency": "",
    "retry_interval": "seconds a faulted task backs off",
    "max_filter_task_ids": "task ids allowed in one task_list filter; 0 switches the limit off",
    "time_scale": "simulated seconds per real second",
}
# The limits that 0 switches off (Simulator takes None for that).
_OFF_AT_ZERO = ("rate_limit", "max_filter_task_ids")


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
    defaults = {f.name: f.default for f in fields(SimConfig)}
    for name, help in _KNOBS.items():
        default = defaults[name]
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{help} (default {default:g})".lstrip(),
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
        knobs = {name: getattr(args, name) for name in _KNOBS}
        knobs.update({name: knobs[name] or None for name in _OFF_AT_ZERO})
        sim = Simulator(root=root, host=args.host, port=args.port, world=args.world, **knobs)
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
