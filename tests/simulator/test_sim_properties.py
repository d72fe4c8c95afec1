"""Property tests of the pure parts: task engine, task_list filters, ordering and paging."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from globus_sdk.services.transfer.client import _format_filter_item
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from radical.orbit.simulator.engine import Engine, EngineLimits, Step, TaskRequest
from radical.orbit.simulator.errors import ApiError
from radical.orbit.simulator.filters import (
    order_tasks,
    page_window,
    parse_filters,
    task_id_candidates,
)

# -- engine -----------------------------------------------------------------------------
SIZES = st.lists(st.integers(min_value=0, max_value=5_000), min_size=0, max_size=6)


def _request(sub_id: str, kind: str = "TRANSFER") -> TaskRequest:
    return TaskRequest(
        type="DELETE" if kind == "DELETE" else "TRANSFER",
        submission_id=sub_id,
        source_endpoint_id="s",
        source_display_name="S",
        destination_endpoint_id="d",
        destination_display_name="D",
    )


class EngineMachine(RuleBasedStateMachine):
    """Random submits, time steps and controls; the engine's promises hold throughout."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(EngineLimits(max_active=3, max_pending=8, bytes_per_second=1000))
        self.now = 1_000_000.0
        self.sizes: dict[str, list[int]] = {}
        self.finished: dict[str, str] = {}
        self.bytes_seen: dict[str, int] = {}
        self.submissions: dict[str, str] = {}
        self.faults_seen: dict[str, int] = {}

    def _plan_new(self) -> None:
        for task in self.engine.needs_plan():
            sizes = self.sizes[task.task_id]
            self.engine.set_plan(
                task.task_id,
                [
                    Step(kind="copy", source_path=f"/f{i}", destination_path=f"/g{i}", size=s)
                    for i, s in enumerate(sizes)
                ],
                now=self.now,
                files=len(sizes),
                directories=0,
            )

    @rule(
        owner=st.sampled_from(["a", "b"]),
        kind=st.sampled_from(["TRANSFER", "DELETE"]),
        sizes=SIZES,
        reuse=st.booleans(),
    )
    def submit(self, owner: str, kind: str, sizes: list[int], reuse: bool) -> None:
        sub_id = f"{owner}-{len(self.submissions)}"
        if reuse and self.submissions:
            sub_id = sorted(self.submissions)[len(sizes) % len(self.submissions)]
        try:
            task, dup = self.engine.submit(
                _request(sub_id, kind), owner=sub_id.split("-")[0], owner_id="id", now=self.now
            )
        except ApiError as err:
            assert err.status == 409
            pending = [t for t in self.engine.tasks(sub_id.split("-")[0]) if not t.done]
            assert len(pending) >= 8
            return
        if sub_id in self.submissions:
            assert dup
            assert task.task_id == self.submissions[sub_id]
        else:
            assert not dup
            self.submissions[sub_id] = task.task_id
            self.sizes[task.task_id] = sizes

    @rule(seconds=st.floats(min_value=0, max_value=5))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.engine.schedule(self.now)
        self._plan_new()
        done = self.engine.advance(self.now, seconds)
        for task, step in done:
            assert step.kind == "copy"
            assert not task.done
        self.engine.settle(self.now)

    @precondition(lambda self: bool(self.submissions))
    @rule(
        data=st.data(),
        action=st.sampled_from(
            ["cancel", "pause", "unpause", "expire", "renew", "fault", "inject", "fail", "finish"]
        ),
    )
    def control(self, data: st.DataObject, action: str) -> None:
        # Ordered by submission id, not task id: task ids are random uuids, and an order that
        # changed between runs would make hypothesis's replay draw a different task.
        task_id = data.draw(st.sampled_from([t for _, t in sorted(self.submissions.items())]))
        was_done = self.engine.get(task_id).done
        if action == "cancel":
            code, _ = self.engine.cancel(task_id, now=self.now)
            assert code == ("TaskComplete" if was_done else "Canceled")
        elif action == "pause":
            was_paused = self.engine.get(task_id).paused
            assert self.engine.pause(task_id, now=self.now) is not (was_done or was_paused)
        elif action == "unpause":
            self.engine.unpause(task_id, now=self.now)
        elif action == "expire":
            self.engine.expire_credential(task_id, now=self.now)
        elif action == "renew":
            self.engine.renew_credential(task_id, now=self.now)
        elif action == "fault":
            before = self.engine.get(task_id).faults
            assert self.engine.fault(task_id, now=self.now, code="ENDPOINT_ERROR") is not was_done
            task = self.engine.get(task_id)
            if not was_done:
                assert task.faults == before + 1
                # a pause shows over the error (is_ok of a paused task: true), an expired
                # credential over both (false)
                assert task.is_ok is (task.paused and not task.credential_expired)
                assert task.status == ("INACTIVE" if task.credential_expired else "ACTIVE")
        elif action == "inject":
            self.engine.inject_error(
                code="CONNECT_FAILED", now=self.now, task_id=task_id, heal_count=2
            )
        elif action == "fail":
            assert self.engine.fail(task_id, now=self.now) is not was_done
        else:
            if self.engine.force_finish(task_id, now=self.now):
                self._plan_new()
                self.engine.advance(self.now, 0.0)
                self.engine.settle(self.now)
                assert self.engine.get(task_id).status == "SUCCEEDED"

    @invariant()
    def promises(self) -> None:
        running: dict[tuple[str, str], int] = {}
        for task in self.engine:
            tid = task.task_id
            # SUCCEEDED and FAILED are absorbing
            if tid in self.finished:
                assert task.status == self.finished[tid]
            if task.done:
                self.finished[tid] = task.status
                assert task.completion_time is not None
                assert task.nice_status is None
            else:
                assert task.status in ("ACTIVE", "INACTIVE")
                # INACTIVE only while a credential has expired; a pause keeps it ACTIVE
                assert (task.status == "INACTIVE") == task.credential_expired
                assert task.is_ok is not None
                if task.error is not None and task.nice_status == task.error.code:
                    assert task.is_ok is False
                if task.paused or task.credential_expired:
                    assert not task.running
            # faults only grow
            assert task.faults >= self.faults_seen.get(tid, 0)
            self.faults_seen[tid] = task.faults
            if task.running and not task.done:
                key = (task.owner, task.request.type)
                running[key] = running.get(key, 0) + 1
            # progress never goes back and never exceeds the plan
            total = sum(self.sizes[tid])
            assert self.bytes_seen.get(tid, 0) <= task.bytes_transferred <= total
            self.bytes_seen[tid] = task.bytes_transferred
            if task.status == "SUCCEEDED":
                assert task.bytes_transferred == total
                assert task.files_transferred == len(self.sizes[tid])
                assert task.fatal_error is None
            if task.status == "FAILED":
                assert task.fatal_error is not None
        assert all(n <= 3 for n in running.values())


