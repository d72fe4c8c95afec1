"""The in-process control API: finish/pause/resume/fail, latency, faults, counts, tokens."""

from __future__ import annotations

import time
from pathlib import Path

import globus_sdk
import pytest

from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from radical.orbit.simulator import Credentials, Simulator, UnknownTask


@pytest.fixture
def sim_options() -> dict[str, object]:
    # Slow enough that a task of 50 kB stays ACTIVE until a control ends it.
    return {"bytes_per_second": 100}


def _slow_task(sim: Simulator, tc: globus_sdk.TransferClient, name: str = "slow.bin") -> str:
    sim.local_path(C1, f"/~/{name}", username="alice").write_bytes(b"s" * 50_000)
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    td.add_item(f"/~/{name}", f"/~/{name}")
    return str(tc.submit_transfer(td)["task_id"])


def test_finish_task_completes_with_real_files(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _slow_task(sim, tc)
    assert tc.get_task(task_id)["status"] == "ACTIVE"
    assert sim.finish_task(task_id) is True
    doc = tc.get_task(task_id)
    assert doc["status"] == "SUCCEEDED"
    assert doc["bytes_transferred"] == 50_000
    assert sim.local_path(C2, "/~/slow.bin", username="alice").stat().st_size == 50_000
    assert sim.finish_task(task_id) is False


def test_finish_all(sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient) -> None:
    ids = {_slow_task(sim, tc, f"f{i}.bin") for i in range(5)}
    assert set(sim.finish_all()) == ids
    assert {t["status"] for t in sim.tasks()} == {"SUCCEEDED"}


def test_fail_task_ends_it_with_the_given_fatal_error(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _slow_task(sim, tc)
    assert sim.fail_task(task_id, code="ENDPOINT_ERROR", description="disk on fire")
    doc = tc.get_task(task_id)
    assert doc["status"] == "FAILED"
    assert doc["fatal_error"] == {"code": "ENDPOINT_ERROR", "description": "disk on fire"}
    assert doc["is_ok"] is None
    assert doc["nice_status"] is None
    assert sim.fail_task(task_id) is False
    newest = tc.task_event_list(task_id, limit=100)["DATA"][0]
    assert newest["code"] == "ENDPOINT_ERROR"
    assert newest["description"] == "endpoint error"
    assert newest["details"] == "disk on fire"
    assert newest["is_error"] is True


def test_unknown_task_in_controls(sim: Simulator) -> None:
    with pytest.raises(UnknownTask):
        sim.finish_task("no-such-task")
    with pytest.raises(KeyError):
        sim.task("no-such-task")


def test_request_counts_by_route(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    tc.get_endpoint(C1)
    tc.task_list()
    tc.task_list()
    counts = sim.request_counts()
    assert counts["task_list"] == 2
    assert counts["get_endpoint"] == 1
    sim.reset_counts()
    assert sum(sim.request_counts().values()) == 0


def test_scheduled_429_is_retried_by_the_sdk(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    sim.schedule_fault(route="task_list", status=429, count=2, retry_after=1)
    started = time.monotonic()
    page = tc.task_list()
    assert page["DATA_TYPE"] == "task_list"
    assert sim.request_counts()["task_list"] == 3
    # two Retry-After: 1 sleeps
    assert time.monotonic() - started >= 1.9


def test_scheduled_500_exhausts_retries(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    sim.schedule_fault(route="get_endpoint", status=502, count=None, code="ExternalError.Boom")
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint(C1)
    assert info.value.http_status == 502
    assert info.value.code == "ExternalError.Boom"
    # ExternalError codes are not retried by the SDK
    assert sim.request_counts()["get_endpoint"] == 1
    sim.clear_faults()
    assert tc.get_endpoint(C1)["id"] == C1


def test_fault_fraction_hits_some(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    sim.schedule_fault(route="get_endpoint", status=400, count=None, fraction=0.5)
    outcomes = []
    for _ in range(40):
        try:
            tc.get_endpoint(C1)
            outcomes.append(True)
        except globus_sdk.TransferAPIError as exc:
            assert exc.http_status == 400
            outcomes.append(False)
    assert 5 < outcomes.count(False) < 35


def test_delay_fault_makes_the_sdk_time_out(sim: Simulator, alice: Credentials) -> None:
    sim.schedule_fault(route="get_endpoint", delay=1.5, count=1)
    tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(alice.access_token))
    with (
        tc.transport.tune(http_timeout=0.5),
        tc.retry_config.tune(max_retries=0),
        pytest.raises(globus_sdk.GlobusTimeoutError),
    ):
        tc.get_endpoint(C1)
    # the fault is spent: the next request is answered at once
    assert tc.get_endpoint(C1)["id"] == C1


def test_latency(sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient) -> None:
    sim.latency = 0.2
    started = time.monotonic()
    tc.get_endpoint(C1)
    assert time.monotonic() - started >= 0.2
    sim.latency = 0.0


def test_expired_token_gets_401(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    assert tc.get_endpoint(C1)["id"] == C1
    assert sim.expire_token(alice.access_token)
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint(C1)
    assert info.value.http_status == 401
    assert info.value.code == "ClientError.AuthenticationFailed"
    assert info.value.raw_json is not None
    assert alice.access_token not in info.value.text


def test_unknown_token_gets_401(sim: Simulator) -> None:
    tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer("bogus"))
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.task_list()
    assert info.value.http_status == 401
    assert info.value.code == "ClientError.AuthenticationFailed"


def test_stop_frees_the_port(tmp_path: Path) -> None:
    sim = Simulator(root=tmp_path / "s").start()
    url = sim.url
    sim.stop()
    sim.stop()  # idempotent
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/_sim/health", timeout=2)  # noqa: S310 - local http


def test_restart_keeps_url_and_state(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    td.add_item("/home/share/godata/file1.txt", "/~/r.txt")
    task_id = tc.submit_transfer(td)["task_id"]
    url = sim.url
    sim.stop()
    with pytest.raises(globus_sdk.GlobusConnectionError), tc.retry_config.tune(max_retries=0):
        tc.get_task(task_id)
    sim.start()
    assert sim.url == url
    assert tc.get_task(task_id)["task_id"] == task_id


def test_logs_never_show_a_token(sim: Simulator, alice: Credentials) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        auth = globus_sdk.NativeAppAuthClient(alice.client_id)
        refreshing = globus_sdk.TransferClient(
            authorizer=globus_sdk.RefreshTokenAuthorizer(alice.refresh_token, auth)
        )
        refreshing.get_endpoint(C1)
        sim.expire_token(alice.access_token)
        bad = globus_sdk.TransferClient(
            authorizer=globus_sdk.AccessTokenAuthorizer(alice.access_token)
        )
        with pytest.raises(globus_sdk.TransferAPIError):
            bad.task_list()
        sim.add_user("frank")
    text = repr(logs)
    assert len(logs) >= 4
    assert any(entry.get("route") == "get_endpoint" for entry in logs)
    for secret in (alice.access_token, alice.refresh_token, alice.client_secret):
        assert secret not in text


async def test_usable_from_an_asyncio_test(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    import asyncio

    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    td.add_item("/home/share/godata/file3.txt", "/~/async.txt")
    result = await asyncio.to_thread(tc.submit_transfer, td)
    doc = await asyncio.to_thread(sim.wait_task, result["task_id"])
    assert doc["status"] == "SUCCEEDED"
    assert sim.local_path(C2, "/~/async.txt", username="alice").exists()
