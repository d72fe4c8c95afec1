"""Transfers and deletes through globus-sdk: real bytes, counts, sync levels, options."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from radical.orbit.simulator import Credentials, Simulator
from timing import UNIT


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _make_source(sim: Simulator, user: str) -> Path:
    src = sim.local_path(C1, "/~/data", username=user)
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.bin").write_bytes(os.urandom(10_000))
    (src / "sub" / "b.txt").write_text("hello\n")
    (src / "sub" / "deeper" / "c.bin").write_bytes(os.urandom(3_333))
    (src / "empty.txt").write_bytes(b"")
    return src


def _submit(
    tc: globus_sdk.TransferClient, src: str, dst: str, *, recursive: bool = True, **kwargs: object
) -> str:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2, **kwargs)  # type: ignore[arg-type]
    td.add_item(src, dst, recursive=recursive)
    return str(tc.submit_transfer(td)["task_id"])


def _wait(tc: globus_sdk.TransferClient, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = dict(tc.get_task(task_id).data)
        if doc["status"] in ("SUCCEEDED", "FAILED") or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def test_godata_example_runs_unchanged(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _submit(tc, "/home/share/godata/", "/~/godata/", label="example")
    assert tc.task_wait(task_id, timeout=10 * UNIT, polling_interval=1)
    doc = tc.get_task(task_id)
    assert doc["status"] == "SUCCEEDED"
    assert doc["files_transferred"] == 3
    names = [e["name"] for e in tc.operation_ls(C2, path="/~/godata/")]
    assert names == ["file1.txt", "file2.txt", "file3.txt"]


def test_recursive_copy_is_byte_for_byte_with_counts(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    src = _make_source(sim, "alice")
    task_id = _submit(tc, "/~/data", "/~/copy", label="tree")
    doc = _wait(tc, task_id)
    assert doc["status"] == "SUCCEEDED", doc["fatal_error"]
    dst = sim.local_path(C2, "/~/copy", username="alice")
    assert _tree(dst) == _tree(src)
    assert (dst / "sub" / "deeper").is_dir()
    assert doc["files"] == 4
    assert doc["files_transferred"] == 4
    assert doc["bytes_transferred"] == 10_000 + 6 + 3_333
    assert doc["directories"] == 3
    assert doc["completion_time"] is not None
    assert doc["nice_status"] is None
    pairs = {
        (r["source_path"], r["destination_path"])
        for r in tc.paginated.task_successful_transfers(task_id).items()
    }
    # paths under /~/ come back as given (CLI fixtures), not as /home/alice/...
    assert ("/~/data/sub/b.txt", "/~/copy/sub/b.txt") in pairs
    assert len(pairs) == 4


@pytest.mark.parametrize("sim_options", [{"bytes_per_second": 40_000}])
def test_progress_grows_while_active(sim: Simulator, tc: globus_sdk.TransferClient) -> None:
    big = sim.local_path(C1, "/~/big.bin", username="alice")
    big.write_bytes(os.urandom(40_000))
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin", recursive=False)
    seen = []
    for _ in range(40):
        doc = tc.get_task(task_id)
        seen.append((doc["status"], doc["bytes_transferred"]))
        if doc["status"] != "ACTIVE":
            break
        time.sleep(0.1)
    active = [b for s, b in seen if s == "ACTIVE"]
    assert len(active) >= 3
    assert any(0 < b < 40_000 for b in active), seen
    assert active == sorted(active)
    assert seen[-1] == ("SUCCEEDED", 40_000)
    assert sim.local_path(C2, "/~/big.bin", username="alice").read_bytes() == big.read_bytes()


def test_duplicate_submission_returns_original_and_runs_once(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    sub_id = tc.get_submission_id()["value"]
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2, submission_id=sub_id)
    td.add_item("/home/share/godata/file1.txt", "/~/one.txt")
    first = tc.submit_transfer(td)
    second = tc.submit_transfer(td)
    assert first["code"] == "Accepted"
    assert second["code"] == "Duplicate"
    assert second["task_id"] == first["task_id"]
    assert len(list(tc.task_list(limit=100))) == 1
    assert len(sim.tasks()) == 1


@pytest.mark.parametrize("sim_options", [{"bytes_per_second": 1_000}])
def test_cancel_stops_a_running_task(sim: Simulator, tc: globus_sdk.TransferClient) -> None:
    sim.local_path(C1, "/~/slow.bin", username="alice").write_bytes(b"x" * 100_000)
    task_id = _submit(tc, "/~/slow.bin", "/~/slow.bin", recursive=False)
    result = tc.cancel_task(task_id)
    assert result["code"] == "Canceled"
    doc = tc.get_task(task_id)
    assert doc["status"] == "FAILED"
    assert doc["fatal_error"]["code"] == "CANCELED"
    assert tc.cancel_task(task_id)["code"] == "TaskComplete"
    time.sleep(0.1)
    assert not sim.local_path(C2, "/~/slow.bin", username="alice").exists()


@pytest.mark.parametrize(
    ("level", "copied"),
    [
        # same: identical file; size: same size, other bytes; newer: newer source; new: absent
        (0, {"new"}),
        (1, {"new", "size"}),
        (2, {"new", "newer"}),
        (3, {"new", "size", "content"}),
    ],
)
def test_sync_levels_skip_what_they_should(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient, level: int, copied: set[str]
) -> None:
    src = sim.local_path(C1, "/~/s", username="alice")
    dst = sim.local_path(C2, "/~/s", username="alice")
    src.mkdir()
    dst.mkdir()
    old, new = 1_600_000_000, 1_700_000_000
    cases = {
        # name: (source bytes, source mtime, destination bytes or None, destination mtime)
        "same": (b"same", old, b"same", old),
        "size": (b"longer!", old, b"short", new),
        "newer": (b"abcd", new, b"abcd", old),
        "content": (b"wxyz", old, b"abcd", new),
        "new": (b"fresh", old, None, 0),
    }
    for name, (sb, sm, db, dm) in cases.items():
        (src / name).write_bytes(sb)
        os.utime(src / name, (sm, sm))
        if db is not None:
            (dst / name).write_bytes(db)
            os.utime(dst / name, (dm, dm))
    task_id = _submit(tc, "/~/s", "/~/s", sync_level=level)
    doc = _wait(tc, task_id)
    assert doc["status"] == "SUCCEEDED"
    # A copy (without preserve_timestamp) gives the destination a new mtime.
    changed = {
        name
        for name, (_sb, _sm, db, dm) in cases.items()
        if db is None or int((dst / name).stat().st_mtime) != dm
    }
    assert changed == copied
    for name in copied:
        assert (dst / name).read_bytes() == cases[name][0]
    assert doc["files_transferred"] == len(copied)
    assert doc["files_skipped"] == len(cases) - len(copied)


def test_checksum_and_timestamps(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    f = sim.local_path(C1, "/~/t.bin", username="alice")
    f.write_bytes(b"z" * 1234)
    os.utime(f, (1_500_000_000, 1_500_000_000))
    task_id = _submit(
        tc, "/~/t.bin", "/~/t.bin", recursive=False, verify_checksum=True, preserve_timestamp=True
    )
    doc = _wait(tc, task_id)
    assert doc["status"] == "SUCCEEDED"
    assert doc["bytes_checksummed"] == 1234
    assert doc["verify_checksum"] is True
    out = sim.local_path(C2, "/~/t.bin", username="alice")
    assert int(out.stat().st_mtime) == 1_500_000_000
    plain = _submit(tc, "/~/t.bin", "/~/u.bin", recursive=False)
    assert _wait(tc, plain)["bytes_checksummed"] == 0
    assert int(sim.local_path(C2, "/~/u.bin", username="alice").stat().st_mtime) != 1_500_000_000


def test_delete_really_deletes(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    d = sim.local_path(C1, "/~/gone", username="alice")
    (d / "inner").mkdir(parents=True)
    (d / "inner" / "f").write_text("x")
    (d / "g").write_text("y")
    single = sim.local_path(C1, "/~/single.txt", username="alice")
    single.write_text("z")
    ddata = globus_sdk.DeleteData(endpoint=C1, recursive=True, label="cleanup")
    ddata.add_item("/~/gone")
    ddata.add_item("/~/single.txt")
    res = tc.submit_delete(ddata)
    assert res["code"] == "Accepted"
    assert res["DATA_TYPE"] == "delete_result"
    doc = _wait(tc, res["task_id"])
    assert doc["status"] == "SUCCEEDED"
    assert doc["type"] == "DELETE"
    assert not d.exists()
    assert not single.exists()
    missing = globus_sdk.DeleteData(endpoint=C1)
    missing.add_item("/~/never-there")
    assert _wait(tc, tc.submit_delete(missing)["task_id"])["status"] == "FAILED"
    ignored = globus_sdk.DeleteData(endpoint=C1, ignore_missing=True)
    ignored.add_item("/~/never-there")
    assert _wait(tc, tc.submit_delete(ignored)["task_id"])["status"] == "SUCCEEDED"


def test_no_items_is_a_bad_request(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.submit_transfer(td)
    assert info.value.http_status == 400
    assert info.value.code == "ClientError.BadRequest.NoTransferItems"


def test_unknown_collection_is_not_found(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    td = globus_sdk.TransferData(
        source_endpoint=C1, destination_endpoint="00000000-0000-0000-0000-000000000000"
    )
    td.add_item("/home/share/godata/file1.txt", "/~/x")
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.submit_transfer(td)
    assert info.value.http_status == 404
    assert info.value.code == "ClientError.NotFound"
