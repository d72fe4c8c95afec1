"""A process killed with SIGKILL in the middle of group commits loses only unacknowledged
appends, and the file stays intact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from radical.orbit.ledger import Ledger

CHILD = Path(__file__).with_name("crash_appender.py")


def _run_and_kill(path: Path, prefix: str, *, acks: int) -> list[tuple[int, str, str]]:
    """Start the appender, SIGKILL it after ``acks`` acknowledgements, return them all."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while len(lines) < acks and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        # What the child printed before it died was acknowledged too.
        lines.extend(proc.stdout.readlines())
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    assert len(lines) >= acks, "the child stopped acknowledging appends"
    acked = []
    for line in lines:
        if not line.endswith("\n"):
            continue  # cut mid-line by the kill; its append may or may not have committed
        seq, kind, key = line.split()
        acked.append((int(seq), kind, key))
    return acked


async def test_sigkill_mid_batch_loses_only_unacknowledged(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    acknowledged: list[tuple[int, str, str]] = []
    for round_ in range(3):
        acknowledged += _run_and_kill(path, f"r{round_}", acks=300 + 200 * round_)

        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {
                seq: (kind, key)
                for seq, kind, key in conn.execute(
                    "SELECT seq, kind, json_extract(data, '$.submission_id') FROM events"
                )
            }
        finally:
            conn.close()
        for seq, kind, key in acknowledged:
            assert seq in stored, f"acknowledged seq {seq} was lost"
            assert stored[seq][0] == kind
            if kind != "task_progress":
                assert stored[seq][1] == key

        # The survivor's projections are exactly the fold of its events, and it goes on
        # appending after the highest seq ever acknowledged.
        async with await Ledger.open(path) as ledger:
            before = await ledger.projection_snapshot()
            await ledger.rebuild_projections()
            assert await ledger.projection_snapshot() == before
            assert await ledger.head() >= max(seq for seq, _, _ in acknowledged)
            submitted = sum(1 for kind, _ in stored.values() if kind == "task_submitted")
            assert len(before["tasks"]) == submitted
            # Submits are appended with their result in one transaction: none is half done.
            assert await ledger.pending_submissions() == []
