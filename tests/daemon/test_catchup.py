"""The pure catch-up: ledger row + Globus task document + Globus event list -> missed events."""

from __future__ import annotations

import datetime
from typing import Any

from daemon_helpers import task_doc, task_row
from hypothesis import given
from hypothesis import strategies as st

from radical.orbit.daemon.poller.catchup import catch_up, event_time
from radical.orbit.daemon.poller.diff import diff
from radical.orbit.ledger import TaskRow
from radical.orbit.ledger import events as ev
from radical.orbit.protocol import TERMINAL_STATUSES as TERMINAL

T0 = 1_790_000_000  # whole seconds, as Globus stamps events


def _iso(seconds: int, sep: str = "T") -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat(sep=sep)


def _event(code: str, seconds: int, *, error: bool = False) -> dict[str, Any]:
    return {
        "DATA_TYPE": "event",
        "code": code,
        "description": code.lower(),
        "details": "",
        "is_error": error,
        "time": _iso(seconds),
    }


def _row(status: str, nice: str | None = "OK", nbytes: int = 10, files: int = 1) -> TaskRow:
    return task_row("t1", status, nice, nbytes, files)


def _doc(status: str, nice: str | None, nbytes: int = 30, files: int = 3) -> dict[str, Any]:
    return task_doc("t1", status, nice, nbytes, files)


def _statuses(events: list[ev.Event]) -> list[str]:
    return [e.status for e in events if isinstance(e, ev.TaskStateChanged)]


def _paused(events: list[ev.Event]) -> list[bool]:
    return [e.is_paused for e in events if isinstance(e, ev.TaskStateChanged)]


def test_pause_and_unpause_in_a_gap_are_recorded_in_order() -> None:
    # Globus lists events newest first; a pause keeps the task ACTIVE.
    events = [
        _event("SUCCEEDED", T0 + 40),
        _event("UNPAUSED", T0 + 30),
        _event("PAUSED", T0 + 20),
        _event("STARTED", T0 + 1),
    ]
    out = catch_up(_row("ACTIVE"), _doc("SUCCEEDED", None), events, known_at=T0 + 10.5)
    assert _statuses(out) == ["ACTIVE", "ACTIVE", "SUCCEEDED"]
    assert _paused(out) == [True, False, False]
    assert [e.nice_status for e in out] == ["PAUSED", "OK", None]  # type: ignore[attr-defined]
    # Intermediate states keep the counts the ledger had; the last has Globus's.
    assert [e.bytes_transferred for e in out] == [10, 10, 30]  # type: ignore[attr-defined]
    assert all(e.task_id == "t1" and e.session_id == "s1" for e in out)  # type: ignore[attr-defined]


def test_events_the_ledger_has_seen_are_not_repeated() -> None:
    events = [
        _event("UNPAUSED", T0 + 30),
        _event("PAUSED", T0 + 20),
    ]
    # The pause was recorded at T0 + 21.3: only its end is missing.
    paused = _row("ACTIVE", "PAUSED")._replace(is_paused=True)
    out = catch_up(paused, _doc("ACTIVE", "OK"), events, known_at=T0 + 21.3)
    assert _statuses(out) == ["ACTIVE"] and _paused(out) == [False]
    # Everything already seen: nothing but the counts.
    out = catch_up(_row("ACTIVE"), _doc("ACTIVE", "OK"), events, known_at=T0 + 31)
    assert [type(e) for e in out] == [ev.TaskProgress]


def test_a_round_trip_in_the_second_of_the_last_observation_is_not_lost() -> None:
    # Seen unpaused at T0 + 20.2; paused at T0 + 20.5 and unpaused at T0 + 20.8, both
    # stamped T0 + 20, then finished.
    events = [
        _event("SUCCEEDED", T0 + 25),
        _event("UNPAUSED", T0 + 20),
        _event("PAUSED", T0 + 20),
    ]
    out = catch_up(_row("ACTIVE"), _doc("SUCCEEDED", None), events, known_at=T0 + 20.2)
    assert _paused(out) == [True, False, False]
    assert _statuses(out) == ["ACTIVE", "ACTIVE", "SUCCEEDED"]


def test_without_usable_events_it_is_the_diff() -> None:
    row, doc = _row("ACTIVE"), _doc("FAILED", None)
    junk: list[Any] = [{"code": "PAUSED", "time": "yesterday"}, "x", {"code": "UNPAUSED"}]
    expected = diff({"t1": row}, [doc])
    assert catch_up(row, doc, [], known_at=T0) == expected
    assert catch_up(row, doc, junk, known_at=T0) == expected
    assert catch_up(_row("SUCCEEDED"), doc, [_event("PAUSED", T0 + 1)], known_at=T0) == []
    assert catch_up(row, {**doc, "task_id": "other"}, [], known_at=T0) == []


