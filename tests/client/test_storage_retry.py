"""A submit repeats through 503 StorageUnavailable (the daemon's ledger cannot write, here
a full disk) as through a restart, and lands once the disk frees: one Globus task.

The ledger lives on a small tmpfs; mounting needs root, the test is skipped without it.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from client_helpers import DST, SRC, godata_items, start_daemon

from radical.orbit import GlobusClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT


@pytest.fixture
def small_disk_daemon(tmp_path: Path, sim: Simulator) -> Iterator[tuple[DaemonProcess, Path]]:
    """A daemon whose ledger lives on a 16 MB tmpfs (also returned, to fill it)."""
    disk, state = tmp_path / "disk", tmp_path / "state"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        state.mkdir(mode=0o700)
        # SQLite puts the -wal and -shm next to the real file: all on the small disk.
        (state / "ledger.db").symlink_to(disk / "ledger.db")
        daemon = start_daemon(sim, state)
        try:
            yield daemon, disk
        finally:
            daemon.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_submit_waits_out_a_full_disk_and_lands_once(
    small_disk_daemon: tuple[DaemonProcess, Path], sim: Simulator, user: Credentials
) -> None:
    daemon, disk = small_disk_daemon
    filler = disk / "filler"
    label = "through-a-full-disk"
    results: list[dict[str, Any] | BaseException] = []
    with (
        GlobusClient(daemon.url, daemon.token, submit_timeout=60 * UNIT) as globus,
        httpx.Client(base_url=daemon.url, timeout=10 * UNIT) as http,
    ):
        globus.register_session(access_token=user.access_token, local_collection=DST)
        submission_id = globus.generate_submission_id()
        # dd stops at ENOSPC, after a last partial block: nothing is left for the ledger.
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)

        def submit() -> None:
            try:
                results.append(
                    globus.submit_transfer(
                        SRC, DST, godata_items(), label=label, submission_id=submission_id
                    )
                )
            except BaseException as exc:
                results.append(exc)

        sender = threading.Thread(target=submit)
        sender.start()
        # The submit is the only writer: /ready turns 503 when its record failed.
        deadline = time.monotonic() + 30 * UNIT
        while http.get("/ready").status_code != 503:
            assert time.monotonic() < deadline and not results, results
            sender.join(0.1 * UNIT)
        filler.unlink()
        sender.join(60 * UNIT)
    assert len(results) == 1 and isinstance(results[0], dict), results
    assert results[0]["submission_id"] == submission_id and results[0]["task_id"]
    assert sum(t.get("label") == label for t in sim.tasks()) == 1
