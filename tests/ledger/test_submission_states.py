"""The admission queue's submission states in the pure fold: which moves are allowed."""

from __future__ import annotations

import pytest

from radical.orbit.ledger import events as ev
from radical.orbit.ledger.errors import SubmissionResolved
from radical.orbit.ledger.fold import Projections, fold, step

REQUEST = ev.DeleteRequest(collection="c", paths=("/p",))


def _requested(sub: str = "s") -> ev.SubmitRequested:
    return ev.SubmitRequested(
        owner="o", session_id="x", submission_id=sub, type="DELETE", request=REQUEST
    )


def test_queue_round_trip_then_submitted() -> None:
    events = [
        _requested(),
        ev.SubmitQueued(owner="o", session_id="x", submission_id="s", reason="PendingTasksLimit"),
        ev.SubmitDequeued(owner="o", session_id="x", submission_id="s"),
        ev.SubmitQueued(
            owner="o", session_id="x", submission_id="s", reason="RequestLimitExceeded"
        ),
        ev.SubmitDequeued(owner="o", session_id="x", submission_id="s"),
        ev.DeleteSubmitted(owner="o", session_id="x", submission_id="s", task_id="t"),
        ev.SubmitAdmitted(owner="o", session_id="x", submission_id="s", task_id="t"),
    ]
    maps = fold((n, float(n), e) for n, e in enumerate(events, start=1))
    tasks, subs = maps.tasks, maps.submissions
    assert subs["s"].state == "submitted" and subs["s"].task_id == "t"
    assert set(tasks) == {"t"}


@pytest.mark.parametrize(
    ("before", "event", "after"),
    [
        ("pending", ev.SubmitCancelled, None),  # only a queued submit can be cancelled
        ("pending", ev.SubmitDequeued, None),
        ("queued", ev.SubmitQueued, None),
        ("queued", ev.SubmitCancelled, "cancelled"),
    ],
)
def test_moves(before: str, event: type[ev.Event], after: str | None) -> None:
    maps = Projections()
    subs = maps.submissions
    step(maps, _requested(), seq=1, time=1.0)
    if before == "queued":
        step(
            maps,
            ev.SubmitQueued(owner="o", session_id="x", submission_id="s", reason="r"),
            seq=2,
            time=2.0,
        )
    kwargs = {"reason": "r"} if event is ev.SubmitQueued else {}
    made = event(owner="o", session_id="x", submission_id="s", **kwargs)  # type: ignore[call-arg]
    if after is None:
        with pytest.raises(SubmissionResolved):
            step(maps, made, seq=3, time=3.0)
        assert subs["s"].state == before
    else:
        step(maps, made, seq=3, time=3.0)
        assert subs["s"].state == after
        # Cancelled is final: Globus's answer can no longer resolve it.
        with pytest.raises(SubmissionResolved):
            step(
                maps,
                ev.SubmitFailed(owner="o", session_id="x", submission_id="s", code="c"),
                seq=4,
                time=4.0,
            )
