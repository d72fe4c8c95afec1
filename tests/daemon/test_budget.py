"""The pure request budget of a credential: rate, shares, caps and Retry-After holds."""

from __future__ import annotations

import bisect
import collections
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.daemon.errors import ConfigError
from radical.orbit.daemon.globus.budget import (
    CATCH_UP_RATE,
    DEFAULT_SHARES,
    Bucket,
    RequestBudget,
    Use,
)
from radical.orbit.daemon.runtime.config import load_config

USES = list(Use)


def _run(
    budget: RequestBudget,
    asks: list[tuple[float, Use]],
    *,
    until: float,
    hold: tuple[float, float] | None = None,
) -> list[tuple[float, Use]]:
    """Drive ``budget`` as the asyncio gate does: ask at the given times, grant whenever it
    says it can; ``hold`` = (at, seconds): a 429's Retry-After. Returns (time, use) of every
    grant."""
    asks = sorted(asks, key=lambda a: a[0])
    use_of: dict[int, Use] = {}
    grants: list[tuple[float, Use]] = []
    now, i = 0.0, 0
    while now <= until:
        if hold is not None and now >= hold[0]:
            budget.hold(until=now + hold[1])
            hold = None
        while i < len(asks) and asks[i][0] <= now:
            use_of[budget.ask(asks[i][1])] = asks[i][1]
            i += 1
        for ticket in budget.grant(now=now):
            grants.append((now, use_of.pop(ticket)))
        wake = budget.wake_at(now=now)
        upcoming = [
            t
            for t in (wake, asks[i][0] if i < len(asks) else None, hold[0] if hold else None)
            if t is not None
        ]
        if not upcoming:
            break
        now = max(now + 1e-6, min(upcoming))
    return grants


def _most_in(times: list[float], span: float) -> int:
    """The most grants inside any closed interval of ``span`` seconds."""
    return max((bisect.bisect_right(times, t + span) - k for k, t in enumerate(times)), default=0)


ASKS = st.lists(
    st.tuples(st.floats(min_value=0, max_value=20), st.sampled_from(USES)), max_size=400
)


@given(asks=ASKS, limit=st.sampled_from([1.0, 5.0, 20.0]), window=st.sampled_from([1.0, 10.0]))
def test_every_window_stays_under_the_limit(
    asks: list[tuple[float, Use]], limit: float, window: float
) -> None:
    budget = RequestBudget.for_limit(limit=limit, window=window, shares=DEFAULT_SHARES, now=0.0)
    grants = _run(budget, asks, until=60.0)
    times = [t for t, _ in grants]
    # Globus's meter: at most limit * window in any window, however it is placed.
    assert _most_in(times, window) <= limit * window + 1e-9
    catch_ups = [t for t, use in grants if use is Use.CATCH_UP]
    assert _most_in(catch_ups, 1.0) <= CATCH_UP_RATE + 1
    # Everything asked is granted in the end (nothing lost, nobody starved).
    assert len(grants) == len(asks)


@given(asks=ASKS, hold=st.floats(min_value=0.1, max_value=30), at=st.floats(0, 20))
def test_nothing_goes_while_globus_asked_to_wait(
    asks: list[tuple[float, Use]], hold: float, at: float
) -> None:
    budget = RequestBudget.for_limit(limit=20, window=10, shares=DEFAULT_SHARES, now=0.0)
    grants = _run(budget, asks, until=200.0, hold=(at, hold))
    assert not [t for t, _ in grants if at < t < at + hold - 1e-9]
    assert len(grants) == len(asks)


@pytest.mark.parametrize("flood", [Use.SUBMIT, Use.POLL])
def test_a_flood_of_one_use_does_not_starve_the_others(flood: Use) -> None:
    """1,000 requests of one use queued at once; one request of every other use asked a
    second later goes out within what its share guarantees, not after the flood."""
    budget = RequestBudget.for_limit(limit=20, window=10, shares=DEFAULT_SHARES, now=0.0)
    asks = [(0.0, flood)] * 1000 + [(1.0, use) for use in USES if use is not flood]
    grants = _run(budget, asks, until=200.0)
    flood_done = max(t for t, use in grants if use is flood)
    for use in USES:
        if use is flood:
            continue
        first = min(t for t, u in grants if u is use)
        assert first - 1.0 <= 1.0 / budget.guaranteed(use) + 1e-6, (use, first)
        assert first < flood_done / 10


