"""Each HTTP route of the globus plugin, end to end: HTTP -> daemon -> globus-sdk -> simulator."""

from __future__ import annotations

from pathlib import Path

from daemon_helpers import (
    C1,
    C2,
    Session,
    client,
    history,
    new_user,
    register,
    start_daemon,
    submit,
    transfer_body,
)

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator


def test_endpoints_describes_this_endpoint(shared_daemon: DaemonProcess) -> None:
    with client(shared_daemon) as http:
        answer = http.get("/endpoints")
    assert answer.status_code == 200
    (endpoint,) = answer.json()["endpoints"]
    assert endpoint["plugins"] == ["globus"]
    assert endpoint["name"]
    assert endpoint["version"]
    assert "local_collection" in endpoint


def test_register_then_unregister(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    with client(shared_daemon) as http:
        session_id = register(http, creds, local_collection=C2)
        assert (
            session_id[0].isalnum() and len(session_id) >= 32
        )  # 128 bits, never an option look-alike
        assert http.get(f"/globus/sessions/{session_id}/tasks").status_code == 200
        closed = http.delete(f"/globus/sessions/{session_id}")
        assert closed.json() == {"session_id": session_id, "closed": True}
        assert http.get(f"/globus/sessions/{session_id}/tasks").status_code == 404
        kinds = [e["kind"] for e in history(http, session_id=session_id)]
    assert kinds == ["session_opened", "session_closed"]


def test_submit_get_wait_list(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    with client(shared_daemon) as http:
        session_id = register(http, creds)
        sub = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("first"))
        assert sub.status_code == 200, sub.text
        body = sub.json()
        assert body["status"] == "ACTIVE"
        assert body["submission_id"]
        task_id = body["task_id"]
        assert shared_sim.task(task_id)["label"] == "first"

        done = http.post(
            f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 15}
        )
        assert done.status_code == 200
        assert done.json()["done"] is True
        assert done.json()["status"] == "SUCCEEDED"

        row = http.get(f"/globus/sessions/{session_id}/tasks/{task_id}").json()
        assert row["status"] == "SUCCEEDED"
        assert row["files_transferred"] == shared_sim.task(task_id)["files_transferred"] == 3
        assert row["source"] == C1
        assert row["destination"] == C2

        listed = http.get(
            f"/globus/sessions/{session_id}/tasks", params={"status": "SUCCEEDED"}
        ).json()
        assert [t["task_id"] for t in listed["tasks"]] == [task_id]
        assert http.get(
            f"/globus/sessions/{session_id}/tasks", params={"status": "ACTIVE"}
        ).json() == {"tasks": []}
    assert (shared_sim.local_path(C2, "/~/out/file1.txt", username=creds.username)).exists()


def test_wait_times_out_on_a_running_task(slow_session: Session) -> None:
    http, session_id = slow_session
    task_id = submit(http, session_id)
    waited = http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 0.3})
    assert waited.status_code == 200
    assert waited.json()["done"] is False
    assert waited.json()["status"] == "ACTIVE"


def test_cancel(slow_session: Session, slow_sim: Simulator) -> None:
    http, session_id = slow_session
    task_id = submit(http, session_id)
    cancelled = http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["task_id"] == task_id
    assert cancelled.json()["code"] == "Canceled"
    final = http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 10})
    assert final.json()["status"] == "FAILED"
    kinds = [e["kind"] for e in history(http, task_id=task_id)]
    assert slow_sim.task(task_id)["status"] == "FAILED"
    assert "cancel_result" in kinds


def test_delete(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    with client(shared_daemon) as http:
        session_id = register(http, creds)
        first = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body()).json()
        http.post(
            f"/globus/sessions/{session_id}/tasks/{first['task_id']}/wait", json={"timeout": 10}
        )
        gone = http.post(
            f"/globus/sessions/{session_id}/deletes",
            json={"collection": C2, "paths": ["/~/out/"], "recursive": True, "label": "rm"},
        )
        assert gone.status_code == 200, gone.text
        task_id = gone.json()["task_id"]
        final = http.post(
            f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 10}
        )
        assert final.json()["status"] == "SUCCEEDED"
        assert final.json()["type"] == "DELETE"
        assert final.json()["label"] == "rm"
    assert not shared_sim.local_path(C2, "/~/out/", username=creds.username).exists()


