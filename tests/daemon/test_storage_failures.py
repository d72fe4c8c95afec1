"""A full disk in the middle of a submit, a cancel or a register (issue: a full disk between
the two submit records made a duplicate Globus task).

The ledger lives on a small tmpfs (the state folder's ``ledger.db`` is a link to it; SQLite
puts the -wal and -shm next to the real file), filled up at the chosen moment and freed
again. Mounting needs root; without it the tests are skipped.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from daemon_helpers import (
    client,
    history,
    new_user,
    register,
    start_daemon,
    transfer_body,
    wait_for,
)

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT


class Disk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as fh:
            chunk = b"\0" * 65536
            with contextlib.suppress(OSError):
                while True:
                    fh.write(chunk)

            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0")

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@pytest.fixture
def daemon_on_disk(tmp_path: Path, sim: Simulator, disk: Disk) -> Iterator[DaemonProcess]:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "ledger.db").symlink_to(disk.root / "ledger.db")
    process = start_daemon(tmp_path, sim)
    try:
        yield process
    finally:
        disk.free()
        process.stop()


def _labels(sim: Simulator, label: str) -> int:
    return sum(t.get("label") == label for t in sim.tasks())


def test_a_full_disk_between_the_two_submit_records_runs_nothing_twice(
    daemon_on_disk: DaemonProcess, sim: Simulator, disk: Disk
) -> None:
    creds = new_user(sim)
    with client(daemon_on_disk) as http:
        session_id = register(http, creds)
        earlier = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("ok"))
        assert earlier.status_code == 200, earlier.text
        # Globus takes 2 s to answer: time to fill the disk after submit_requested.
        sim.schedule_fault(route="submit_transfer", delay=2.0 * UNIT, count=1)
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(
                http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("full"))
            )
        )
        sender.start()
        wait_for(
            # The second one: the earlier submit's is there already.
            lambda: (
                [e["kind"] for e in history(http, session_id=session_id)].count("submit_requested")
                >= 2
            ),
            timeout=10 * UNIT,
            what="the second submit_requested recorded",
        )
        disk.fill()
        sender.join(30 * UNIT)
        answer = answers[0]
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["error"] == "StorageUnavailable"
        assert body["sent"] is True and body["task_id"] and body["submission_id"]
        assert "do not resubmit" in body["message"]
        # A repeat under the same submission id is answered from the ledger, never sent again:
        # pending while the task is not recorded, the first task once it is (below).
        same = {**transfer_body("full"), "submission_id": body["submission_id"]}
        repeat = http.post(f"/globus/sessions/{session_id}/transfers", json=same)
        assert repeat.status_code == 503 and repeat.json()["error"] == "SubmitPending"
        assert http.get("/ready").status_code == 503

        # Everything else that records refuses cleanly, saying nothing was sent or kept.
        refused = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("full2"))
        assert refused.status_code == 503 and refused.json()["sent"] is False
        assert refused.json()["submission_id"]
        other = http.post("/globus/sessions", json={"access_token": new_user(sim).access_token})
        assert other.status_code == 503 and "session_id" not in other.json()
        cancel = http.post(
            f"/globus/sessions/{session_id}/tasks/{earlier.json()['task_id']}/cancel"
        )
        assert cancel.status_code == 503 and cancel.json()["sent"] is False

        disk.free()
        wait_for(
            lambda: any(
                e["kind"] == "task_submitted" and e["task_id"] == body["task_id"]
                for e in history(http, session_id=session_id)
            ),
            timeout=30 * UNIT,
            what="the task recorded once the disk freed",
        )
        assert http.get("/ready").status_code == 204
        again = http.post(f"/globus/sessions/{session_id}/transfers", json=same)
        assert again.status_code == 200, again.text
        assert again.json()["task_id"] == body["task_id"] and again.json()["code"] == "Duplicate"
        assert _labels(sim, "full") == 1
        assert _labels(sim, "full2") == 0
        assert http.get(f"/globus/sessions/{session_id}/tasks/{body['task_id']}").status_code == 200
    log = daemon_on_disk.log_path.read_text()
    assert "unhandled error" not in log