def test_shares_follow_the_weights_when_everyone_waits() -> None:
    budget = RequestBudget.for_limit(limit=20, window=10, shares=DEFAULT_SHARES, now=0.0)
    asks = [(0.0, use) for use in USES for _ in range(2000)]
    grants = _run(budget, asks, until=60.0)
    # After the burst, over 50 s of steady state.
    counts = collections.Counter(use for t, use in grants if 10.0 <= t < 60.0)
    for use in USES:
        rate = counts[use] / 50.0
        assert rate == pytest.approx(budget.guaranteed(use), rel=0.05), (use, rate)


def test_a_use_that_waited_for_nothing_saves_no_credit() -> None:
    """Polls ran alone for a minute; submits arriving then do not get a minute's priority."""
    budget = RequestBudget.for_limit(limit=20, window=10, shares=DEFAULT_SHARES, now=0.0)
    asks = [(0.0, Use.POLL)] * 1500 + [(60.0, Use.SUBMIT)] * 200
    grants = _run(budget, asks, until=100.0)
    polls_while_submitting = [t for t, u in grants if u is Use.POLL and 61.0 <= t < 70.0]
    assert polls_while_submitting  # polls keep their share at once


def test_a_withdrawn_ticket_is_never_granted() -> None:
    budget = RequestBudget(rate=1.0, burst=1.0, shares=DEFAULT_SHARES, now=0.0)
    first, second, third = (budget.ask(Use.SUBMIT) for _ in range(3))
    budget.withdraw(second)
    granted = budget.grant(now=0.0) + budget.grant(now=1.0) + budget.grant(now=2.0)
    assert granted == [first, third]
    assert budget.wake_at(now=2.0) is None


def test_a_bucket_in_debt_averages_its_rate() -> None:
    bucket = Bucket(rate=1.0, capacity=1.0, now=0.0)
    assert bucket.take(0.0, cost=10.0)
    assert not bucket.ready(9.0)
    assert bucket.ready_at(9.0) == pytest.approx(10.0)
    assert bucket.take(10.0)


def test_a_drained_bucket_spends_its_savings_but_never_goes_into_debt() -> None:
    """A sweep at its interval spends the early share saved meanwhile, so no early sweep
    follows it at once; it does not push the share into debt either."""
    bucket = Bucket(rate=1.0, capacity=1.0, now=0.0)
    bucket.drain(0.0, 5.0)
    assert not bucket.ready(0.5)
    assert bucket.ready_at(0.5) == pytest.approx(1.0)
    assert bucket.take(1.0, cost=3.0)
    bucket.drain(1.0, 5.0)  # already in debt: unchanged
    assert bucket.ready_at(1.0) == pytest.approx(4.0)


def test_the_budget_is_configured_like_every_option(tmp_path: Path) -> None:
    env = {
        "RADICAL_ORBIT_STATE_DIR": str(tmp_path),
        "RADICAL_ORBIT_GLOBUS_RATE_LIMIT": "5",
        "RADICAL_ORBIT_EARLY_POLL_RATE": "0",
    }
    config = load_config(env=env)
    assert (config.globus_rate_limit, config.globus_rate_window) == (5.0, 10.0)
    assert config.early_poll_rate == 0.0
    budget = RequestBudget.for_limit(
        limit=config.globus_rate_limit,
        window=config.globus_rate_window,
        shares=DEFAULT_SHARES,
        now=0.0,
    )
    assert (budget.rate, budget.burst) == (4.5, 5.0)
    for name, value in (("GLOBUS_RATE_LIMIT", "0"), ("EARLY_POLL_RATE", "-1")):
        with pytest.raises(ConfigError, match=name.lower()):
            load_config(env={**env, f"RADICAL_ORBIT_{name}": value})