TestEngine = EngineMachine.TestCase


# -- filters ----------------------------------------------------------------------------
LABELS = st.one_of(st.none(), st.text(alphabet="abAB-_ *x", max_size=6))
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _doc(i: int, label: str | None, status: str, kind: str, minutes: int) -> dict[str, Any]:
    return {
        "task_id": f"t{i}",
        "label": label,
        "status": status,
        "type": kind,
        "request_time": (BASE + timedelta(minutes=minutes)).isoformat(),
        "completion_time": None
        if status == "ACTIVE"
        else (BASE + timedelta(minutes=minutes + 1)).isoformat(),
    }


DOCS = st.lists(
    st.builds(
        lambda *a: a,
        LABELS,
        st.sampled_from(["ACTIVE", "SUCCEEDED", "FAILED"]),
        st.sampled_from(["TRANSFER", "DELETE"]),
        st.integers(0, 100),
    ),
    max_size=25,
).map(lambda rows: [_doc(i, *row) for i, row in enumerate(rows)])


def _select(docs: list[dict[str, Any]], filters: list[str]) -> set[str]:
    preds = parse_filters(filters)
    return {d["task_id"] for d in docs if all(p(d) for p in preds)}


@given(
    docs=DOCS,
    statuses=st.sets(st.sampled_from(["ACTIVE", "SUCCEEDED", "FAILED"]), min_size=1),
    kinds=st.sets(st.sampled_from(["TRANSFER", "DELETE"]), min_size=1),
)
def test_status_and_type_filters_as_the_sdk_formats_them(
    docs: list[dict[str, Any]], statuses: set[str], kinds: set[str]
) -> None:
    text = _format_filter_item({"status": sorted(statuses), "type": sorted(kinds)})
    expected = {d["task_id"] for d in docs if d["status"] in statuses and d["type"] in kinds}
    assert _select(docs, [text]) == expected
    # the same clauses as separate filter parameters select the same tasks
    assert _select(docs, text.split("/")) == expected


