"""Failure as Globus has it: retried faults while ACTIVE, deadlines, pause, credential expiry.

Every behaviour here has its source in docs/simulator.md's fidelity table. The simulator
retries a faulted task every 0.2 s here, and tests move its clock on instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from radical.orbit.simulator import Credentials, Simulator, worker
from radical.orbit.simulator.testing import running_simulator

HOUR = 3600.0
DAY = 24 * HOUR
RETRY = 0.2


@pytest.fixture
def sim_options() -> dict[str, object]:
    return {"retry_interval": RETRY}


@pytest.fixture
def slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """100 bytes/s: a 50 kB file keeps its task ACTIVE until a control ends it."""
    with running_simulator(tmp_path, bytes_per_second=100, retry_interval=RETRY) as simulator:
        for key, value in simulator.environ().items():
            monkeypatch.setenv(key, value)
        yield simulator


def _client(sim: Simulator, name: str = "alice") -> globus_sdk.TransferClient:
    creds = sim.add_user(name)
    return globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(creds.access_token)
    )


def _submit(
    tc: globus_sdk.TransferClient,
    src: str,
    dst: str,
    *,
    recursive: bool = False,
    **kwargs: Any,
) -> str:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2, **kwargs)
    td.add_item(src, dst, recursive=recursive)
    return str(tc.submit_transfer(td)["task_id"])


def _until(
    tc: globus_sdk.TransferClient,
    task_id: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 10.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = dict(tc.get_task(task_id).data)
        if check(doc):
            return doc
        assert time.monotonic() < deadline, f"condition never held; last: {doc}"
        time.sleep(0.05)


def _events(tc: globus_sdk.TransferClient, task_id: str) -> list[dict[str, Any]]:
    return [dict(e) for e in tc.task_event_list(task_id, limit=1000)]


def _when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- retryable errors ---------------------------------------------------------------------
def test_missing_source_stays_active_and_counts_faults(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _submit(tc, "/~/later.txt", "/~/later.txt")
    doc = _until(tc, task_id, lambda d: d["faults"] >= 3)
    assert doc["status"] == "ACTIVE"
    assert doc["is_ok"] is False
    assert doc["nice_status"] == "FILE_NOT_FOUND"
    assert doc["nice_status_short_description"] == "file not found"
    assert "/~/later.txt" in doc["nice_status_details"]
    assert 0 < doc["nice_status_expires_in"] <= 15 * 60
    assert doc["fatal_error"] is None
    # the SDK's wait does not end: the task is ACTIVE
    assert tc.task_wait(task_id, timeout=1, polling_interval=1) is False
    # one error event per fault (the task keeps faulting meanwhile)
    before = tc.get_task(task_id)["faults"]
    errors = [e for e in _events(tc, task_id) if e["is_error"]]
    assert before <= len(errors) <= tc.get_task(task_id)["faults"]
    assert errors[0]["code"] == "FILE_NOT_FOUND"
    assert errors[0]["description"] == "file not found"
    assert "/~/later.txt" in errors[0]["details"]
    # the file appears: the next retry succeeds, and the error is over
    sim.local_path(C1, "/~/later.txt", username="alice").write_text("here now\n")
    done = _until(tc, task_id, lambda d: d["status"] == "SUCCEEDED")
    assert done["files_transferred"] == 1
    assert done["is_ok"] is None
    assert done["nice_status"] is None


def test_missing_source_expires_at_the_deadline(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _submit(tc, "/~/never.txt", "/~/never.txt")
    doc = _until(tc, task_id, lambda d: d["faults"] >= 1)
    # no progress: the deadline stays 24 h after submission
    assert _when(doc["deadline"]) - _when(doc["request_time"]) == pytest.approx(DAY, abs=2)
    sim.advance_clock(DAY - 60)
    assert tc.get_task(task_id)["status"] == "ACTIVE"
    sim.advance_clock(120)
    doc = _until(tc, task_id, lambda d: d["status"] == "FAILED")
    assert doc["fatal_error"] == {"code": "EXPIRED", "description": "expired"}
    assert doc["subtasks_expired"] == 1
    newest = _events(tc, task_id)[0]
    assert newest["code"] == "EXPIRED"
    assert newest["is_error"] is True


def _folder_of_two(sim: Simulator, folder: str) -> None:
    """``folder`` of alice's on C1 with a.txt and b.txt (each holding its name)."""
    sim.local_path(C1, folder, username="alice").mkdir()
    for name in ("a.txt", "b.txt"):
        sim.local_path(C1, f"{folder}/{name}", username="alice").write_text(name)