def test_ls_mkdir_rename(shared_session: Session) -> None:
    http, session_id = shared_session
    listing = http.get(
        f"/globus/sessions/{session_id}/ls",
        params={"collection": C1, "path": "/home/share/godata/"},
    )
    assert listing.status_code == 200
    assert sorted(f["name"] for f in listing.json()["DATA"]) == [
        "file1.txt",
        "file2.txt",
        "file3.txt",
    ]
    made = http.post(
        f"/globus/sessions/{session_id}/mkdir", json={"collection": C2, "path": "/~/d1"}
    )
    assert made.json()["code"] == "DirectoryCreated"
    moved = http.post(
        f"/globus/sessions/{session_id}/rename",
        json={"collection": C2, "oldpath": "/~/d1", "newpath": "/~/d2"},
    )
    assert moved.json()["code"] == "FileRenamed"
    names = [
        f["name"]
        for f in http.get(f"/globus/sessions/{session_id}/ls", params={"collection": C2}).json()[
            "DATA"
        ]
    ]
    assert "d2" in names
    assert "d1" not in names
    missing = http.get(
        f"/globus/sessions/{session_id}/ls", params={"collection": C2, "path": "/~/nope/"}
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    assert missing.json()["globus_code"].startswith("ClientError.NotFound")


def test_endpoint_search_and_get_endpoint(shared_session: Session) -> None:
    http, session_id = shared_session
    found = http.get(
        f"/globus/sessions/{session_id}/endpoint_search", params={"filter_text": "Tutorial"}
    )
    assert found.status_code == 200
    ids = {e["id"] for e in found.json()["endpoints"]}
    assert {C1, C2} <= ids
    doc = http.get(f"/globus/sessions/{session_id}/endpoints/{C1}")
    assert doc.status_code == 200
    assert doc.json()["id"] == C1
    assert doc.json()["display_name"] == "Globus Tutorial Collection 1"


def test_local_collection_per_session_and_daemon(tmp_path: Path, sim: Simulator) -> None:
    creds = sim.add_user("alice")
    process = start_daemon(tmp_path, sim, local_collection=C2)
    try:
        with client(process) as http:
            assert http.get("/endpoints").json()["endpoints"][0]["local_collection"] == C2
            session_id = register(http, creds)
            names = http.get(
                f"/globus/sessions/{session_id}/ls", params={"collection": "local", "path": "/~/"}
            )
            assert names.status_code == 200
            assert names.json()["endpoint"] == C2
            other = register(http, creds, local_collection=C1)
            listing = http.get(
                f"/globus/sessions/{other}/ls",
                params={"collection": "local", "path": "/home/share/godata/"},
            )
            assert listing.json()["endpoint"] == C1
            sub = http.post(
                f"/globus/sessions/{session_id}/transfers",
                json={
                    "source": C1,
                    "destination": "local",
                    "items": [
                        {"source": "/home/share/godata/file1.txt", "destination": "/~/f1.txt"}
                    ],
                },
            )
            row = http.get(f"/globus/sessions/{session_id}/tasks/{sub.json()['task_id']}").json()
    finally:
        process.stop()
    assert row["destination"] == C2


def test_local_collection_unconfigured_is_a_clear_400(shared_session: Session) -> None:
    http, session_id = shared_session
    answer = http.post(
        f"/globus/sessions/{session_id}/transfers",
        json={
            "source": C1,
            "destination": "local",
            "items": [{"source": "/a", "destination": "/b"}],
        },
    )
    events = history(http, session_id=session_id)
    assert answer.status_code == 400
    assert answer.json()["error"] == "LocalCollectionNotConfigured"
    assert "RADICAL_ORBIT_GLOBUS_COLLECTION" in answer.json()["message"]
    assert [e["kind"] for e in events] == ["session_opened"]  # nothing recorded


def test_history_views(daemon: DaemonProcess, sim: Simulator) -> None:
    creds = sim.add_user("alice")
    with client(daemon) as http:
        session_id = register(http, creds)
        ids = []
        for label in ("a", "b"):
            task_id = submit(http, session_id, label)
            http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 10})
            ids.append(task_id)
        tasks = http.get("/globus/history", params={"view": "tasks"}).json()["tasks"]
        assert {t["task_id"] for t in tasks} == set(ids)
        labelled = http.get("/globus/history", params={"view": "tasks", "label": "b"}).json()[
            "tasks"
        ]
        assert [t["task_id"] for t in labelled] == [ids[1]]
        page = http.get("/globus/history", params={"limit": 2}).json()
        assert len(page["events"]) == 2
        rest = http.get(
            "/globus/history", params={"after": page["next_after"], "limit": 1000}
        ).json()
        seqs = [e["seq"] for e in page["events"] + rest["events"]]
        assert seqs == sorted(set(seqs))
        assert rest["next_after"] is None
        one = history(http, task_id=ids[0])
        everything = history(http)
        middle = everything[len(everything) // 2]["time"]
        filtered = {
            "since": history(http, since=middle),
            "until": history(http, until=middle),
            "status": history(http, status="SUCCEEDED"),
            "label": history(http, label="b"),
            "both": history(http, label="a", status="ACTIVE"),
        }
        # Paging through a filtered view: full pages, then next_after null.
        pages, after = [], 0
        while after is not None:
            page = http.get(
                "/globus/history", params={"status": "SUCCEEDED", "limit": 1, "after": after}
            ).json()
            pages += page["events"]
            after = page["next_after"]
    assert filtered["since"] == [e for e in everything if e["time"] >= middle]
    assert filtered["until"] == [e for e in everything if e["time"] < middle]
    assert filtered["since"] and filtered["until"]
    assert [e["task_id"] for e in filtered["status"]] == ids
    assert pages == filtered["status"]
    assert {e["data"]["label"] for e in filtered["label"]} == {"b"}
    assert {e["task_id"] for e in filtered["label"]} == {ids[1]}
    assert filtered["both"][0]["kind"] == "task_submitted"
    assert {(e["task_id"], e["data"]["status"]) for e in filtered["both"]} == {(ids[0], "ACTIVE")}
    assert {e["task_id"] for e in one} == {ids[0]}
    assert one[0]["kind"] == "task_submitted"
    assert one[-1]["data"]["status"] == "SUCCEEDED"