@given(docs=DOCS, pattern=st.text(alphabet="abAB-*x", min_size=1, max_size=5), negate=st.booleans())
def test_label_pattern_filter(docs: list[dict[str, Any]], pattern: str, negate: bool) -> None:
    def like(label: str | None) -> bool:
        if label is None:
            return False
        # fnmatch's other wildcards are absent from the alphabet, so * is the only one
        return fnmatch.fnmatchcase(label.lower(), pattern.lower())

    expected = {d["task_id"] for d in docs if like(d["label"]) != negate}
    assert _select(docs, [f"label:{'!' if negate else ''}~{pattern}"]) == expected


@given(
    docs=DOCS,
    start=st.one_of(st.none(), st.integers(0, 100)),
    end=st.one_of(st.none(), st.integers(0, 100)),
)
def test_time_range_filter(docs: list[dict[str, Any]], start: int | None, end: int | None) -> None:
    def fmt(m: int | None) -> str:
        return "" if m is None else (BASE + timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:%S")

    def inside(value: str) -> bool:
        t = datetime.fromisoformat(value)
        return (start is None or t >= BASE + timedelta(minutes=start)) and (
            end is None or t <= BASE + timedelta(minutes=end)
        )

    expected = {d["task_id"] for d in docs if inside(d["request_time"])}
    assert _select(docs, [f"request_time:{fmt(start)},{fmt(end)}"]) == expected


@given(docs=DOCS, limit=st.integers(1, 30), desc=st.booleans())
def test_paging_covers_the_ordered_list_exactly_once(
    docs: list[dict[str, Any]], limit: int, desc: bool
) -> None:
    ordered = order_tasks(docs, [("request_time", desc), ("task_id", False)])
    seen: list[str] = []
    offset = 0
    while offset < len(ordered):
        lim, off = page_window(str(limit), str(offset), default_limit=10)
        page = ordered[off : off + lim]
        seen.extend(d["task_id"] for d in page)
        offset += len(page)
    assert seen == [d["task_id"] for d in ordered]
    assert sorted(seen) == sorted(d["task_id"] for d in docs)
    times = [d["request_time"] for d in ordered]
    assert times == sorted(times, reverse=desc)


@given(limit=st.integers(-5, 1100), offset=st.integers(-5, 1100))
def test_page_window_enforces_the_1000_caps(limit: int, offset: int) -> None:
    valid = 1 <= limit <= 1000 and offset >= 0 and offset + limit <= 1000
    if valid:
        assert page_window(str(limit), str(offset), default_limit=10) == (limit, offset)
    else:
        with pytest.raises(ApiError) as info:
            page_window(str(limit), str(offset), default_limit=10)
        assert info.value.status == 400


@given(
    docs=DOCS,
    picks=st.lists(st.lists(st.integers(0, 30), max_size=5), max_size=3),
    status=st.sampled_from(["", "status:FAILED"]),
)
def test_task_id_shortcut_never_drops_a_match(
    docs: list[dict[str, Any]], picks: list[list[int]], status: str
) -> None:
    filters = [f"task_id:{','.join(f't{i}' for i in ids)}" for ids in picks if ids]
    if status:
        filters.append(status)
    matched = _select(docs, filters)
    candidates = task_id_candidates(filters)
    if not any(picks):
        assert candidates is None
    else:
        assert candidates is not None
        assert matched <= candidates
        assert matched == _select([d for d in docs if d["task_id"] in candidates], filters)
