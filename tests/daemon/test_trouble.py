"""The pure trouble detector: task documents over time -> needs_attention episodes, the newest
error, policy cancels and smaller task_list batches. Hypothesis drives it through the ledger's
own fold, as the poller does."""

from __future__ import annotations

import datetime
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from radical.orbit.daemon.poller.diff import diff
from radical.orbit.daemon.poller.trouble import (
    attention_reason,
    details_wanted,
    filter_refused,
    follow,
    follow_batch,
    newest_error,
    pause_message,
    policy_cancel,
    smaller_batch,
)
from radical.orbit.ledger import events as ev
from radical.orbit.ledger.fold import TaskRow, apply_task

T0 = 1_790_000_000.0
STALL = 100.0


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat()


def _created(policy: ev.TroublePolicy | None = None) -> TaskRow:
    event = ev.TaskSubmitted(
        owner="o", session_id="s", submission_id="sub", task_id="t1", label="l", policy=policy
    )
    return apply_task(None, event, seq=1, time=T0)


def _doc(
    *,
    status: str = "ACTIVE",
    is_ok: bool | None = True,
    is_paused: bool = False,
    faults: int = 0,
    nbytes: int = 0,
) -> dict[str, Any]:
    return {
        "task_id": "t1",
        "status": status,
        "nice_status": "OK" if is_ok else ("PAUSED_BY_ADMIN" if is_paused else "FILE_NOT_FOUND"),
        "label": "l",
        "bytes_transferred": nbytes,
        "files_transferred": 0,
        "is_ok": None if status in ("SUCCEEDED", "FAILED") else is_ok,
        "is_paused": is_paused,
        "faults": faults,
    }


def _observe(
    row: TaskRow, doc: dict[str, Any], now: float, *, error: ev.TaskError | None = None
) -> tuple[TaskRow, list[ev.Event], str | None]:
    """One sweep of one task, as the poller does it: diff, follow, fold."""
    found = diff({"t1": row}, [doc])
    events, cancel = follow(row, doc, found, now=now, stall_after=STALL, error=error)
    seq = row.last_seq
    for event in events:
        seq += 1
        row = apply_task(row, event, seq=seq, time=now)
    return row, events, cancel


# One observation: (seconds later, status, is_ok, is_paused, bytes moved since last, new faults)
_STEP = st.tuples(
    st.floats(min_value=0.5, max_value=80),
    st.sampled_from(["ACTIVE", "ACTIVE", "ACTIVE", "INACTIVE"]),
    st.booleans(),
    st.booleans(),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=2),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=30))
def test_one_needs_attention_per_episode_and_a_recovery_to_end_it(
    steps: list[tuple[float, str, bool, bool, int, int]],
) -> None:
    row = _created()
    now, nbytes, faults = T0, 0, 0
    recorded: list[ev.Event] = []
    for later, status, is_ok, paused, moved, new_faults in steps:
        now += later
        nbytes += moved
        faults += new_faults
        doc = _doc(status=status, is_ok=is_ok, is_paused=paused, faults=faults, nbytes=nbytes)
        row, events, cancel = _observe(row, doc, now)
        assert cancel is None  # no policy, no cancel
        recorded.extend(events)
        expected = attention_reason(
            doc, progress_time=row.progress_time, now=now, stall_after=STALL
        )
        # The ledger row always says why the task needs attention now, or that it does not.
        assert row.needs_attention == expected
        assert (row.attention_since is None) == (expected is None)
    # Episodes alternate: needs_attention, recovered, needs_attention, ... never two in a row.
    marks = [e for e in recorded if isinstance(e, ev.TaskNeedsAttention | ev.TaskRecovered)]
    for first, second in itertools.pairwise(marks):
        assert type(first) is not type(second)
    if marks:
        assert isinstance(marks[0], ev.TaskNeedsAttention)
    # Every state and progress event carries the attention of its moment.
    for event in recorded:
        if isinstance(event, ev.TaskStateChanged | ev.TaskProgress):
            assert event.needs_attention in (None, "erroring", "paused", "inactive", "stalled")


