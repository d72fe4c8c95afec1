"""Schema migrations: fresh file, upgrade of a version-1 file, refusal of a newer file, and a
failing migration that must leave no trace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from radical.orbit.ledger import (
    CancelResult,
    Ledger,
    MigrationFailed,
    SchemaTooNew,
    SessionClosed,
    TaskProgress,
    TaskStateChanged,
)
from radical.orbit.ledger.schema import split_statements
from radical.orbit.migrations import Migration, load_migrations

FIXTURES = Path(__file__).parent / "fixtures"
LATEST = len(load_migrations())


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _old_ledger(path: Path, *, version: int) -> None:
    """A ledger file as schema ``version`` left it: the shipped migrations up to it (never
    changed once released, so they are that version's schema) and the frozen rows that
    version's code wrote (``fixtures/ledger_v<version>.sql``)."""
    conn = sqlite3.connect(path)
    try:
        for migration in load_migrations()[:version]:
            conn.executescript(migration.sql)
        conn.executescript((FIXTURES / f"ledger_v{version}.sql").read_text())
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.close()


def test_shipped_migrations_are_numbered_from_one() -> None:
    found = load_migrations()
    assert [m.version for m in found] == list(range(1, LATEST + 1))
    assert found[0].name.startswith("0001_") and LATEST >= 2


async def test_fresh_file_gets_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    async with await Ledger.open(path) as ledger:
        assert await ledger.head() == 0
    assert _version(path) == LATEST
    assert {"events", "tasks", "submissions", "sessions", "cancels"} <= _tables(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_upgrade_from_version_1_keeps_history_and_fills_submissions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    _old_ledger(path, version=1)
    assert _version(path) == 1 and "submissions" not in _tables(path)

    async with await Ledger.open(path) as ledger:
        assert _version(path) == LATEST
        assert await ledger.head() == 5
        row = await ledger.task("task-1")
        assert row is not None
        assert (row.status, row.bytes_transferred, row.label, row.last_seq) == (
            "ACTIVE",
            500,
            "old",
            4,
        )
        # The submissions table did not exist in version 1; the upgrade filled it from the
        # events, so the DELETE submit recorded before the upgrade is found as pending.
        pending = await ledger.pending_submissions()
        assert [(p.submission_id, p.type, p.request_time) for p in pending] == [
            ("sub-2", "DELETE", 1764200004.0)
        ]
        events = [e async for e in ledger.events_since(0)]
        assert [e.seq for e in events] == [1, 2, 3, 4, 5]
        assert events[3].event() == TaskProgress(
            owner="alice",
            session_id="s1",
            task_id="task-1",
            nice_status="OK",
            bytes_transferred=500,
            files_transferred=1,
        )
        stored = await ledger.append(TaskStateChanged(task_id="task-1", status="SUCCEEDED"))
        assert stored.seq == 6 and stored.time > events[-1].time


async def test_upgrade_from_version_2_fills_sessions_cancels_and_observations(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    _old_ledger(path, version=2)
    conn = sqlite3.connect(path)
    times = dict(conn.execute("SELECT seq, time FROM events").fetchall())
    conn.close()
    assert _version(path) == 2 and "sessions" not in _tables(path)

    async with await Ledger.open(path) as ledger:
        assert _version(path) == LATEST
        # Filled from the events by the upgrade, as the fold would have kept them.
        assert [
            (s.session_id, s.owner, s.local_collection) for s in await ledger.open_sessions()
        ] == [("s1", "alice", "lc")]
        assert [(c.task_id, c.session_id) for c in await ledger.pending_cancels()] == [
            ("task-2", "s1")
        ]
        observed = {r.task_id: r.observed_time for r in await ledger.tasks()}
        # task-1: its last state change (seq 13), not the later cancel answer; the others:
        # their submits (task-2's cancel request says nothing about its state).
        assert observed == {"task-1": times[13], "task-2": times[6], "task-3": times[8]}
        before = await ledger.projection_snapshot()
        await ledger.rebuild_projections()
        assert await ledger.projection_snapshot() == before
        # The upgraded ledger goes on: the projections follow new events.
        await ledger.append(CancelResult(session_id="s1", task_id="task-2", code="Canceled"))
        await ledger.append(SessionClosed(owner="alice", session_id="s1"))
        assert await ledger.pending_cancels() == [] and await ledger.open_sessions() == []


async def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with await Ledger.open(path) as ledger:
        await ledger.append(SessionClosed(session_id="s"))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaTooNew) as info:
        await Ledger.open(path)
    assert (info.value.found, info.value.supported) == (99, LATEST)
    assert "99" in str(info.value) and str(LATEST) in str(info.value)
    assert _version(path) == 99


async def test_failing_migration_rolls_back_entirely(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    async with await Ledger.open(path) as ledger:
        await ledger.append(SessionClosed(session_id="s"))
    broken = Migration(
        version=LATEST + 1,
        name=f"{LATEST + 1:04d}_broken.sql",
        sql="CREATE TABLE extra (x INTEGER);\nALTER TABLE tasks ADD COLUMN note TEXT;\n"
        "INSERT INTO missing_table VALUES (1);\n",
    )
    with pytest.raises(MigrationFailed) as info:
        await Ledger.open(path, migrations=[*load_migrations(), broken])
    assert info.value.version == LATEST + 1 and "missing_table" in str(info.value)
    assert _version(path) == LATEST
    assert "extra" not in _tables(path)
    conn = sqlite3.connect(path)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    conn.close()
    assert "note" not in columns
    async with await Ledger.open(path) as ledger:
        assert await ledger.head() == 1


async def test_failing_first_install_leaves_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    first = load_migrations()[0]
    broken = Migration(version=2, name="0002_broken.sql", sql="SELECT * FROM nowhere;")
    with pytest.raises(MigrationFailed):
        await Ledger.open(path, migrations=[first, broken])
    assert _version(path) == 0
    assert _tables(path) == set()


def test_migration_files_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(ValueError, match="expected version 2"):
        load_migrations(tmp_path)
    (tmp_path / "3_bad.sql").write_text("")
    with pytest.raises(ValueError, match="NNNN"):
        load_migrations(tmp_path)


def test_statements_split_with_trigger_bodies_whole() -> None:
    sql = (
        "-- comment\nCREATE TABLE t (x);\nCREATE TRIGGER g BEFORE UPDATE ON t\nBEGIN\n"
        "    SELECT RAISE(ABORT, 'no; really');\nEND;\n-- trailing comment\n"
    )
    statements = split_statements(sql)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
