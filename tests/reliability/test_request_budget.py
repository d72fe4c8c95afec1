"""One request budget per credential, end to end against the simulator.

1. A throttling storm: Globus answers 40 ``task_list`` requests with 429 and Retry-After 1 s
   while every task finishes. Before the budget the poller doubled its backoff blindly
   (32 s, then 61 s between sweeps) and the finished tasks were still ACTIVE in the ledger
   150 s later; now it waits what Globus asks and records them as soon as the storm ends.
2. A burst of submits through one credential against Globus's real limit (20 requests/s
   over 10 s): Globus never refuses a request, and the poller keeps sweeping all along.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from pathlib import Path

import pytest
from campaign_common import recording_simulator_requests, wait_until

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180 * UNIT)]

ITEM = {"source": "/home/share/godata/file1.txt", "destination": "/~/budget/f.txt"}
STORM = 40


def _gaps(seconds: list[int]) -> list[int]:
    ordered = sorted(set(seconds))
    return [b - a for a, b in itertools.pairwise(ordered)]


def test_a_throttling_storm_is_waited_out_as_globus_asks(tmp_path: Path) -> None:
    with running_simulator(
        tmp_path, min_task_seconds=3600, max_active=1000, max_pending=1000
    ) as sim:
        daemon = DaemonProcess(
            state_dir=tmp_path / "state",
            env={**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning"},
            poll_interval=2.0,
        ).start()
        try:
            user = sim.add_user("storm")
            with GlobusClient(daemon.url, daemon.token) as globus:
                globus.register_session(access_token=user.access_token)
                ids = [
                    globus.submit_transfer(
                        TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, [ITEM], label=f"s{i}"
                    )["task_id"]
                    for i in range(5)
                ]
                with recording_simulator_requests() as recorder:
                    sim.schedule_fault(route="task_list", status=429, count=STORM, retry_after=1)
                    started = time.monotonic()
                    sim.finish_all()
                    wait_until(
                        lambda: all(
                            t["status"] == "SUCCEEDED" for t in globus.list_tasks(limit=10)
                        ),
                        timeout=120 * UNIT,
                        what="every task recorded SUCCEEDED after the storm",
                    )
                    took = time.monotonic() - started
        finally:
            daemon.stop()
    polls = recorder.per_route["task_list"]
    assert recorder.injected[429] == STORM  # the whole storm was answered, then it ended
    assert len(ids) == 5
    # Every Retry-After is 1 s (and the poll client waits it once inside its retry): the
    # poller keeps asking every second or two, never 32 s later.
    assert max(_gaps(list(polls))) <= 3 * UNIT, sorted(polls.items())
    # 40 answers 1 s apart, then one interval at most.
    assert took <= STORM + 2.0 + 8 * UNIT, took


SUBMITS = 200


def test_a_burst_of_submits_neither_exceeds_the_limit_nor_starves_polling(tmp_path: Path) -> None:
    with running_simulator(
        tmp_path,
        rate_limit=20,
        rate_window=10.0,
        min_task_seconds=0.5,
        max_active=1000,
        max_pending=1000,
    ) as sim:
        daemon = DaemonProcess(
            state_dir=tmp_path / "state",
            env={**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning"},
            poll_interval=0.5,
        ).start()
        try:
            user = sim.add_user("burst")
            with GlobusClient(daemon.url, daemon.token) as globus:
                globus.register_session(access_token=user.access_token)
                first = globus.submit_transfer(
                    TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, [ITEM], label="first"
                )["task_id"]
                with recording_simulator_requests() as recorder:
                    began = int(time.time())

                    def submit(i: int) -> str:
                        return str(
                            globus.submit_transfer(
                                TUTORIAL_COLLECTION_1,
                                TUTORIAL_COLLECTION_2,
                                [ITEM],
                                label=f"b{i}",
                            )["task_id"]
                        )

                    with concurrent.futures.ThreadPoolExecutor(8) as pool:
                        ids = list(pool.map(submit, range(SUBMITS)))
                    ended = int(time.time())
                    wait_until(
                        lambda: all(
                            t["status"] == "SUCCEEDED" for t in globus.list_tasks(limit=200)
                        ),
                        timeout=60 * UNIT,
                        what="every task recorded SUCCEEDED",
                    )
        finally:
            daemon.stop()
    assert len(set(ids)) == SUBMITS and first not in ids
    # Globus (the simulator's limiter, 20/s over 10 s) never had to refuse a request.
    assert recorder.rate_limited["burst"] == 0, recorder.rate_limited
    # 200 submit requests (the daemon makes the submission ids itself) take ~10 s of the
    # budget; polling went on meanwhile, every couple of seconds at the least.
    assert ended - began >= 8, "the burst was too short to tell"
    polls = [s for s in recorder.per_route["task_list"] if began <= s <= ended]
    assert max(_gaps([began, *polls, ended])) <= 2 * UNIT, sorted(polls)
