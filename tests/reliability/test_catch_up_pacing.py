"""Found by the fault soak: a catch-up sweep fetched one Globus event list per changed task
as fast as four threads could, e.g. ~190 requests in a few seconds when a session's poller
came back from a long backoff, and pushed its user past Globus's 20 requests/s budget (the
simulator's rate limiter refused some). Catch-up event lists are now paced per session.

Here: 60 tasks finish while the daemon is dead; after the restart and re-registration the
catch-up must fetch each task's event list once, at most ``CATCH_UP_RATE`` per second, and
still record every task SUCCEEDED.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from campaign_common import recording_simulator_requests, wait_until

from radical.orbit import GlobusClient
from radical.orbit.daemon.poller.loop import CATCH_UP_RATE
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 * UNIT)]

TASKS = 60
ITEM = {"source": "/home/share/godata/file1.txt", "destination": "/~/pacing/f.txt"}


def test_catch_up_event_lists_are_paced(tmp_path: Path) -> None:
    with running_simulator(
        tmp_path, min_task_seconds=3600, max_active=1000, max_pending=1000
    ) as sim:
        daemon = DaemonProcess(
            state_dir=tmp_path / "state",
            env={**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning"},
            poll_interval=0.5,
        ).start()
        try:
            user = sim.add_user("pacing")
            with GlobusClient(daemon.url, daemon.token) as globus:
                globus.register_session(access_token=user.access_token)
                for i in range(TASKS):
                    globus.submit_transfer(
                        TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, [ITEM], label=f"p{i}"
                    )
                daemon.kill()
                assert len(sim.finish_all()) == TASKS
                with recording_simulator_requests() as recorder:
                    daemon.start()
                    globus.register_session(access_token=user.access_token)
                    started = time.monotonic()
                    wait_until(
                        lambda: all(
                            t["status"] == "SUCCEEDED" for t in globus.list_tasks(limit=TASKS)
                        ),
                        timeout=60 * UNIT,
                        what="every task recorded SUCCEEDED",
                    )
                    took = time.monotonic() - started
        finally:
            daemon.stop()

    event_lists = recorder.per_route["task_event_list"]
    assert sum(event_lists.values()) == TASKS  # each finished task's history, once
    # Whole seconds of the wall clock: a paced burst may straddle two of them.
    assert max(event_lists.values()) <= CATCH_UP_RATE + 1, event_lists
    assert took >= (TASKS - 1) / CATCH_UP_RATE - 1