def test_a_new_fault_carries_the_newest_error_once() -> None:
    row = _created()
    error = ev.TaskError(code="FILE_NOT_FOUND", description="file not found", details="/x")
    row, events, _ = _observe(row, _doc(is_ok=False, faults=1), T0 + 1, error=error)
    changed = [e for e in events if isinstance(e, ev.TaskStateChanged)]
    assert changed[-1].error == error and changed[-1].needs_attention == "erroring"
    attention = [e for e in events if isinstance(e, ev.TaskNeedsAttention)]
    assert len(attention) == 1 and attention[0].error == error
    assert attention[0].attention_message == "FILE_NOT_FOUND: file not found (/x)"
    assert row.error == error and row.faults == 1
    # Another fault: news again, with no second episode.
    row, events, _ = _observe(row, _doc(is_ok=False, faults=2), T0 + 2, error=error)
    assert [type(e) for e in events] == [ev.TaskStateChanged]
    # Nothing changed: nothing recorded.
    row, events, _ = _observe(row, _doc(is_ok=False, faults=2), T0 + 3)
    assert events == []


def test_no_progress_for_the_stall_time_is_an_episode() -> None:
    row = _created()
    row, events, _ = _observe(row, _doc(nbytes=5), T0 + 10)
    assert not any(isinstance(e, ev.TaskNeedsAttention) for e in events)
    row, events, _ = _observe(row, _doc(nbytes=5), T0 + 10 + STALL)
    assert [e.needs_attention for e in events if isinstance(e, ev.TaskNeedsAttention)] == [
        "stalled"
    ]
    row, events, _ = _observe(row, _doc(nbytes=6), T0 + 20 + STALL)
    recovered = [e for e in events if isinstance(e, ev.TaskRecovered)]
    assert len(recovered) == 1 and recovered[0].after == "stalled"
    assert recovered[0].seconds == 10


def test_a_delete_never_stalls() -> None:
    event = ev.DeleteSubmitted(owner="o", session_id="s", submission_id="d", task_id="t1")
    row = apply_task(None, event, seq=1, time=T0)
    row, events, _ = _observe(row, _doc(), T0 + 10 * STALL)
    assert not any(isinstance(e, ev.TaskNeedsAttention) for e in events)
    assert row.needs_attention is None


def test_finished_tasks_get_no_episode() -> None:
    row = _created()
    row, _, _ = _observe(row, _doc(is_ok=False, faults=1), T0 + 1)
    assert row.needs_attention == "erroring"
    doc = _doc(status="FAILED", faults=1)
    events, cancel = follow(
        row.as_dict(), doc, diff({"t1": row}, [doc]), now=T0 + 2, stall_after=STALL
    )
    assert cancel is None
    assert not any(isinstance(e, ev.TaskNeedsAttention | ev.TaskRecovered) for e in events)


@given(
    st.integers(min_value=1, max_value=10),
    st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=20),
)
def test_max_faults_cancels_at_the_first_observation_that_reaches_it(
    limit: int, increments: list[int]
) -> None:
    row = _created(ev.TroublePolicy(max_faults=limit))
    faults, now = 0, T0
    for step in increments:
        faults += step
        now += 1
        row, _, cancel = _observe(row, _doc(is_ok=faults == 0, faults=faults), now)
        assert (cancel is not None) == (faults >= limit)
        if cancel is not None:
            assert f"{faults} faults reached max_faults={limit}" in cancel


def test_fatal_codes_and_minutes_in_trouble() -> None:
    error = ev.TaskError(code="FILE_NOT_FOUND", description="file not found")
    policy = ev.TroublePolicy(fatal_codes=("FILE_NOT_FOUND",))
    assert "FILE_NOT_FOUND" in str(
        policy_cancel(policy, faults=1, error_code="FILE_NOT_FOUND", trouble_since=None, now=T0)
    )
    assert (
        policy_cancel(policy, faults=1, error_code="ENDPOINT_ERROR", trouble_since=T0, now=T0)
        is None
    )
    row = _created(ev.TroublePolicy(max_trouble_minutes=2))
    row, _, cancel = _observe(row, _doc(is_ok=False, faults=1), T0 + 1, error=error)
    assert cancel is None
    row, _, cancel = _observe(row, _doc(is_ok=False, faults=1), T0 + 1 + 119)
    assert cancel is None
    row, _, cancel = _observe(row, _doc(is_ok=False, faults=1), T0 + 1 + 120)
    assert cancel is not None and "max_trouble_minutes=2" in cancel


def test_newest_error_is_the_newest_error_event() -> None:
    events = [
        {"code": "PROGRESS", "is_error": False, "time": _iso(T0 + 30)},
        {"code": "ENDPOINT_ERROR", "is_error": True, "time": _iso(T0 + 20), "description": "b"},
        {"code": "FILE_NOT_FOUND", "is_error": True, "time": _iso(T0 + 20), "description": "a"},
        {"code": "PERMISSION_DENIED", "is_error": True, "time": _iso(T0 + 10)},
        "junk",
    ]
    found = newest_error(events)  # type: ignore[arg-type]
    assert found is not None and (found.code, found.description) == ("ENDPOINT_ERROR", "b")
    assert newest_error([{"code": "PAUSED", "is_error": False, "time": _iso(T0)}]) is None