def test_permission_denied_on_a_path_is_retried(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    _folder_of_two(sim, "/~/locked")
    rule = sim.inject_error(
        "PERMISSION_DENIED", path="/~/locked/b.txt", details="Permission denied: b.txt"
    )
    task_id = _submit(tc, "/~/locked", "/~/copy", recursive=True)
    doc = _until(tc, task_id, lambda d: d["faults"] >= 2)
    assert doc["status"] == "ACTIVE"
    assert doc["is_ok"] is False
    assert doc["nice_status"] == "PERMISSION_DENIED"
    assert doc["nice_status_details"] == "Permission denied: b.txt"
    error = next(e for e in _events(tc, task_id) if e["is_error"])
    assert (error["code"], error["description"]) == ("PERMISSION_DENIED", "permission denied")
    assert sim.heal_errors(rule) == 1
    done = _until(tc, task_id, lambda d: d["status"] == "SUCCEEDED")
    assert done["files_transferred"] == 2


def test_skip_source_errors_skips_a_denied_source(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    _folder_of_two(sim, "/~/some")
    sim.inject_error("PERMISSION_DENIED", path="/~/some/b.txt")
    task_id = _submit(tc, "/~/some", "/~/out", recursive=True, skip_source_errors=True)
    done = _until(tc, task_id, lambda d: d["status"] == "SUCCEEDED")
    assert done["files_transferred"] == 1
    assert done["faults"] == 0
    assert done["subtasks_skipped_errors"] == 1
    skipped = list(tc.task_skipped_errors(task_id))
    assert [(s["source_path"], s["error_code"]) for s in skipped] == [
        ("/~/some/b.txt", "PERMISSION_DENIED")
    ]
    codes = [e["code"] for e in _events(tc, task_id)]
    assert "SKIPPED_ERRORS" in codes
    assert "SKIPPED_ERROR" not in codes


def test_endpoint_error_heals_after_a_count(
    slow: Simulator,
) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"e" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    slow.inject_error("ENDPOINT_ERROR", task_id=task_id, heal_count=2)
    doc = _until(tc, task_id, lambda d: d["faults"] == 2 and d["nice_status"] == "OK")
    # healed: running again, is_ok back to true, the error gone from nice_status
    assert doc["status"] == "ACTIVE"
    assert doc["is_ok"] is True
    assert doc["nice_status_expires_in"] == -1
    assert doc["subtasks_retrying"] == 0
    errors = [e for e in _events(tc, task_id) if e["is_error"]]
    assert [e["code"] for e in errors] == ["ENDPOINT_ERROR", "ENDPOINT_ERROR"]
    assert errors[0]["description"] == "endpoint error"
    assert slow.finish_task(task_id)
    done = tc.get_task(task_id)
    assert done["status"] == "SUCCEEDED"
    assert done["faults"] == 2


def test_connection_error_heals_at_a_time(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    # Injected before the submit, by the path the request names: no race with the worker.
    sim.inject_error("CONNECT_FAILED", path="/~/f1.txt", heal_after=2 * HOUR)
    task_id = _submit(tc, "/home/share/godata/file1.txt", "/~/f1.txt")
    doc = _until(tc, task_id, lambda d: d["faults"] >= 2)
    assert doc["status"] == "ACTIVE"
    assert doc["nice_status"] == "CONNECT_FAILED"
    assert doc["files_transferred"] == 0
    sim.advance_clock(2 * HOUR + 1)
    done = _until(tc, task_id, lambda d: d["status"] == "SUCCEEDED")
    assert done["faults"] >= 2
    assert sim.local_path(C2, "/~/f1.txt", username="alice").exists()


def test_checksum_mismatch_is_a_verify_checksum_fault(
    sim: Simulator,
    alice: Credentials,
    tc: globus_sdk.TransferClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim.local_path(C1, "/~/c.bin", username="alice").write_bytes(b"c" * 100)
    real_md5 = worker._md5
    # Every copy reads back different bytes, until the patch is undone.
    monkeypatch.setattr(worker, "_md5", lambda path: str(path))
    task_id = _submit(tc, "/~/c.bin", "/~/c.bin", verify_checksum=True)
    doc = _until(tc, task_id, lambda d: d["faults"] >= 1)
    assert doc["status"] == "ACTIVE"
    assert doc["nice_status"] == "VERIFY_CHECKSUM"
    assert doc["files_transferred"] == 0
    assert doc["bytes_transferred"] == 0
    monkeypatch.setattr(worker, "_md5", real_md5)
    done = _until(tc, task_id, lambda d: d["status"] == "SUCCEEDED")
    assert done["bytes_checksummed"] == 100
    codes = {e["code"] for e in _events(tc, task_id)}
    assert "VERIFY_CHECKSUM" in codes
    assert "CHECKSUM_MISMATCH" not in codes


def test_a_delete_of_a_missing_path_still_fails_at_once(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    dd = globus_sdk.DeleteData(endpoint=C1)
    dd.add_item("/~/never-there")
    task_id = tc.submit_delete(dd)["task_id"]
    doc = _until(tc, task_id, lambda d: d["status"] != "ACTIVE")
    assert doc["status"] == "FAILED"
    assert doc["fatal_error"] == {"code": "FILE_NOT_FOUND", "description": "file not found"}


# -- deadlines ----------------------------------------------------------------------------
def test_progress_moves_the_deadline_to_72_hours_after_it(slow: Simulator) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"p" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    doc = _until(tc, task_id, lambda d: d["bytes_transferred"] > 0)
    now = slow.now()
    assert _when(doc["deadline"]) == pytest.approx(now + 72 * HOUR, abs=5)
    # a given deadline is never moved
    given = _submit(tc, "/~/big.bin", "/~/big2.bin", deadline="2099-01-01T00:00:00+00:00")
    time.sleep(0.5)
    assert tc.get_task(given)["deadline"] == "2099-01-01T00:00:00+00:00"


def test_pause_and_unpause_move_the_deadline(slow: Simulator) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"p" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    assert slow.pause_task(task_id, message="storage maintenance")
    paused_at = slow.now()
    assert _when(tc.get_task(task_id)["deadline"]) == pytest.approx(paused_at + 90 * DAY, abs=2)
    # 40 h paused: beyond the 24 h default deadline (and inside the token's 48 h), no EXPIRED
    slow.advance_clock(40 * HOUR)
    before = tc.get_task(task_id)
    assert before["status"] == "ACTIVE"
    assert slow.unpause_task(task_id)
    unpaused_at = slow.now()
    doc = tc.get_task(task_id)
    if doc["bytes_transferred"] == before["bytes_transferred"]:
        assert _when(doc["deadline"]) == pytest.approx(unpaused_at + DAY, abs=2)
    else:  # the worker moved bytes between the unpause and this read: the progress rule
        assert _when(doc["deadline"]) == pytest.approx(slow.now() + 72 * HOUR, abs=5)


# -- pause ----------------------------------------------------------------------------------
def test_a_paused_task_is_active_with_is_paused(slow: Simulator) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"p" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    _until(tc, task_id, lambda d: d["bytes_transferred"] > 0)
    assert slow.pause_task(task_id, message="Paused for storage maintenance")
    assert slow.pause_task(task_id) is False  # already paused
    doc = tc.get_task(task_id)
    assert doc["status"] == "ACTIVE"
    assert doc["is_paused"] is True
    assert doc["nice_status_details"] == "Paused for storage maintenance"
    before = doc["bytes_transferred"]
    # the SDK keeps waiting: a pause is not INACTIVE
    assert tc.task_wait(task_id, timeout=1, polling_interval=1) is False
    assert tc.get_task(task_id)["bytes_transferred"] == before
    info = tc.task_pause_info(task_id)
    assert info["pause_rules"][0]["message"] == "Paused for storage maintenance"
    assert info["message"] == "Paused for storage maintenance"
    paused = _events(tc, task_id)[0]
    assert (paused["code"], paused["description"], paused["is_error"]) == (
        "PAUSED",
        "paused",
        False,
    )
    assert paused["details"] == "Paused for storage maintenance"
    assert slow.unpause_task(task_id)
    doc = tc.get_task(task_id)
    assert doc["is_paused"] is False
    assert doc["status"] == "ACTIVE"
    assert tc.task_pause_info(task_id)["pause_rules"] == []
    codes = [e["code"] for e in _events(tc, task_id)]
    assert codes[:2] == ["UNPAUSED", "PAUSED"]
    assert "RESUMED" not in codes
    assert slow.finish_task(task_id)


# -- credential expiry ----------------------------------------------------------------------
def test_credential_expiry_makes_the_task_inactive_until_renewed(slow: Simulator) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"p" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    assert slow.expire_credential(task_id)
    doc = tc.get_task(task_id)
    assert doc["status"] == "INACTIVE"
    assert doc["nice_status"] == "CREDENTIAL_EXPIRED"
    assert doc["is_ok"] is False
    assert doc["is_paused"] is False
    assert doc["completion_time"] is None
    # the SDK's wait ends at INACTIVE, as with Globus
    assert tc.task_wait(task_id, timeout=2, polling_interval=1) is True
    time.sleep(0.3)
    assert tc.get_task(task_id)["status"] == "INACTIVE"
    assert slow.renew_credential(task_id)
    assert slow.renew_credential(task_id) is False
    doc = tc.get_task(task_id)
    assert doc["status"] == "ACTIVE"
    assert doc["nice_status"] == "OK"
    assert doc["is_ok"] is True
    assert slow.finish_task(task_id)
    assert tc.get_task(task_id)["status"] == "SUCCEEDED"


# -- task documents -------------------------------------------------------------------------
@pytest.mark.parametrize("sim_options", [{"bytes_per_second": 100, "max_active": 1}])
def test_a_queued_task_before_planning(sim: Simulator, tc: globus_sdk.TransferClient) -> None:
    sim.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"q" * 50_000)
    first = _submit(tc, "/~/big.bin", "/~/one.bin")
    second = _submit(tc, "/~/big.bin", "/~/two.bin")
    running = _until(tc, first, lambda d: d["nice_status"] == "OK")
    assert running["nice_status_expires_in"] == -1
    assert running["is_ok"] is True
    queued = tc.get_task(second)
    assert queued["status"] == "ACTIVE"
    assert queued["nice_status"] == "Queued"
    assert queued["nice_status_short_description"] == "Queued"
    assert queued["nice_status_expires_in"] == -1
    assert queued["is_ok"] is True
    assert (queued["subtasks_total"], queued["subtasks_pending"]) == (1, 1)


def test_successful_transfers_of_an_active_task_is_refused(slow: Simulator) -> None:
    tc = _client(slow)
    slow.local_path(C1, "/~/big.bin", username="alice").write_bytes(b"s" * 50_000)
    task_id = _submit(tc, "/~/big.bin", "/~/big.bin")
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.task_successful_transfers(task_id)
    assert info.value.http_status == 400
    assert info.value.code == "ClientError.BadRequest"
    assert "is still in progress" in str(info.value.message)
    slow.finish_task(task_id)
    assert len(list(tc.task_successful_transfers(task_id))) == 1


@pytest.mark.parametrize(
    "label", ["x" * 129, "two\nlines", " leading", "trailing ", "\ttab"], ids=repr
)
def test_labels_globus_refuses(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient, label: str
) -> None:
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        _submit(tc, "/home/share/godata/file1.txt", "/~/l.txt", label=label)
    assert info.value.http_status == 400
    assert info.value.code == "ClientError.BadRequest"
    assert sim.tasks() == []
    # A missing source keeps the task ACTIVE, so update_task judges the label.
    task_id = _submit(tc, "/~/absent.txt", "/~/l.txt", label="x" * 128)
    assert tc.get_task(task_id)["label"] == "x" * 128
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.update_task(task_id, {"DATA_TYPE": "task", "label": label})
    assert info.value.http_status == 400
    assert info.value.code == "ClientError.BadRequest"


@pytest.mark.parametrize("sim_options", [{"max_filter_task_ids": 3}])
def test_task_id_filter_cap(tc: globus_sdk.TransferClient) -> None:
    ids = [_submit(tc, "/home/share/godata/file1.txt", f"/~/{i}.txt") for i in range(4)]
    assert len(list(tc.task_list(filter={"task_id": ids[:3]}))) == 3
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.task_list(filter={"task_id": ids})
    assert info.value.http_status == 400
    assert info.value.code == "ClientError.BadRequest.InvalidFilter"
    assert "at most 3" in str(info.value.message)


@pytest.mark.parametrize("sim_options", [{"time_scale": 1000.0}])
def test_time_scale_runs_the_clock_faster(sim: Simulator) -> None:
    start = sim.now()
    time.sleep(0.2)
    assert sim.now() - start >= 150
    sim.time_scale = 1.0
    start = sim.now()
    time.sleep(0.1)
    assert sim.now() - start < 5


def test_finish_task_overrides_an_injected_error(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    sim.inject_error("GC_NOT_CONNECTED", path="/~/forced.txt")
    task_id = _submit(tc, "/home/share/godata/file2.txt", "/~/forced.txt")
    _until(tc, task_id, lambda d: d["faults"] >= 1)
    assert sim.finish_task(task_id)
    done = tc.get_task(task_id)
    assert done["status"] == "SUCCEEDED"
    assert sim.local_path(C2, "/~/forced.txt", username="alice").exists()
