"""One user's session through a real daemon against a simulator with given limits: the set-up
the request-budget and catch-up tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaign_common import wait_until

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from radical.orbit.simulator.auth import Credentials
from radical.orbit.simulator.testing import running_simulator

__all__ = ["Session", "live_session", "wait_all_succeeded"]


@dataclass
class Session:
    sim: Simulator
    daemon: DaemonProcess
    user: Credentials
    globus: GlobusClient

    def submit(self, *, label: str, destination: str) -> str:
        """One small transfer; its task id."""
        item = {"source": "/home/share/godata/file1.txt", "destination": destination}
        answer = self.globus.submit_transfer(
            TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, [item], label=label
        )
        return str(answer["task_id"])


@contextmanager
def live_session(
    root: Path, *, user: str, poll_interval: float, **limits: Any
) -> Iterator[Session]:
    """A simulator with ``limits`` (room for 1,000 tasks unless said otherwise), a daemon
    that logs warnings only, and a client with a session of the simulator user ``user``."""
    limits = {"max_active": 1000, "max_pending": 1000, **limits}
    with running_simulator(root, **limits) as sim:
        daemon = DaemonProcess(
            state_dir=root / "state",
            env={**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning"},
            poll_interval=poll_interval,
        ).start()
        try:
            creds = sim.add_user(user)
            with GlobusClient(daemon.url, daemon.token) as globus:
                globus.register_session(access_token=creds.access_token)
                yield Session(sim, daemon, creds, globus)
        finally:
            daemon.stop()


def wait_all_succeeded(
    globus: GlobusClient, *, limit: int, timeout: float, what: str = "every task recorded SUCCEEDED"
) -> None:
    """Until every task the session lists (``limit`` at most) is recorded SUCCEEDED."""
    wait_until(
        lambda: all(t["status"] == "SUCCEEDED" for t in globus.list_tasks(limit=limit)),
        timeout=timeout,
        what=what,
    )