def test_pause_message_from_pause_info() -> None:
    assert pause_message({"message": "top", "pause_rules": [{"message": "rule"}]}) == "top"
    assert pause_message({"message": None, "pause_rules": [{"message": "rule"}]}) == "rule"
    assert pause_message({"pause_rules": []}) is None


@given(st.integers(min_value=2, max_value=1000), st.integers(min_value=1, max_value=2000))
def test_smaller_batch_always_shrinks(current: int, cap: int) -> None:
    message = f"filter task_id names {current} tasks; at most {cap} are allowed"
    assert filter_refused(
        http_status=400, code="ClientError.BadRequest.InvalidFilter", message=message
    )
    smaller = smaller_batch(current, message=message)
    assert 1 <= smaller < current
    if cap < current:
        assert smaller == cap
    assert smaller_batch(current, message="too long") == current // 2
    assert not filter_refused(http_status=400, code="ClientError.BadRequest", message="bad limit")
    assert filter_refused(http_status=414, code=None, message=None)


def test_a_typed_row_and_its_dict_give_the_same_events() -> None:
    row = _created(ev.TroublePolicy(max_faults=1))
    doc = _doc(is_ok=False, faults=1)
    error = ev.TaskError(code="ENDPOINT_ERROR")
    typed = follow(row, doc, diff({"t1": row}, [doc]), now=T0 + 1, stall_after=STALL, error=error)
    plain = follow(
        row.as_dict(),
        doc,
        diff({"t1": row}, [doc]),
        now=T0 + 1,
        stall_after=STALL,
        error=error,
    )
    assert typed == plain
    assert typed[1] is not None and "max_faults=1" in typed[1]


def test_details_wanted_puts_new_episodes_first_within_the_budget() -> None:
    calm = _created().as_dict()
    troubled = {**calm, "task_id": "t2", "faults": 1, "needs_attention": "erroring"}
    rows = {"t1": calm, "t2": troubled, "t3": {**calm, "task_id": "t3"}}
    docs = [
        {**_doc(is_ok=False, faults=2), "task_id": "t2"},  # a fault more, episode running
        {**_doc(is_ok=False, faults=1), "task_id": "t1"},  # its first fault: a new episode
        {**_doc(is_paused=True), "task_id": "t3"},  # just paused
        {**_doc(status="FAILED", faults=3), "task_id": "t1"},  # finished: no details
    ]
    assert details_wanted(rows, docs, budget=10) == (["t1", "t2"], ["t3"])
    assert details_wanted(rows, docs, budget=2) == (["t1"], ["t3"])
    assert details_wanted(rows, docs, budget=0) == ([], [])


def test_a_batch_cancels_by_policy_once_and_keeps_unrecorded_tasks_events() -> None:
    """The poller's batch step: the error fetched rides on the new fault's state change, the
    policy's cancel is named unless the task was cancelled before, and the events of a task
    not recorded now (e.g. another's) pass unchanged."""
    row = _created(ev.TroublePolicy(fatal_codes=("FILE_NOT_FOUND",)))
    doc = _doc(is_ok=False, faults=1)
    error = ev.TaskError(code="FILE_NOT_FOUND", description="gone")
    other = ev.TaskProgress(
        owner="o",
        session_id="s",
        task_id="t2",
        status="ACTIVE",
        nice_status="OK",
        label=None,
        bytes_transferred=1,
        files_transferred=0,
    )
    found = [*diff({"t1": row}, [doc]), other]
    args: dict[str, Any] = {"now": T0 + 1, "stall_after": STALL, "pauses": {}}
    events, cancels = follow_batch(
        {"t1": row}, [doc], found, errors={"t1": error}, cancelled=set(), **args
    )
    changed = [e for e in events if isinstance(e, ev.TaskStateChanged)]
    assert [e.error for e in changed] == [error]
    assert other in events
    assert cancels == [("t1", "trouble policy: error FILE_NOT_FOUND is in fatal_codes")]
    _, again = follow_batch(
        {"t1": row}, [doc], found, errors={"t1": error}, cancelled={"t1"}, **args
    )
    assert again == []
