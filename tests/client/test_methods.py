"""Every GlobusClient / BridgeClient method through the real daemon and the simulator."""

from __future__ import annotations

import time
import uuid

import pytest
from client_helpers import DST, GODATA, SRC, godata_items

from radical.orbit import (
    AuthenticationError,
    BadRequestError,
    BridgeClient,
    ConfigurationError,
    ConsentRequiredError,
    DaemonUnavailable,
    GlobusClient,
    NoSessionError,
    NotFoundError,
    TaskFailed,
    TaskWaitTimeout,
)
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import MAPPED_COLLECTION_ID, Simulator, data_access_scope
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

BIG = [{"source": "/home/share/big/", "destination": "/~/big/", "recursive": True}]


def test_bridge_client_lists_endpoints_and_hands_out_the_globus_plugin(
    daemon: DaemonProcess,
) -> None:
    with BridgeClient(daemon.url, daemon.token) as bc:
        names = bc.list_endpoints()
        assert len(names) == 1
        described = bc.describe_endpoints()[0]
        assert described["name"] == names[0]
        assert "globus" in described["plugins"]
        ec = bc.get_endpoint_client(names[0])
        assert ec.name == names[0]
        globus = ec.get_plugin("globus")
        assert isinstance(globus, GlobusClient)
        assert globus.session_id is None
        with pytest.raises(ValueError, match="no plugin 'ftp'"):
            ec.get_plugin("ftp")
        with pytest.raises(NotFoundError):
            bc.get_endpoint_client("no-such-endpoint")


