#!/usr/bin/env python3
"""The README's main job: simulator + daemon + the example transfer, end to end, offline.

    python3 dev.py demo
    python3 dev.py demo --bridge    # three endpoints behind one bridge (demo_bridge.py)

Starts the bundled Globus simulator (slowed down so progress is visible), starts the real
endpoint daemon pointed at it, points the example at both through the same environment a
user would set for real Globus, runs ``examples/example_globus.py``, and cleans up.
Everything lives in a temporary folder; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import structlog

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials

EXAMPLES = Path(__file__).resolve().parent
# The godata folder holds 141 bytes: at 20 B/s the copy takes about 7 s, long enough for
# several progress notifications, short enough for a demo.
BYTES_PER_SECOND = 20.0
POLL_INTERVAL = 0.5


@contextmanager
def offline_globus(bytes_per_second: float) -> Iterator[tuple[Path, Simulator, Credentials]]:
    """A temporary folder with the bundled Globus simulator running in it (``globus/``) and
    its user "demo"; everything is removed afterwards."""
    # The in-process simulator logs every request; the demo shows the example's output only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="orbit-demo-") as tmp:
        root = Path(tmp)
        with Simulator(root=root / "globus", bytes_per_second=bytes_per_second) as sim:
            print(f"simulator: Globus Transfer + Auth at {sim.url}")
            yield root, sim, sim.add_user("demo")


def run_example() -> int:
    """Run examples/example_globus.py's main() in this process (it reads os.environ)."""
    spec = importlib.util.spec_from_file_location("example_globus", EXAMPLES / "example_globus.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {EXAMPLES / 'example_globus.py'}")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return int(example.main())


def show_metrics(url: str) -> None:
    """What `curl URL/metrics` shows an operator after the run (histogram buckets left out)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("orbit_") and "_bucket" not in line and "_created" not in line
    ]
    print(f"\nmetrics (curl {url}/metrics):")
    print("\n".join(f"  {line}" for line in lines))


def main() -> int:
    started = time.monotonic()
    with offline_globus(BYTES_PER_SECOND) as (root, sim, user):
        daemon = DaemonProcess(
            state_dir=root / "endpoint", env=sim.environ(), poll_interval=POLL_INTERVAL
        )
        with daemon:
            print(f"daemon:    {daemon.url} (state in {daemon.state_dir})\n")
            # Exactly what a user sets for real Globus, with the simulator's values.
            os.environ.update(
                {
                    "RADICAL_ORBIT_URL": daemon.url,
                    "RADICAL_ORBIT_TOKEN": daemon.token,
                    "GLOBUS_REFRESH_TOKEN": user.refresh_token,
                    "GLOBUS_CLIENT_ID": user.client_id,
                }
            )
            code = run_example()
            show_metrics(daemon.url)
    verdict = "transfer SUCCEEDED" if code == 0 else "transfer did not succeed"
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s: {verdict}")
    return code


if __name__ == "__main__":
    if "--bridge" in sys.argv[1:]:
        sys.path.insert(0, str(EXAMPLES))
        from demo_bridge import main as bridge_main

        sys.exit(bridge_main())
    sys.exit(main())