def test_event_time_reads_both_globus_spellings() -> None:
    assert event_time(_iso(T0)) == T0
    assert event_time(_iso(T0, " ")) == T0
    assert (
        event_time("2026-01-01 00:00:00")
        == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()
    )
    assert event_time("nonsense") is None
    assert event_time(None) is None


NOISE = st.sampled_from(["STARTED", "SKIPPED_ERROR", "ENDPOINT_ERROR", "CONNECTION_RESET"])


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[TaskRow, dict[str, Any], list[Any], float, list[tuple[str, bool]]]:
    """A true history of pauses, the ledger's view at some moment, and the states missed
    since, as (status, is_paused)."""
    gaps = draw(st.lists(st.integers(min_value=0, max_value=3), max_size=8))
    times: list[int] = []
    now = T0
    for gap in gaps:
        now += gap
        times.append(now)
    states = [False]  # is_paused after each transition: pauses and unpauses alternate
    for _ in times:
        states.append(not states[-1])
    seen = draw(st.integers(min_value=0, max_value=len(times)))  # transitions the ledger saw
    lower = times[seen - 1] if seen else T0 - 5
    upper = times[seen] + 0.99 if seen < len(times) else now + 5
    known_at = draw(st.floats(min_value=lower + 0.01, max_value=upper, allow_nan=False))
    if seen < len(times):
        # The observation came before the next transition (same second allowed).
        known_at = min(known_at, times[seen] + 0.99)
    ending = draw(st.sampled_from(["open", "SUCCEEDED", "FAILED"]))
    final = ("ACTIVE", states[-1]) if ending == "open" else (ending, False)
    nice = draw(st.sampled_from([None, "OK", "Queued", "PAUSED_BY_ADMIN"]))
    events: list[Any] = [
        _event("PAUSED" if paused else draw(st.sampled_from(["UNPAUSED", "RESUMED"])), when)
        for when, paused in zip(times, states[1:], strict=True)
    ]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        events.append(_event(draw(NOISE), draw(st.integers(T0, now + 5)), error=True))
    events.sort(key=lambda e: e["time"])  # stable: the transitions keep their true order
    if ending != "open":
        events.append(_event(ending, now + 6))
    events.reverse()  # newest first, as Globus lists them
    row = _row("ACTIVE", draw(st.sampled_from(["OK", "PAUSED", "Queued"])))._replace(
        is_paused=states[seen]
    )
    doc = {**_doc(final[0], None if final[0] in TERMINAL else nice), "is_paused": final[1]}
    missed = [("ACTIVE", p) for p in states[seen + 1 :]]
    if final != (missed[-1] if missed else ("ACTIVE", states[seen])):
        missed.append(final)
    return row, doc, events, known_at, missed


@given(scenarios())
def test_catch_up_properties(
    scenario: tuple[TaskRow, dict[str, Any], list[Any], float, list[tuple[str, bool]]],
) -> None:
    row, doc, events, known_at, missed = scenario
    out = catch_up(row, doc, events, known_at=known_at)
    # State changes with the state unchanged (nice_status only) are not transitions.
    transitions: list[tuple[str, bool]] = []
    previous = (row.status, row.is_paused)
    for event in out:
        if isinstance(event, ev.TaskStateChanged):
            state = (event.status, event.is_paused)
            if state != previous:
                transitions.append(state)
            previous = state
    # Never a transition lost: what was missed ends the recorded sequence. It is all that
    # is recorded unless an undecided second made the anchor earlier (then a round trip
    # the ledger has may be repeated, never one it lacks dropped).
    assert transitions[len(transitions) - len(missed) :] == missed
    assert len(transitions) - len(missed) in (0, 2, 4, 6, 8)
    if all(not (t <= known_at < t + 1) for t in (event_time(e["time"]) or 0 for e in events)):
        assert transitions == missed
    # Only the last event may be terminal or carry Globus's counts and fatal error.
    for event in out[:-1]:
        assert isinstance(event, ev.TaskStateChanged)
        assert event.status not in TERMINAL
        assert event.fatal_error is None
        assert event.bytes_transferred == row.bytes_transferred
    # Applying the events brings the row up to date: a later diff finds nothing.
    after = row
    for event in out:
        after = after._replace(
            status=event.status,  # type: ignore[attr-defined]
            nice_status=event.nice_status,  # type: ignore[attr-defined]
            bytes_transferred=event.bytes_transferred,  # type: ignore[attr-defined]
            files_transferred=event.files_transferred,  # type: ignore[attr-defined]
            is_paused=event.is_paused,  # type: ignore[attr-defined]
        )
    assert diff({"t1": after}, [doc]) == []
    # The order Globus lists events in does not matter when their times differ.
    times = [e["time"] for e in events]
    if len(set(times)) == len(times):
        assert catch_up(row, doc, list(reversed(events)), known_at=known_at) == out