def test_bridge_client_finds_the_daemon_from_environment(
    daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("RADICAL_ORBIT_STATE_DIR", "/nonexistent/orbit")
    monkeypatch.setenv("RADICAL_ORBIT_URL", daemon.url)
    monkeypatch.setenv("RADICAL_ORBIT_TOKEN", daemon.token)
    with BridgeClient() as bc:
        assert bc.url == daemon.url
        assert bc.list_endpoints()
    monkeypatch.delenv("RADICAL_ORBIT_TOKEN")
    monkeypatch.setenv("RADICAL_ORBIT_TOKEN_FILE", str(daemon.state_dir / "token"))
    with BridgeClient() as bc:
        assert bc.list_endpoints()
    monkeypatch.delenv("RADICAL_ORBIT_TOKEN_FILE")
    with pytest.raises(ConfigurationError, match="RADICAL_ORBIT_TOKEN"):
        BridgeClient()
    monkeypatch.delenv("RADICAL_ORBIT_URL")
    with pytest.raises(ConfigurationError, match="RADICAL_ORBIT_URL"):
        BridgeClient()


def test_register_with_refresh_token_and_reregister_keeps_the_session(
    daemon: DaemonProcess, user: Credentials
) -> None:
    with GlobusClient(daemon.url, daemon.token) as globus:
        first = globus.register_session(
            refresh_token=user.refresh_token, client_id=user.client_id, local_collection=DST
        )
        assert first["session_id"] == globus.session_id
        assert first["local_collection"] == DST
        sub = globus.submit_transfer(SRC, "local", godata_items(), label="before")
        again = globus.register_session(access_token=user.access_token)
        assert again["session_id"] == first["session_id"]
        assert globus.get_task(sub["task_id"])["label"] == "before"
        closed = globus.unregister_session()
        assert closed["closed"] is True
        assert globus.session_id is None
        with pytest.raises(NoSessionError, match="register_session"):
            globus.list_tasks()


def test_transfer_task_lifecycle_and_listing(globus: GlobusClient, sim: Simulator) -> None:
    sub = globus.submit_transfer(
        SRC, "local", godata_items(), label="life", sync_level="checksum", verify_checksum=True
    )
    assert set(sub) >= {"task_id", "submission_id", "status"}
    assert sub["status"] in ("ACTIVE", "SUCCEEDED")
    final = globus.task_wait(sub["task_id"], timeout=30 * UNIT)
    assert final["status"] == "SUCCEEDED"
    assert final["files_transferred"] == 3
    assert final["bytes_transferred"] == sim.task(sub["task_id"])["bytes_transferred"]
    row = globus.get_task(sub["task_id"])
    assert row["task_id"] == sub["task_id"]
    assert row["label"] == "life"
    assert row["source"] == SRC and row["destination"] == DST
    tasks = globus.list_tasks()
    assert [t["task_id"] for t in tasks] == [sub["task_id"]]
    assert globus.list_tasks(status="ACTIVE") == []
    assert len(globus.list_tasks(limit=1, status="SUCCEEDED")) == 1


def test_task_wait_by_polling_the_daemon(globus: GlobusClient) -> None:
    sub = globus.submit_transfer(SRC, "local", godata_items("/~/polled/"))
    final = globus.task_wait(
        sub["task_id"], timeout=30 * UNIT, polling_interval=0.5, use_stream=False
    )
    assert final["status"] == "SUCCEEDED"
    assert "done" not in final


def test_task_wait_times_out_then_cancel_fails_the_task(globus: GlobusClient) -> None:
    sub = globus.submit_transfer(SRC, "local", BIG, label="slow")
    started = time.monotonic()
    with pytest.raises(TaskWaitTimeout) as info:
        globus.task_wait(sub["task_id"], timeout=0.5 * UNIT)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 5
    assert info.value.task is not None and info.value.task["status"] == "ACTIVE"
    answer = globus.cancel_task(sub["task_id"])
    assert answer["task_id"] == sub["task_id"]
    assert answer["code"] == "Canceled"
    with pytest.raises(TaskFailed) as failed:
        globus.task_wait(sub["task_id"], timeout=30 * UNIT, raise_on_failure=True)
    assert failed.value.task["status"] == "FAILED"
    assert globus.task_wait(sub["task_id"], timeout=5 * UNIT)["status"] == "FAILED"


def test_files_mkdir_rename_ls_and_delete(
    globus: GlobusClient, sim: Simulator, user: Credentials
) -> None:
    made = globus.mkdir("local", "/~/work/")
    assert made["code"] == "DirectoryCreated"
    sub = globus.submit_transfer(SRC, "local", godata_items("/~/work/in/"))
    globus.task_wait(sub["task_id"], timeout=30 * UNIT)
    renamed = globus.rename("local", "/~/work/in/file1.txt", "/~/work/in/first.txt")
    assert renamed["code"] == "FileRenamed"
    listing = globus.ls("local", "/~/work/in/")
    assert listing["DATA_TYPE"] == "file_list"
    assert sorted(e["name"] for e in listing["DATA"]) == ["file2.txt", "file3.txt", "first.txt"]
    assert {e["name"] for e in globus.ls(SRC, GODATA)["DATA"]} == {
        "file1.txt",
        "file2.txt",
        "file3.txt",
    }
    gone = globus.delete("local", ["/~/work/in/"], recursive=True, label="cleanup")
    assert set(gone) >= {"task_id", "submission_id", "status"}
    assert globus.task_wait(gone["task_id"], timeout=30 * UNIT)["status"] == "SUCCEEDED"
    assert globus.get_task(gone["task_id"])["type"] == "DELETE"
    assert not sim.local_path(DST, "/~/work/in/", username=user.username).exists()
    with pytest.raises(NotFoundError):
        globus.ls("local", "/~/work/in/")


def test_endpoint_search_and_get_endpoint(globus: GlobusClient) -> None:
    found = globus.endpoint_search("Tutorial")
    ids = {ep["id"] for ep in found}
    assert {SRC, DST} <= ids
    assert len(globus.endpoint_search("Tutorial", limit=1)) == 1
    document = globus.get_endpoint(SRC)
    assert document["id"] == SRC
    assert "Tutorial" in document["display_name"]


def test_history_events_tasks_and_pages(globus: GlobusClient) -> None:
    subs = [
        globus.submit_transfer(SRC, "local", godata_items(f"/~/h{i}/"), label=f"hist-{i}")
        for i in range(3)
    ]
    for sub in subs:
        globus.task_wait(sub["task_id"], timeout=30 * UNIT)
    session_id = globus.session_id
    page = globus.history(limit=2, session_id=session_id)
    assert len(page["events"]) == 2
    assert page["next_after"] == page["events"][-1]["seq"]
    everything = list(globus.iter_history(session_id=session_id, page_size=2))
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(set(seqs))
    assert everything[0]["kind"] == "session_opened"
    one = subs[1]["task_id"]
    mine = globus.history(task_id=one, session_id=session_id)["events"]
    assert mine and {e["task_id"] for e in mine} == {one}
    assert mine[-1]["data"]["status"] == "SUCCEEDED"
    rows = globus.history(view="tasks", session_id=session_id)["tasks"]
    assert {r["task_id"] for r in rows} == {s["task_id"] for s in subs}
    labelled = globus.history(view="tasks", label="hist-2", session_id=session_id)["tasks"]
    assert [r["task_id"] for r in labelled] == [subs[2]["task_id"]]
    future = globus.history(since=time.time() + 3600, session_id=session_id)
    assert future["events"] == []


def test_errors_carry_status_code_and_message(
    daemon: DaemonProcess, globus: GlobusClient, sim: Simulator, user: Credentials
) -> None:
    with pytest.raises(NotFoundError) as missing:
        globus.get_task(str(uuid.uuid4()))
    assert missing.value.status == 404
    assert missing.value.message
    with pytest.raises(BadRequestError) as bad:
        globus.submit_transfer(SRC, "local", [])
    assert bad.value.status in (400, 422)
    assert "items" in str(bad.value)
    with pytest.raises(ConsentRequiredError) as consent:
        globus.ls(MAPPED_COLLECTION_ID, "/")
    assert consent.value.status in (401, 403)
    assert data_access_scope(MAPPED_COLLECTION_ID) in consent.value.required_scopes
    assert data_access_scope(MAPPED_COLLECTION_ID) in str(consent.value)
    assert "consent" in str(consent.value)
    with GlobusClient(daemon.url, "not-the-token") as stranger:
        with pytest.raises(AuthenticationError) as denied:
            stranger.register_session(access_token=user.access_token)
        assert denied.value.status == 401
    lost = GlobusClient(daemon.url, daemon.token, session_id="no-such-session")
    with lost, pytest.raises(NotFoundError):
        lost.list_tasks()
    sim.expire_token(user.access_token)
    with pytest.raises(AuthenticationError) as expired:
        globus.ls("local", "/~/")
    assert user.access_token not in str(expired.value)
    assert "register" in expired.value.message


def test_unreachable_daemon_raises_daemon_unavailable() -> None:
    globus = GlobusClient("http://127.0.0.1:9", "token", session_id="s")
    with globus, pytest.raises(DaemonUnavailable) as info:
        globus.list_tasks()
    assert isinstance(info.value, ConnectionError)
    assert "127.0.0.1:9" in str(info.value)
    assert "token" not in str(info.value).replace("127.0.0.1:9", "")
