"""One request budget per credential, end to end against the simulator.

1. A throttling storm: Globus answers ``task_list`` requests with 429 and Retry-After 1 s
   (10 in a row; 40 in the "long" profile) while every task finishes. Before the budget the
   poller doubled its backoff blindly (a storm of 40: 32 s, then 61 s between sweeps) and
   the finished tasks were still ACTIVE in the ledger 150 s later; now it waits what Globus
   asks and records them as soon as the storm ends.
2. A burst of submits through one credential against Globus's real limit (20 requests/s
   over 10 s): Globus never refuses a request, and the poller keeps sweeping all along.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from pathlib import Path

import pytest
from campaign_common import recording_simulator_requests
from reliability_support import live_session, wait_all_succeeded

from timing import UNIT, size

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180 * UNIT)]

DESTINATION = "/~/budget/f.txt"
# 429 answers in a row, one Retry-After second apart. A poller that backs off blindly instead
# of waiting what Globus asks doubles its pause from the 2 s poll interval at each refused
# sweep: a few refusals already leave gaps past the 3 s allowed below. The "long" profile
# runs the 40 of the storm that found it.
STORM = size("BUDGET_STORM", default=10, long=40)


def _gaps(seconds: list[int]) -> list[int]:
    ordered = sorted(set(seconds))
    return [b - a for a, b in itertools.pairwise(ordered)]


def test_a_throttling_storm_is_waited_out_as_globus_asks(tmp_path: Path) -> None:
    with live_session(tmp_path, user="storm", poll_interval=2.0, min_task_seconds=3600) as session:
        ids = [session.submit(label=f"s{i}", destination=DESTINATION) for i in range(5)]
        with recording_simulator_requests() as recorder:
            session.sim.schedule_fault(route="task_list", status=429, count=STORM, retry_after=1)
            started = time.monotonic()
            session.sim.finish_all()
            wait_all_succeeded(
                session.globus,
                limit=10,
                timeout=120 * UNIT,
                what="every task recorded SUCCEEDED after the storm",
            )
            took = time.monotonic() - started
    polls = recorder.per_route["task_list"]
    assert recorder.injected[429] == STORM  # the whole storm was answered, then it ended
    assert len(ids) == 5
    # Every Retry-After is 1 s (and the poll client waits it once inside its retry): the
    # poller keeps asking every second or two, never 32 s later.
    assert max(_gaps(list(polls))) <= 3 * UNIT, sorted(polls.items())
    # STORM answers 1 s apart, then one interval at most.
    assert took <= STORM + 2.0 + 8 * UNIT, took


SUBMITS = 200


def test_a_burst_of_submits_neither_exceeds_the_limit_nor_starves_polling(tmp_path: Path) -> None:
    with live_session(
        tmp_path,
        user="burst",
        poll_interval=0.5,
        rate_limit=20,
        rate_window=10.0,
        min_task_seconds=0.5,
    ) as session:
        first = session.submit(label="first", destination=DESTINATION)
        with recording_simulator_requests() as recorder:
            began = int(time.time())
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                ids = list(
                    pool.map(
                        lambda i: session.submit(label=f"b{i}", destination=DESTINATION),
                        range(SUBMITS),
                    )
                )
            ended = int(time.time())
            wait_all_succeeded(session.globus, limit=200, timeout=60 * UNIT)
    assert len(set(ids)) == SUBMITS and first not in ids
    # Globus (the simulator's limiter, 20/s over 10 s) never had to refuse a request.
    assert recorder.rate_limited["burst"] == 0, recorder.rate_limited
    # 200 submit requests (the daemon makes the submission ids itself) take ~10 s of the
    # budget; polling went on meanwhile, every couple of seconds at the least.
    assert ended - began >= 8, "the burst was too short to tell"
    polls = [s for s in recorder.per_route["task_list"] if began <= s <= ended]
    assert max(_gaps([began, *polls, ended])) <= 2 * UNIT, sorted(polls)
