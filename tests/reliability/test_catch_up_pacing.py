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
from campaign_common import recording_simulator_requests
from reliability_support import live_session, wait_all_succeeded

from radical.orbit.daemon.poller.loop import CATCH_UP_RATE
from timing import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 * UNIT)]

TASKS = 60


def test_catch_up_event_lists_are_paced(tmp_path: Path) -> None:
    with live_session(tmp_path, user="pacing", poll_interval=0.5, min_task_seconds=3600) as session:
        for i in range(TASKS):
            session.submit(label=f"p{i}", destination="/~/pacing/f.txt")
        session.daemon.kill()
        assert len(session.sim.finish_all()) == TASKS
        with recording_simulator_requests() as recorder:
            session.daemon.start()
            session.globus.register_session(access_token=session.user.access_token)
            started = time.monotonic()
            wait_all_succeeded(session.globus, limit=TASKS, timeout=60 * UNIT)
            took = time.monotonic() - started

    event_lists = recorder.per_route["task_event_list"]
    assert sum(event_lists.values()) == TASKS  # each finished task's history, once
    # Whole seconds of the wall clock: a paced burst may straddle two of them.
    assert max(event_lists.values()) <= CATCH_UP_RATE + 1, event_lists
    assert took >= (TASKS - 1) / CATCH_UP_RATE - 1
