"""The admission queue's pure core: order, capacity, blocks, pace and fairness, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.daemon.errors import QueueFull
from radical.orbit.daemon.service.admission_core import (
    AdmissionCore,
    AdmissionLimits,
    Item,
    Outcome,
)


def _core(**limits: float) -> AdmissionCore:
    core = AdmissionCore(AdmissionLimits(**limits))  # type: ignore[arg-type]
    return core


def _ids(pairs: list[tuple[str, Item]]) -> list[str]:
    return [item.submission_id for _sid, item in pairs]


def _lane(count: int, **limits: float) -> AdmissionCore:
    """A core whose lane a is usable and has ``count`` submits waiting: s0, s1, ..."""
    core = _core(**limits)
    core.set_usable("a", True)
    for n in range(count):
        core.add("a", Item(f"s{n}"))
    return core


def _usable_lanes(core: AdmissionCore, count: int) -> None:
    """Lanes a and b, usable, each with ``count`` submits waiting: a0, a1, ..., b0, b1, ..."""
    for session_id in ("a", "b"):
        core.set_usable(session_id, True)
        for n in range(count):
            core.add(session_id, Item(f"{session_id}{n}"))


def test_below_the_limits_everything_goes_at_once() -> None:
    core = _lane(5, rate=0)
    plan = core.plan(0.0)
    assert _ids(plan.send) == ["s0", "s1", "s2", "s3", "s4"]
    assert plan.queue == []


def test_capacity_queues_the_rest_in_order_and_a_finished_task_frees_a_place() -> None:
    core = _lane(3, rate=0, max_pending=3)
    core.set_open_tasks("a", 2)
    plan = core.plan(0.0)
    assert _ids(plan.send) == ["s0"]
    assert [(i.submission_id, why) for _s, i, why in plan.queue] == [
        ("s1", "PendingTasksLimit"),
        ("s2", "PendingTasksLimit"),
    ]
    core.done("s0", Outcome.ACCEPTED, 0.1)
    core.task_opened("a")
    assert core.plan(0.2).send == []  # full: 3 unfinished
    core.task_finished("a")
    assert _ids(core.plan(0.3).send) == ["s1"]
    # Nothing is recorded twice as queued.
    assert core.plan(0.4).queue == []


def test_a_409_blocks_until_a_task_finishes_or_the_probe_timer() -> None:
    core = _lane(3, rate=0, probe_interval=5.0)
    first = core.plan(0.0)
    assert _ids(first.send) == ["s0", "s1", "s2"]
    for sub in ("s0", "s1", "s2"):
        core.done(sub, Outcome.LIMITED, 0.1, code="PendingTasksLimitExceeded")
    plan = core.plan(0.2)
    assert plan.send == []
    assert {why for _s, _i, why in plan.queue} == {"PendingTasksLimitExceeded"}
    assert plan.wake_at == pytest.approx(5.1)
    core.task_finished("other")  # any session's task: the limit is per Globus user
    probe = core.plan(0.3)
    assert _ids(probe.send) == ["s0"]  # one probe, the head of the lane
    assert core.plan(0.4).send == []
    core.done("s0", Outcome.ACCEPTED, 0.5)
    assert _ids(core.plan(0.6).send) == ["s1", "s2"]


def _full_user_lanes() -> tuple[AdmissionCore, dict[str, int]]:
    """Two sessions of one Globus user with six submits each and its places all taken: the
    first sends are refused. The core and the user's free places."""
    core = _core(rate=0, probe_interval=1.0)
    _usable_lanes(core, 6)
    globus = {"free": 0}
    assert _drain(core, globus, 0.0) == []
    return core, globus


def _drain(core: AdmissionCore, globus: dict[str, int], now: float) -> list[str]:
    """Run plans at ``now`` until nothing more goes out; Globus accepts while it has
    free places. Returns the lanes whose sends were accepted, in order."""
    accepted = []
    while sends := core.plan(now).send:
        for session_id, item in sends:
            if _answer(core, globus, item, now):
                accepted.append(session_id)
    return accepted


