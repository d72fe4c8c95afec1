"""The ledger at start: restored backups never make seqs repeat, damaged or lost files are
refused with a message and exit status 3 (never a traceback, never an empty ledger), and
one malformed event row is skipped, not a 500 for its page."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import client, history, new_user, register, start_daemon, transfer_body

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT


def _serve(state: Path, sim: Simulator) -> subprocess.CompletedProcess[str]:
    """Start the daemon as an operator would and wait for it to give up."""
    return subprocess.run(
        [sys.executable, "-m", "radical.orbit.daemon", "serve", "--state-dir", str(state)],
        env={**sim.environ(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )


def _events(process: DaemonProcess, sim: Simulator, n: int) -> None:
    with client(process) as http:
        session_id = register(http, new_user(sim))
        for i in range(n):
            answer = http.post(
                f"/globus/sessions/{session_id}/transfers", json=transfer_body(f"e{i}")
            )
            assert answer.status_code == 200, answer.text


def _head(process: DaemonProcess) -> int:
    with client(process) as http:
        return max(e["seq"] for e in history(http))


def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 3, (result.returncode, result.stderr[-2000:])
    assert words in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_seqs_stay_monotonic_after_a_backup_is_restored(tmp_path: Path, sim: Simulator) -> None:
    process = start_daemon(tmp_path, sim)
    backup = tmp_path / "backup.db"
    try:
        _events(process, sim, 2)
        source = sqlite3.connect(f"file:{process.state_dir / 'ledger.db'}?mode=ro", uri=True)
        target = sqlite3.connect(backup)
        source.backup(target)
        source.close()
        target.close()
        _events(process, sim, 3)
        seen = _head(process)
    finally:
        process.stop()
    state = process.state_dir
    for suffix in ("-wal", "-shm"):
        (state / f"ledger.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, state / "ledger.db")
    process.start()
    try:
        _events(process, sim, 1)
        with client(process) as http:
            new = [e["seq"] for e in history(http, after=seen)]
        assert new and min(new) > seen  # nothing reused a seq a client may hold
    finally:
        process.stop()
    assert "restored from a backup" in process.log_path.read_text()


@pytest.fixture(scope="module")
def used_state(tmp_path_factory: pytest.TempPathFactory, shared_sim: Simulator) -> Path:
    """A state folder whose ledger holds a few pages of events (the daemon stopped)."""
    root = tmp_path_factory.mktemp("used")
    process = start_daemon(root, shared_sim)
    try:
        _events(process, shared_sim, 30)
    finally:
        process.stop()
    return process.state_dir


def _copy(state: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(state, tmp_path / "state"))


def test_an_empty_or_missing_ledger_is_refused_once_it_held_events(
    tmp_path: Path, shared_sim: Simulator, used_state: Path
) -> None:
    state = _copy(used_state, tmp_path)
    ledger = state / "ledger.db"
    ledger.write_bytes(b"")
    _refused(_serve(state, shared_sim), "is empty (0 bytes)")
    ledger.unlink()
    _refused(_serve(state, shared_sim), "is missing")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("header", "cannot be read as a SQLite database"),
        ("truncated", "Restore it from a backup"),
        ("newer", "newer orbit-globus"),
    ],
)
def test_a_damaged_ledger_is_refused_with_exit_status_3(
    tmp_path: Path, shared_sim: Simulator, used_state: Path, damage: str, words: str
) -> None:
    state = _copy(used_state, tmp_path)
    ledger = state / "ledger.db"
    data = ledger.read_bytes()
    if damage == "header":
        ledger.write_bytes(b"garbage!" * 16 + data[128:])
    elif damage == "truncated":
        ledger.write_bytes(data[: len(data) // 2])
    else:
        db = sqlite3.connect(ledger)
        db.execute("PRAGMA user_version = 99")
        db.close()
    _refused(_serve(state, shared_sim), words)


def test_a_flipped_byte_in_the_wal_is_refused_not_silently_dropped(
    tmp_path: Path, sim: Simulator
) -> None:
    process = start_daemon(tmp_path, sim)
    _events(process, sim, 5)
    process.kill()  # no checkpoint: the commits stay in the WAL
    wal = process.state_dir / "ledger.db-wal"
    data = bytearray(wal.read_bytes())
    assert len(data) > 32 + 3 * (24 + 4096)
    data[32 + 24 + 100] ^= 0x01  # inside the first frame's page
    wal.write_bytes(bytes(data))
    _refused(_serve(process.state_dir, sim), "fails its checksum")


def test_a_malformed_event_row_is_skipped_not_a_500(tmp_path: Path, sim: Simulator) -> None:
    process = start_daemon(tmp_path, sim)
    _events(process, sim, 2)
    process.stop()
    db = sqlite3.connect(process.state_dir / "ledger.db")
    owner, session_id = db.execute(
        "SELECT owner, session_id FROM events WHERE owner IS NOT NULL"
    ).fetchone()
    # Text that is not JSON at all is refused by the history indexes on json_extract(data)
    # (migration 0006); JSON that is not an object still gets in by a hand edit.
    db.execute(
        "INSERT INTO events (time, kind, owner, session_id, task_id, data) "
        "VALUES (0, 'task_progress', ?, ?, NULL, '[\"not an object\"]')",
        (owner, session_id),
    )
    bad = db.execute("SELECT max(seq) FROM events").fetchone()[0]
    db.commit()
    db.close()
    process.start()
    try:
        _events(process, sim, 1)
        with client(process) as http:
            answer = http.get("/globus/history", params={"limit": 1000})
            assert answer.status_code == 200, answer.text
            seqs = [e["seq"] for e in answer.json()["events"]]
        assert bad not in seqs and max(seqs) > bad
    finally:
        process.stop()
    assert f"ledger event {bad} (task_progress) has malformed data" in process.log_path.read_text()
