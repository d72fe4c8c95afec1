"""Every remaining Transfer route through globus-sdk: operations, endpoints, task details,
task_list filters, ordering and paging."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import globus_sdk
import pytest

from radical.orbit.simulator import MAPPED_COLLECTION_ID, Credentials, Simulator
from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2


def _transfer(
    tc: globus_sdk.TransferClient,
    src: str,
    dst: str,
    *,
    label: str | None = None,
    recursive: bool = False,
    **kw: object,
) -> str:
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2, label=label, **kw)  # type: ignore[arg-type]
    td.add_item(src, dst, recursive=recursive)
    return str(tc.submit_transfer(td)["task_id"])


# -- operations -------------------------------------------------------------------------
def test_ls_filters_hidden_and_paging(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    home = sim.local_path(C1, "/~/", username="alice")
    for name in ("b.txt", "a.txt", "c.dat", ".hidden"):
        (home / name).write_text(name * 3)
    (home / "zdir").mkdir()
    listing = tc.operation_ls(C1)
    assert listing["DATA_TYPE"] == "file_list"
    assert listing["path"] == "/home/alice/"
    assert listing["endpoint"] == C1
    names = [e["name"] for e in listing]
    assert names == [".hidden", "a.txt", "b.txt", "c.dat", "zdir"]
    entry = next(e for e in listing if e["name"] == "a.txt")
    assert entry["DATA_TYPE"] == "file"
    assert entry["type"] == "file"
    assert entry["size"] == 15
    assert entry["last_modified"].endswith("+00:00")
    assert next(e for e in listing if e["name"] == "zdir")["type"] == "dir"
    assert ".hidden" not in [e["name"] for e in tc.operation_ls(C1, show_hidden=False)]
    txt = tc.operation_ls(C1, path="/~/", filter="name:~*.TXT")
    assert [e["name"] for e in txt] == ["a.txt", "b.txt"]
    assert [e["name"] for e in tc.operation_ls(C1, filter="type:dir")] == ["zdir"]
    assert [e["name"] for e in tc.operation_ls(C1, filter="name:=c.dat")] == ["c.dat"]
    page = tc.operation_ls(C1, show_hidden=False, limit=2, offset=1)
    assert [e["name"] for e in page] == ["b.txt", "c.dat"]
    assert page["total"] == 4
    ordered = tc.operation_ls(C1, show_hidden=False, orderby="name DESC")
    assert [e["name"] for e in ordered] == ["zdir", "c.dat", "b.txt", "a.txt"]


def test_ls_errors(sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient) -> None:
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_ls(C1, path="/~/missing/")
    assert info.value.http_status == 404
    assert info.value.code == "ClientError.NotFound"
    assert info.value.request_id
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_ls(C1, path="/home/share/godata/file1.txt")
    assert info.value.http_status == 502
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_ls(C1, filter="size:3")
    assert info.value.http_status == 400


def test_stat_mkdir_rename(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    stat = tc.operation_stat(C1, "/home/share/godata/file2.txt")
    assert stat["DATA_TYPE"] == "file"
    assert stat["name"] == "file2.txt"
    assert stat["type"] == "file"
    assert stat["size"] > 0
    made = tc.operation_mkdir(C2, "/~/newdir")
    assert made["DATA_TYPE"] == "mkdir_result"
    assert made["code"] == "DirectoryCreated"
    assert sim.local_path(C2, "/~/newdir", username="alice").is_dir()
    assert tc.operation_stat(C2, "/~/newdir")["type"] == "dir"
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_mkdir(C2, "/~/newdir")
    assert info.value.code == "ExternalError.MkdirFailed.Exists"
    renamed = tc.operation_rename(C2, "/~/newdir", "/~/renamed")
    assert renamed["code"] == "FileRenamed"
    assert sim.local_path(C2, "/~/renamed", username="alice").is_dir()
    assert not sim.local_path(C2, "/~/newdir", username="alice").exists()
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_rename(C2, "/~/newdir", "/~/again")
    assert info.value.http_status == 404
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_stat(C2, "/~/nothing")
    assert info.value.http_status == 404


def test_paths_cannot_escape_the_collection(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    listing = tc.operation_ls(C1, path="/../../../")
    assert listing["path"] == "/"
    assert {e["name"] for e in listing} == {"home"}


# -- endpoints --------------------------------------------------------------------------
def test_endpoint_search_and_get_endpoint(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    found = tc.endpoint_search("Tutorial")
    assert found["DATA_TYPE"] == "endpoint_list"
    ids = {e["id"] for e in found}
    assert ids == {C1, C2}
    assert found["has_next_page"] is False
    everything = list(tc.paginated.endpoint_search("", limit=1).items())
    assert len(everything) == 3
    assert MAPPED_COLLECTION_ID in {e["id"] for e in everything}
    assert list(tc.endpoint_search("no such words here")) == []
    assert list(tc.endpoint_search("Tutorial", filter_scope="my-endpoints")) == []
    doc = tc.get_endpoint(C1)
    assert doc["DATA_TYPE"] == "endpoint"
    assert doc["display_name"] == "Globus Tutorial Collection 1"
    assert tc.get_endpoint(MAPPED_COLLECTION_ID)["requires_data_access_consent"] is True
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint("11111111-2222-3333-4444-555555555555")
    assert info.value.http_status == 404


# -- task details -----------------------------------------------------------------------
@pytest.mark.parametrize("sim_options", [{"bytes_per_second": 100}])
def test_update_task_label_and_deadline(sim: Simulator, tc: globus_sdk.TransferClient) -> None:
    _update_task_checks(sim, tc)


def _update_task_checks(sim: Simulator, tc: globus_sdk.TransferClient) -> None:
    sim.local_path(C1, "/~/big", username="alice").write_bytes(b"b" * 100_000)
    task_id = _transfer(tc, "/~/big", "/~/big", label="before")
    assert tc.get_task(task_id)["label"] == "before"
    deadline = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    res = tc.update_task(
        task_id, {"DATA_TYPE": "task", "label": "after", "deadline": deadline.isoformat()}
    )
    assert res["code"] == "Updated"
    doc = tc.get_task(task_id)
    assert doc["label"] == "after"
    assert doc["deadline"] == deadline.isoformat()
    sim.finish_task(task_id)
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.update_task(task_id, {"DATA_TYPE": "task", "label": "late"})
    assert info.value.http_status == 409


def test_successful_transfers_paging_by_marker(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    src = sim.local_path(C1, "/~/many", username="alice")
    src.mkdir()
    for i in range(130):
        (src / f"f{i:03d}").write_text(str(i))
    task_id = _transfer(tc, "/~/many", "/~/many", recursive=True)
    assert sim.wait_task(task_id)["status"] == "SUCCEEDED"
    first = tc.task_successful_transfers(task_id)
    assert first["DATA_TYPE"] == "successful_transfers"
    assert len(first["DATA"]) == 100
    assert first["next_marker"] is not None
    rows = list(tc.paginated.task_successful_transfers(task_id).items())
    assert len(rows) == 130
    assert rows[0] == {
        "DATA_TYPE": "successful_transfer",
        "source_path": "/~/many/f000",
        "destination_path": "/~/many/f000",
    }


def test_skipped_errors_with_skip_source_errors(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    td = globus_sdk.TransferData(
        source_endpoint=C1, destination_endpoint=C2, skip_source_errors=True
    )
    td.add_item("/home/share/godata/file1.txt", "/~/ok.txt")
    td.add_item("/~/absent.txt", "/~/absent.txt")
    task_id = tc.submit_transfer(td)["task_id"]
    doc = sim.wait_task(task_id)
    assert doc["status"] == "SUCCEEDED"
    assert doc["files_transferred"] == 1
    skipped = list(tc.task_skipped_errors(task_id))
    assert len(skipped) == 1
    assert skipped[0]["source_path"] == "/~/absent.txt"
    assert skipped[0]["error_code"] == "FILE_NOT_FOUND"
    assert skipped[0]["error_time"] is not None
    assert tc.task_skipped_errors(task_id)["next_marker"] is None
    # the error's event, then SKIPPED_ERRORS (task behavior, 4.1); no fault: nothing retried
    events = list(tc.task_event_list(task_id, limit=100))
    assert [e["code"] for e in events] == [
        "SUCCEEDED",
        "SKIPPED_ERRORS",
        "FILE_NOT_FOUND",
        "STARTED",
    ]
    assert events[2]["is_error"] is True
    assert events[1]["is_error"] is False
    assert doc["subtasks_skipped_errors"] == 1
    assert doc["faults"] == 0


def test_event_list_paging(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _transfer(tc, "/home/share/godata/file1.txt", "/~/e.txt")
    sim.wait_task(task_id)
    events = tc.task_event_list(task_id)
    assert events["DATA_TYPE"] == "event_list"
    codes = [e["code"] for e in events]
    assert codes == ["SUCCEEDED", "STARTED"]
    assert events["total"] == 2
    assert [e["code"] for e in tc.task_event_list(task_id, limit=1, offset=1)] == ["STARTED"]
    assert events["DATA"][0]["DATA_TYPE"] == "event"
    assert events["DATA"][0]["is_error"] is False


def test_other_users_tasks_are_invisible(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    task_id = _transfer(tc, "/home/share/godata/file1.txt", "/~/x.txt")
    bob = sim.add_user("bob")
    tc_bob = globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(bob.access_token)
    )
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc_bob.get_task(task_id)
    assert info.value.http_status == 404
    assert list(tc_bob.task_list()) == []


# -- task_list --------------------------------------------------------------------------
def test_task_list_filters(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    ok1 = _transfer(tc, "/home/share/godata/file1.txt", "/~/1", label="Run-Alpha")
    ok2 = _transfer(tc, "/home/share/godata/file2.txt", "/~/2", label="run-beta")
    bad = _transfer(tc, "/~/missing", "/~/3", label="other")
    tc.cancel_task(bad)  # a missing source is retried, not failed
    dd = globus_sdk.DeleteData(endpoint=C1, label="del", ignore_missing=True)
    dd.add_item("/~/whatever")
    dele = tc.submit_delete(dd)["task_id"]
    for tid in (ok1, ok2, bad, dele):
        sim.wait_task(tid)

    def ids(**kw: object) -> set[str]:
        return {t["task_id"] for t in tc.task_list(limit=1000, **kw)}  # type: ignore[arg-type]

    assert ids() == {ok1, ok2, bad, dele}
    assert ids(filter={"task_id": [ok1, bad]}) == {ok1, bad}
    assert ids(filter="status:FAILED") == {bad}
    assert ids(filter="status:SUCCEEDED,FAILED/type:TRANSFER") == {ok1, ok2, bad}
    assert ids(filter={"type": "DELETE"}) == {dele}
    assert ids(filter="label:~run-*") == {ok1, ok2}
    assert ids(filter="label:!~run-*") == {bad, dele}
    assert ids(filter="label:=run-beta") == {ok2}
    assert ids(filter="label:!other") == {ok1, ok2, dele}
    # several filter parameters all apply
    assert ids(query_params={"filter": ["type:TRANSFER", "label:~*alpha"]}) == {ok1}
    now = datetime.now(UTC)
    past = (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    future = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert ids(filter=f"request_time:{past},{future}") == {ok1, ok2, bad, dele}
    assert ids(filter=f"request_time:{future},") == set()
    assert ids(filter=f"completion_time:,{future}") == {ok1, ok2, bad, dele}
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.task_list(filter="colour:blue")
    assert info.value.http_status == 400
    assert "colour" in str(info.value.message)


def test_task_list_orderby_and_paging(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    made = []
    for i in range(12):
        made.append(_transfer(tc, "/home/share/godata/file1.txt", f"/~/p{i}", label=f"L{i:02d}"))
        time.sleep(0.002)
    page = tc.task_list(limit=5, offset=0, orderby="label ASC")
    assert page["DATA_TYPE"] == "task_list"
    assert page["total"] == 12
    assert page["length"] == 5
    assert [t["label"] for t in page] == [f"L{i:02d}" for i in range(5)]
    desc = tc.task_list(limit=3, offset=2, orderby="label DESC")
    assert [t["label"] for t in desc] == ["L09", "L08", "L07"]
    newest_first = tc.task_list()
    assert len(newest_first["DATA"]) == 10  # the default limit
    assert [t["task_id"] for t in newest_first] == made[::-1][:10]
    every = list(tc.paginated.task_list(orderby="label ASC").items())
    assert [t["task_id"] for t in every] == made
    for bad in (
        {"limit": 1001},
        {"limit": 10, "offset": 995},
        {"limit": 0},
        {"orderby": "colour ASC"},
        {"orderby": "label UP"},
    ):
        with pytest.raises(globus_sdk.TransferAPIError) as info:
            tc.task_list(**bad)
        assert info.value.http_status == 400