def _answer(core: AdmissionCore, globus: dict[str, int], item: Item, now: float) -> bool:
    """Globus's answer to one send, told to the core: accepted while the user has a free
    place, else refused for the pending limit."""
    if globus["free"] > 0:
        globus["free"] -= 1
        core.done(item.submission_id, Outcome.ACCEPTED, now)
        return True
    core.done(item.submission_id, Outcome.LIMITED, now)
    return False


@pytest.mark.parametrize("finished_seen", [True, False])
def test_blocked_lanes_take_turns(finished_seen: bool) -> None:
    """Two sessions of one Globus user, its places all taken: each place that frees goes to
    the lanes in turn, whether the daemon sees the task finish (a task of its own) or only
    its probe timer runs out (a task submitted elsewhere)."""
    core, globus = _full_user_lanes()
    winners = []
    for step in range(8):
        now = 2.0 * (step + 1)
        globus["free"] += 1
        if finished_seen:
            core.task_finished("a")
        winners += _drain(core, globus, now)
    assert winners == ["a", "b"] * 4, winners


def test_a_place_freeing_after_a_refused_probe_goes_to_the_refused_lane() -> None:
    """Two sessions of one Globus user, its places freeing one at a time, each just after a
    winner's next round had the other lane's probe refused (a client that submits again as
    soon as it sees its task): the winner does not probe in that round, so the place goes to
    the refused lane, first in order, and the lanes still take turns."""
    core, globus = _full_user_lanes()
    globus["free"], freed = 1, 1
    winners: list[str] = []
    now = 0.0
    for _ in range(1000):
        if len(winners) == 8:
            break
        plan = core.plan(now)
        if not plan.send:
            assert plan.wake_at is not None
            now = max(now + 0.01, plan.wake_at)
            continue
        for session_id, item in plan.send:
            if _answer(core, globus, item, now):
                winners.append(session_id)
            elif freed == len(winners) < 8:
                globus["free"] += 1  # an outside task ends right after the refusal
                freed += 1
        now += 0.01
    assert winners == ["a", "b"] * 4, winners


def test_independent_users_do_not_wait_for_each_other() -> None:
    """Blocked lanes of different Globus users: each round probes every blocked lane, so a
    lane whose user has room is not held back by one whose user has none (it goes on one
    submit per round, the next round starting at once)."""
    core = _core(rate=0, probe_interval=1.0)
    _usable_lanes(core, 2)
    for _sid, item in core.plan(0.0).send:
        core.done(item.submission_id, Outcome.LIMITED, 0.0)
    # a's user stays full; b's user has room again. After one probe interval:
    sends = core.plan(1.5).send
    assert _ids(sends) == ["a0"]
    core.done("a0", Outcome.LIMITED, 1.5)
    sends = core.plan(1.5).send
    assert _ids(sends) == ["b0"]  # the round goes on to b at once
    core.done("b0", Outcome.ACCEPTED, 1.5)
    assert _ids(core.plan(1.6).send) == ["a0"]  # a new round at once, a's turn first
    core.done("a0", Outcome.LIMITED, 1.6)
    assert _ids(core.plan(1.6).send) == ["b1"]


def test_429_waits_retry_after_and_unanswered_backs_off_and_is_never_cancellable() -> None:
    core = _core(rate=0)
    core.set_usable("a", True)
    core.add("a", Item("s0"))
    core.plan(0.0)
    core.done("s0", Outcome.THROTTLED, 0.0, retry_after=3.0)
    assert core.plan(1.0).send == []
    assert _ids(core.plan(3.0).send) == ["s0"]
    core.done("s0", Outcome.UNANSWERED, 3.0)
    later = core.plan(3.5)
    assert later.send == [] and later.queue == []  # maybe sent: never recorded as queued
    assert core.remove("s0") is None
    assert _ids(core.plan(4.0).send) == ["s0"]


def test_pace_holds_without_queueing() -> None:
    core = _lane(5, rate=2, rate_window=1.0)
    plan = core.plan(0.0)
    assert _ids(plan.send) == ["s0", "s1"]
    assert plan.queue == []  # held for the pace, not queued
    assert plan.wake_at == pytest.approx(1.0)
    assert core.plan(0.5).send == []
    assert _ids(core.plan(1.0).send) == ["s2", "s3"]


