"""History queries are answered from indexes (no query the daemon makes scans a table) and
give exactly what their plain definition gives (a GLOB, a time range)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radical.orbit.ledger import Ledger, SubmitRequested, TaskStateChanged, TaskSubmitted
from radical.orbit.ledger.events import TransferItem, TransferRequest
from radical.orbit.ledger.store import (
    Query,
    events_query,
    glob_prefix,
    tasks_query,
)

LABELS = ["run-1-a", "run-1-b", "run-2-a", "run-10", "r[x]", "r*", "", "\U0010ffff\U0010ffffz"]
OWNERS = ["alice", "bob"]


def _submit(n: int, label: str | None, owner: str) -> list[SubmitRequested | TaskSubmitted]:
    request = TransferRequest(
        source="a", destination="b", items=(TransferItem(source="/x", destination="/y"),)
    )
    common = {"owner": owner, "session_id": f"s-{owner}", "submission_id": f"sub-{n}"}
    return [
        SubmitRequested(**common, type="TRANSFER", request=request),
        TaskSubmitted(**common, task_id=f"task-{n}", label=label),
    ]


async def _build(path: Path) -> None:
    async with await Ledger.open(path) as ledger:
        for n in range(40):
            label = LABELS[n % len(LABELS)] if n % 7 else None
            await ledger.append_many(_submit(n, label, OWNERS[n % 2]))
            if n % 3 == 0:
                status = "FAILED" if n % 2 else "SUCCEEDED"
                await ledger.append(TaskStateChanged(task_id=f"task-{n}", status=status))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "ledger.db"
    asyncio.run(_build(path))
    return path


def _plan(path: Path, query: Query) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + query.sql, query.params).fetchall()
    finally:
        conn.close()
    return [row[-1] for row in rows]


def _tasks(**filters: object) -> Query:
    base: dict[str, object] = {
        "owner": "alice",
        "session_id": None,
        "statuses": None,
        "label": None,
        "since": None,
        "until": None,
        "limit": 100,
        "offset": 0,
    }
    return tasks_query(**{**base, **filters})  # type: ignore[arg-type]


def _events(**filters: object) -> Query:
    base: dict[str, object] = {
        "after": 0,
        "until": None,
        "owner": "alice",
        "session_id": None,
        "task_id": None,
        "kinds": None,
        "limit": 1000,
    }
    return events_query(**{**base, **filters})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "search"),
    [
        # (the query, how its main table must be searched: every given filter in the index)
        (_tasks(label="run-1-a"), "tasks_by_owner_label (owner=? AND label=?)"),
        (_tasks(label="run-1-*"), "tasks_by_owner_label (owner=? AND label>? AND label<?)"),
        (_tasks(statuses=["FAILED"]), "tasks_by_owner_status (owner=? AND status=?)"),
        (
            _tasks(since=1.0, until=2.0),
            "tasks_by_owner (owner=? AND created_seq>? AND created_seq<?)",
        ),
        (
            _tasks(statuses=["FAILED"], since=1.0),
            "tasks_by_owner_status (owner=? AND status=? AND created_seq>?)",
        ),
        (
            _tasks(owner=None, session_id="s", statuses=["ACTIVE"]),
            "tasks_by_session_status (session_id=? AND status=?)",
        ),
        (
            _events(data={"status": "FAILED"}),
            "events_by_owner_status (owner=? AND <expr>=? AND seq>?)",
        ),
        (
            _events(data={"label": "run-1-a"}),
            "events_by_owner_label (owner=? AND <expr>=? AND seq>?)",
        ),
        (_events(times=(1.0, 2.0)), "events_by_owner (owner=? AND seq>? AND seq<?)"),
    ],
)
def test_history_queries_search_indexes_never_scan(built: Path, query: Query, search: str) -> None:
    plan = _plan(built, query)
    assert not [line for line in plan if re.match(r"SCAN (tasks|events)\b", line)], plan
    assert any(line.endswith(search) for line in plan if line.startswith("SEARCH")), plan
    # Time bounds are found from the time indexes, one row each.
    for line in plan[1:]:
        if line.startswith("SEARCH"):
            assert "COVERING INDEX tasks_by_request_time" in line or "events_by_time" in line


def test_glob_prefix() -> None:
    assert glob_prefix("run-1-*") == "run-1-"
    assert glob_prefix("run?") == "run"
    assert glob_prefix("[ab]c") == ""
    assert glob_prefix("plain") == "plain"


@settings(max_examples=60, deadline=None)
@given(
    pattern=st.text(alphabet="run-12ab*?[]^\U0010ffffz", max_size=8),
    owner=st.sampled_from(OWNERS),
)
def test_label_query_equals_plain_glob(built: Path, pattern: str, owner: str) -> None:
    conn = sqlite3.connect(built)
    try:
        query = _tasks(owner=owner, label=pattern)
        got = [row[0] for row in conn.execute(query.sql, query.params)]
        want = [
            row[0]
            for row in conn.execute(
                "SELECT task_id FROM tasks WHERE owner = ? AND label GLOB ? "
                "ORDER BY created_seq DESC",
                (owner, pattern),
            )
        ]
    finally:
        conn.close()
    assert got == want


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_time_ranges_equal_the_plain_conditions(built: Path, data: st.DataObject) -> None:
    conn = sqlite3.connect(built)
    try:
        times = sorted({row[0] for row in conn.execute("SELECT time FROM events")})
        edges = st.one_of(st.none(), st.sampled_from(times), st.floats(times[0] - 1, times[-1] + 1))
        since, until = data.draw(edges), data.draw(edges)
        after = data.draw(st.integers(0, len(times) * 3))
        query = _tasks(owner=None, since=since, until=until)
        got = [row[0] for row in conn.execute(query.sql, query.params)]
        clause = " AND ".join(
            c
            for c, v in (("request_time >= :since", since), ("request_time < :until", until))
            if v is not None
        )
        want = [
            row[0]
            for row in conn.execute(
                f"SELECT task_id FROM tasks {'WHERE ' + clause if clause else ''} "  # noqa: S608
                "ORDER BY created_seq DESC",
                {"since": since, "until": until},
            )
        ]
        assert got == want
        query = _events(owner=None, after=after, times=(since, until))
        got = [row[0] for row in conn.execute(query.sql, query.params)]
        want = [
            row[0]
            for row in conn.execute(
                "SELECT seq FROM events WHERE seq > :after "
                "AND (:since IS NULL OR time >= :since) AND (:until IS NULL OR time < :until) "
                "ORDER BY seq",
                {"since": since, "until": until, "after": after},
            )
        ]
        assert got == want
    finally:
        conn.close()
