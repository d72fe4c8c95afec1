"""The pure sweep planner: which tasks a sweep asks, in which batches, and what comes next."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.daemon.poller.plan import (
    BATCH,
    CATCH_UP_GAP,
    MIN_SWEEP_REQUESTS,
    THROTTLE_WINDOW,
    Outcome,
    Pace,
    SweepPlan,
    SweepResult,
    catch_up_allowance,
    next_pace,
    plan_sweep,
    sweep_allowance,
    sweep_cost,
)

INTERVAL = 10.0


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"t{i:05d}" for i in range(start, start + n)]


def _plan(tasks: Iterable[str], **options: Any) -> SweepPlan:
    """plan_sweep with what a test does not vary: nothing observed, unobserved since 0 and
    planned at 1, one request a sweep and four catch-ups."""
    defaults: dict[str, Any] = {
        "observed": {},
        "unobserved_since": 0.0,
        "now": 1.0,
        "interval": INTERVAL,
        "allowance": 1,
        "catch_ups": 4,
    }
    return plan_sweep(tasks, **(defaults | options))


def _paces(outcomes: Iterable[SweepResult], **options: Any) -> Iterator[Pace]:
    """next_pace sweep after sweep, as the shell calls it: each gets the failures the one
    before counted."""
    failures = 0
    for result in outcomes:
        pace = next_pace(result, failures=failures, **options)
        yield pace
        failures = pace.failures


@given(
    n=st.integers(min_value=0, max_value=2500),
    allowance=st.integers(min_value=1, max_value=30),
    known=st.floats(min_value=0, max_value=1),
    data=st.data(),
)
def test_a_plan_never_exceeds_its_allowance(
    n: int, allowance: int, known: float, data: st.DataObject
) -> None:
    tasks = _ids(n)
    observed = {
        t: data.draw(st.floats(min_value=0, max_value=1000)) for t in tasks[: int(n * known)]
    }
    plan = _plan(tasks, observed=observed, unobserved_since=500.0, now=1000.0, allowance=allowance)
    asked = [t for batch in plan.batches for t in batch]
    assert plan.requests <= allowance
    assert all(0 < len(batch) <= BATCH for batch in plan.batches)
    assert len(asked) == len(set(asked)) == min(n, allowance * BATCH)
    assert set(asked) <= set(tasks)
    # Every task left out was observed no earlier than every task asked.
    left = set(tasks) - set(asked)
    if asked and left:
        assert max(plan.observed[t] for t in asked) <= min(plan.observed[t] for t in left)
    # A task never observed counts as unobserved since the given time.
    assert all(plan.observed[t] == observed.get(t, 500.0) for t in tasks)


@given(
    changed=st.integers(min_value=0, max_value=50),
    spent=st.integers(min_value=0, max_value=20),
    interval=st.floats(min_value=0.05, max_value=60),
)
def test_catch_ups_stay_within_the_sweep_allowance(
    changed: int, spent: int, interval: float
) -> None:
    tasks = _ids(changed)
    allowance = catch_up_allowance(interval=interval)
    plan = _plan(
        tasks,
        observed={t: float(i) for i, t in enumerate(reversed(tasks))},
        now=1000.0,
        interval=interval,
        catch_ups=allowance,
    )
    now, later = plan.take_catch_ups(tasks, spent=spent)
    assert len(now) + spent <= max(allowance, spent)
    assert sorted(now + later) == sorted(tasks)
    # The least recently observed are caught up first.
    if now and later:
        assert max(plan.observed[t] for t in now) <= min(plan.observed[t] for t in later)


def test_only_tasks_unobserved_for_the_gap_want_a_catch_up() -> None:
    now = 1000.0
    edge = now - CATCH_UP_GAP * INTERVAL
    plan = _plan(
        ["old", "fresh", "edge", "new"],
        observed={"old": edge - 0.1, "fresh": now - INTERVAL, "edge": edge},
        unobserved_since=float("-inf"),
        now=now,
    )
    assert [t for t in ("old", "fresh", "edge", "new") if plan.wants_catch_up(t)] == ["old", "new"]


@given(
    script=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=300),  # tasks submitted before the sweep
            st.integers(min_value=0, max_value=300),  # tasks finished before the sweep
            st.floats(min_value=0.0, max_value=3 * INTERVAL),  # time since the last sweep
        ),
        min_size=1,
        max_size=25,
    ),
    allowance=st.integers(min_value=1, max_value=4),
)
def test_no_open_task_is_starved(script: list[tuple[int, int, float]], allowance: int) -> None:
    """Run the planner sweep after sweep as the shell does, with tasks coming and going:
    every task is asked about within ceil(most open / tasks per sweep) sweeps of opening."""
    open_since: dict[str, int] = {}  # task -> sweep number it was first open at
    observed: dict[str, float] = {}
    clock, previous, made = 0.0, float("-inf"), 0
    waits: list[int] = []
    most = 0
    for sweep, (new, done, gap) in enumerate(script):
        for task_id in _ids(new, made):
            open_since[task_id] = sweep
        made += new
        for task_id in sorted(open_since)[:done]:
            del open_since[task_id]
            observed.pop(task_id, None)
        most = max(most, len(open_since))
        clock += gap + 0.001
        plan = _plan(
            open_since, observed=observed, unobserved_since=previous, now=clock, allowance=allowance
        )
        previous = clock
        for task_id, at in plan.observed.items():
            observed.setdefault(task_id, at)
        for batch in plan.batches:
            for task_id in batch:
                waits.append(sweep - open_since[task_id])
                open_since[task_id] = sweep + 1  # the next wait starts now
                observed[task_id] = clock + 0.0001  # asked after the sweep began
        bound = math.ceil(most / (allowance * BATCH)) if most else 1
        # Whoever is still open and unasked has not waited past the bound either.
        assert all(sweep - since < bound for since in open_since.values())
    assert all(wait < max(1, math.ceil(most / (allowance * BATCH))) for wait in waits)


OUTCOMES = st.sampled_from(list(Outcome))


@given(
    outcomes=st.lists(
        st.tuples(
            OUTCOMES,
            st.one_of(st.none(), st.floats(min_value=0, max_value=10_000)),
            st.floats(min_value=0, max_value=100),
        ),
        max_size=200,
    ),
    interval=st.floats(min_value=0.01, max_value=600),
    max_backoff=st.floats(min_value=0.01, max_value=3600),
    open_tasks=st.integers(min_value=0, max_value=5000),
)
def test_backoff_is_bounded(
    outcomes: list[tuple[Outcome, float | None, float]],
    interval: float,
    max_backoff: float,
    open_tasks: int,
) -> None:
    failures = 0
    for outcome, retry, elapsed in outcomes:
        pace = next_pace(
            SweepResult(outcome=outcome, retry_after=retry),
            failures=failures,
            elapsed=elapsed,
            interval=interval,
            max_backoff=max_backoff,
            open_tasks=open_tasks,
        )
        assert 0 <= pace.delay <= max(interval, max_backoff)
        if outcome in (Outcome.OK, Outcome.IDLE, Outcome.PARTIAL):
            assert pace.delay <= interval  # the interval stays the upper bound
            assert pace.failures == 0
        if outcome is Outcome.THROTTLED:
            wanted = retry if retry is not None else THROTTLE_WINDOW
            assert pace.delay == min(max(interval, max_backoff), wanted)
        # Sooner than the interval only after a clean sweep, and only with work to watch.
        assert pace.early == (outcome is Outcome.OK and open_tasks > 0)
        failures = pace.failures


def test_failures_double_from_the_interval_and_a_success_resets() -> None:
    outcomes = [Outcome.UNKNOWN] * 5 + [Outcome.OK, Outcome.ERROR]
    paces = _paces(
        [SweepResult(outcome=o) for o in outcomes],
        elapsed=1.0,
        interval=2.0,
        max_backoff=30.0,
        open_tasks=1,
    )
    delays = [pace.delay for pace in paces]
    assert delays == [4.0, 8.0, 16.0, 30.0, 30.0, 1.0, 4.0]


def test_a_throttled_sweep_waits_what_globus_asked_not_a_doubling() -> None:
    """40 answers 429 with Retry-After 1 s: every pause is 1 s (before: 32 s, then 61 s)."""
    paces = _paces(
        [SweepResult(outcome=Outcome.THROTTLED, retry_after=1.0)] * 40,
        elapsed=1.0,
        interval=10.0,
        max_backoff=60.0,
        open_tasks=100,
    )
    delays = [pace.delay for pace in paces]
    assert set(delays) == {1.0}


def test_allowances() -> None:
    assert sweep_allowance(rate=18.0, interval=10.0) == 180
    assert sweep_allowance(rate=18.0, interval=0.2) == MIN_SWEEP_REQUESTS
    assert catch_up_allowance(interval=10.0) == 80
    with pytest.raises(ValueError, match="allowance"):
        plan_sweep([], observed={}, unobserved_since=0, now=0, interval=1, allowance=0, catch_ups=0)


@given(
    n=st.integers(min_value=1, max_value=1200),
    allowance=st.integers(min_value=1, max_value=15),
    at=st.integers(min_value=0, max_value=14),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=150)),
)
def test_a_refused_filter_rebatches_the_rest_within_the_allowance(
    n: int, allowance: int, at: int, cap: int | None
) -> None:
    """Globus refuses batch ``at`` as too long: the same tasks from it on, in the order
    planned, in smaller batches, and the sweep never sends more than its allowance."""
    tasks = _ids(n)
    plan = _plan(tasks, allowance=allowance)
    index = min(at, plan.requests - 1)
    message = f"a filter may name at most {cap} task ids" if cap is not None else "bad filter"
    smaller = plan.after_refusal(
        index, spent=index + 1, http_status=400, code="InvalidFilter", message=message
    )
    refused = plan.batches[index]
    if len(refused) < 2:
        assert smaller is None
        return
    assert smaller is not None
    assert 1 <= smaller.batch < len(refused)
    if cap is not None and cap < len(refused):
        assert smaller.batch == cap
    assert smaller.batches[:index] == plan.batches[:index]
    rest = [t for batch in smaller.batches[index:] for t in batch]
    planned = [t for batch in plan.batches[index:] for t in batch]
    assert rest == planned[: len(rest)]
    assert all(len(batch) <= smaller.batch for batch in smaller.batches[index:])
    # Requests sent (refused one included) plus those still to send.
    assert index + 1 + len(smaller.batches[index:]) <= allowance
    if allowance > index + 1:
        assert rest  # room left: the refused tasks are asked again at once


def test_other_refusals_do_not_rebatch() -> None:
    plan = _plan(_ids(250), interval=1, allowance=5)
    for status, code, message in [
        (500, "ServerError", "filter"),
        (400, "BadRequest", "limit must be at most 1000"),
        (429, "RateLimited", None),
    ]:
        assert (
            plan.after_refusal(0, spent=1, http_status=status, code=code, message=message) is None
        )
    assert plan.after_refusal(0, spent=1, http_status=414, code=None, message=None) is not None
    # A later sweep plans with the smaller batch, and its cost counts it.
    small = _plan(_ids(250), interval=1, allowance=100, batch=50)
    assert [len(b) for b in small.batches] == [50] * 5
    assert sweep_cost(250, allowance=100, batch=50) == 5


def test_trouble_details_share_the_sweeps_event_list_allowance() -> None:
    plan = _plan(["a", "b", "c"], interval=1)
    rows = {t: {"task_id": t, "faults": 0, "needs_attention": None} for t in ("a", "b", "c")}
    docs = [{"task_id": t, "status": "ACTIVE", "faults": 2} for t in ("a", "b", "c")]
    assert plan.take_details(rows, docs, spent=0) == (["a", "b", "c"], [])
    assert plan.take_details(rows, docs, spent=2) == (["a", "b"], [])
    assert plan.take_details(rows, docs, spent=4) == ([], [])