def test_cap_and_cancel() -> None:
    core = _core(rate=0, max_queued=2, max_pending=1)
    core.set_usable("a", True)
    core.set_open_tasks("a", 1)
    core.add("a", Item("s0"))
    core.add("a", Item("s1"))
    with pytest.raises(QueueFull):
        core.check_room("a")
    core.plan(0.0)  # both queued
    removed = core.remove("s1")
    assert removed is not None and removed.queued
    core.check_room("a")
    assert core.queued("a") == ["s0"]


def test_unusable_lane_queues_and_resumes() -> None:
    core = _core(rate=0)
    core.add("a", Item("s0"))
    plan = core.plan(0.0)
    assert plan.send == [] and [why for *_x, why in plan.queue] == ["CredentialMissing"]
    core.set_usable("a", True)
    assert _ids(core.plan(0.1).send) == ["s0"]


def test_lanes_take_turns() -> None:
    core = _core(rate=0, max_pending=100)
    _usable_lanes(core, 4)
    for session_id in ("a", "b"):
        core.set_open_tasks(session_id, 99)
    served = []
    for step in range(6):
        plan = core.plan(float(step))
        for session_id, item in plan.send:
            served.append(session_id)
            core.done(item.submission_id, Outcome.ACCEPTED, float(step))
            core.task_opened(session_id)
        core.task_finished("a" if step % 2 else "b")
    assert served.count("a") >= 2 and served.count("b") >= 2


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["add", "plan", "accept", "limit", "throttle", "lost", "finish", "cancel"]
            ),
            st.sampled_from(["a", "b"]),
        ),
        max_size=60,
    )
)
def test_every_submit_is_in_exactly_one_place(steps: list[tuple[str, str]]) -> None:
    """Whatever happens, a submit is waiting in its lane, in flight, or gone; a lane sends
    in order; never more in flight + unfinished than max_pending."""
    core = _core(rate=0, max_pending=3)
    now = 0.0
    made = 0
    inflight: list[str] = []
    gone: set[str] = set()
    lost: set[str] = set()
    order: dict[str, list[str]] = {"a": [], "b": []}
    added: dict[str, list[str]] = {"a": [], "b": []}
    sent: dict[str, list[str]] = {"a": [], "b": []}
    for session_id in ("a", "b"):
        core.set_usable(session_id, True)
    for action, session_id in steps:
        now += 0.7
        if action == "add":
            sub = f"{session_id}{made}"
            made += 1
            core.add(session_id, Item(sub))
            order[session_id].append(sub)
            added[session_id].append(sub)
        elif action == "plan":
            plan = core.plan(now)
            # A submit Globus may have (an unanswered send) is never recorded as queued.
            assert not {i.submission_id for _l, i, _w in plan.queue} & lost
            for lane, item in plan.send:
                assert item.submission_id not in inflight
                inflight.append(item.submission_id)
                if item.submission_id not in sent[lane]:
                    sent[lane].append(item.submission_id)
        elif action in ("accept", "limit", "throttle", "lost") and inflight:
            sub = inflight.pop(0)
            outcome = {
                "accept": Outcome.ACCEPTED,
                "limit": Outcome.LIMITED,
                "throttle": Outcome.THROTTLED,
                "lost": Outcome.UNANSWERED,
            }[action]
            core.done(sub, outcome, now)
            if outcome is Outcome.UNANSWERED:
                lost.add(sub)
            if outcome is Outcome.ACCEPTED:
                gone.add(sub)
                core.task_opened(sub[0])
        elif action == "finish":
            core.task_finished(session_id)
        elif action == "cancel" and order[session_id]:
            sub = order[session_id][-1]
            item = core.remove(sub)
            if item is not None:
                assert sub not in inflight
                gone.add(sub)
                order[session_id].remove(sub)
        for lane in ("a", "b"):
            waiting = core.queued(lane)
            assert not set(waiting) & set(inflight)
            assert not set(waiting) & gone
        assert set(core.queued("a") + core.queued("b") + inflight) | gone >= {
            s for lane in ("a", "b") for s in order[lane]
        }
    # First sends of each lane follow its order (repeats after a refusal go first again).
    for lane in ("a", "b"):
        assert sent[lane] == [s for s in added[lane] if s in sent[lane]]
