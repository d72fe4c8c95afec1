"""Per-user limits: 3 running tasks per type, pending cap, deadlines, the rate limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import globus_sdk
import pytest

from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT


@pytest.fixture
def slow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    with running_simulator(tmp_path, bytes_per_second=1000) as sim:
        for key, value in sim.environ().items():
            monkeypatch.setenv(key, value)
        yield sim


def _client(sim: Simulator, name: str) -> globus_sdk.TransferClient:
    creds = sim.add_user(name)
    return globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(creds.access_token)
    )


def _submit(tc: globus_sdk.TransferClient, src: str = "/~/big", **kw: object) -> str:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2, **kw)  # type: ignore[arg-type]
    td.add_item(src, src + ".copy")
    return str(tc.submit_transfer(td)["task_id"])


def test_three_active_others_queued(slow: Simulator) -> None:
    tc = _client(slow, "alice")
    slow.local_path(C1, "/~/big", username="alice").write_bytes(b"q" * 1_000_000)
    ids = [_submit(tc) for _ in range(5)]
    time.sleep(0.3)
    docs = [tc.get_task(t) for t in ids]
    assert [d["status"] for d in docs] == ["ACTIVE"] * 5
    assert [d["nice_status"] for d in docs] == ["OK"] * 3 + ["Queued"] * 2
    assert all(d["bytes_transferred"] > 0 for d in docs[:3])
    assert all(d["bytes_transferred"] == 0 for d in docs[3:])
    # delete tasks have their own three slots
    dd = globus_sdk.DeleteData(endpoint=C1, ignore_missing=True)
    dd.add_item("/~/nothing")
    delete_id = tc.submit_delete(dd)["task_id"]
    assert slow.wait_task(delete_id, timeout=5 * UNIT)["status"] == "SUCCEEDED"
    # another user is not held up by alice's queue
    tc_bob = _client(slow, "bob")
    slow.local_path(C1, "/~/big", username="bob").write_bytes(b"b" * 10)
    bob_task = _submit(tc_bob)
    assert slow.wait_task(bob_task, timeout=5 * UNIT)["status"] == "SUCCEEDED"
    # a finished task frees a slot for the first queued one
    tc.cancel_task(ids[0])
    time.sleep(0.1)
    assert tc.get_task(ids[3])["nice_status"] == "OK"
    assert tc.get_task(ids[4])["nice_status"] == "Queued"


@pytest.mark.parametrize("sim_options", [{"bytes_per_second": 1}])
def test_pending_limit(sim: Simulator) -> None:
    tc = _client(sim, "alice")
    sim.local_path(C1, "/~/big", username="alice").write_bytes(b"p" * 1000)
    for _ in range(100):
        _submit(tc)
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        _submit(tc)
    assert info.value.http_status == 409
    assert "pending" in str(info.value.message)
    sim.finish_task(sim.tasks()[0]["task_id"])
    _submit(tc)  # room again


def test_deadline_fails_the_task(slow: Simulator) -> None:
    tc = _client(slow, "alice")
    slow.local_path(C1, "/~/big", username="alice").write_bytes(b"d" * 1_000_000)
    deadline = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    task_id = _submit(tc, deadline=deadline)
    doc = slow.wait_task(task_id, timeout=5 * UNIT)
    assert doc["status"] == "FAILED"
    # EXPIRED, as Globus names it (task behavior, 3.; event codes)
    assert doc["fatal_error"] == {"code": "EXPIRED", "description": "expired"}
    assert doc["subtasks_expired"] == 1
    assert next(e["code"] for e in tc.task_event_list(task_id)) == "EXPIRED"


@pytest.mark.parametrize("sim_options", [{"rate_limit": 3, "rate_window": 1.0}])
def test_rate_limit_answers_429_with_retry_after(sim: Simulator) -> None:
    tc = _client(sim, "alice")
    tc_bob = _client(sim, "bob")
    with tc.retry_config.tune(max_retries=0):
        for _ in range(3):
            tc.get_endpoint(C1)
        with pytest.raises(globus_sdk.TransferAPIError) as info:
            tc.get_endpoint(C1)
    assert info.value.http_status == 429
    assert info.value.headers["Retry-After"] == "1"
    assert tc_bob.get_endpoint(C1)["id"] == C1  # per user
    # with its retries, the SDK waits Retry-After and gets through
    started = time.monotonic()
    assert tc.get_endpoint(C1)["id"] == C1
    assert time.monotonic() - started >= 0.5
