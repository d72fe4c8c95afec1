"""Bad input gets 400/404/422 with a message that says what to fix; nothing is recorded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from daemon_helpers import C1, C2, Session, client, history, new_user, register, transfer_body

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import MAPPED_COLLECTION_ID, Simulator

ITEM = [{"source": "/a", "destination": "/b"}]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"source": C1, "destination": C2, "items": []}, "body.items"),
        ({"source": C1, "destination": C2}, "body.items"),
        ({"source": C1, "items": ITEM}, "body.destination"),
        ({"source": "", "destination": C2, "items": ITEM}, "body.source"),
        (
            {"source": C1, "destination": C2, "items": [{"source": "/a"}]},
            "body.items.0.destination",
        ),
        ({"source": C1, "destination": C2, "items": ITEM, "sync_level": "fast"}, "body.sync_level"),
        ({"source": C1, "destination": C2, "items": ITEM, "label": "x\ny"}, "body.label"),
        ({"source": C1, "destination": C2, "items": ITEM, "colour": "red"}, "body.colour"),
        ({"source": C1, "destination": C2, "items": "not a list"}, "body.items"),
    ],
)
def test_bad_transfer_bodies_are_422(
    shared_session: Session, body: dict[str, Any], where: str
) -> None:
    http, session_id = shared_session
    answer = http.post(f"/globus/sessions/{session_id}/transfers", json=body)
    recorded = [e["kind"] for e in history(http, session_id=session_id)]
    assert answer.status_code == 422
    assert answer.json()["error"] == "ValidationError"
    assert where in answer.json()["message"]
    assert recorded == ["session_opened"]


def test_bad_registration(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    secret = creds.access_token
    with client(shared_daemon) as http:
        nothing = http.post("/globus/sessions", json={})
        assert nothing.status_code == 400
        assert "access_token" in nothing.json()["message"]
        no_client = http.post("/globus/sessions", json={"refresh_token": creds.refresh_token})
        assert no_client.status_code == 400
        assert "client_id" in no_client.json()["message"]
        # A credential in a wrong-typed field is refused without being echoed back.
        wrong = http.post(
            "/globus/sessions", json={"access_token": secret, "session_id": 5, "x": secret}
        )
        assert wrong.status_code == 422
        assert secret not in wrong.text
        unknown = http.post("/globus/sessions", json={"access_token": secret, "session_id": "nope"})
        assert unknown.status_code == 404
    assert secret not in shared_daemon.log_path.read_text()


def test_bad_ids_queries_and_json(shared_session: Session) -> None:
    http, session_id = shared_session
    assert http.get("/globus/sessions/nosuch/tasks").status_code == 404
    missing = http.get(f"/globus/sessions/{session_id}/tasks/0000")
    assert missing.status_code == 404
    assert "0000" in missing.json()["message"]
    assert http.post(f"/globus/sessions/{session_id}/tasks/0000/cancel").status_code == 404
    limit = http.get(f"/globus/sessions/{session_id}/tasks", params={"limit": 0})
    assert limit.status_code == 422
    assert "limit" in limit.json()["message"]
    status = http.get(f"/globus/sessions/{session_id}/tasks", params={"status": "DONE"})
    assert status.status_code == 422
    wait = http.post(f"/globus/sessions/{session_id}/tasks/x/wait", json={"timeout": -1})
    assert wait.status_code == 422
    no_collection = http.get(f"/globus/sessions/{session_id}/ls")
    assert no_collection.status_code == 422
    assert "collection" in no_collection.json()["message"]
    broken = http.post(
        f"/globus/sessions/{session_id}/transfers",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 422
    assert http.get("/no/such/route").json()["error"] == "NotFound"
    view = http.get("/globus/history", params={"view": "everything"})
    assert view.status_code == 422


def test_globus_refusals_are_mapped(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    with client(shared_daemon) as http:
        session_id = register(http, creds)
        unknown = http.get(
            f"/globus/sessions/{session_id}/endpoints/00000000-0000-0000-0000-000000000000"
        )
        assert unknown.status_code == 404
        assert unknown.json()["globus_code"]
        shared_sim.schedule_fault(route="operation_ls", status=403, code="EndpointPermissionDenied")
        denied = http.get(f"/globus/sessions/{session_id}/ls", params={"collection": C2})
        assert denied.status_code == 403
        assert denied.json()["globus_code"] == "EndpointPermissionDenied"
        shared_sim.schedule_fault(route="operation_mkdir", status=500, code="ExternalError.Broken")
        broken = http.post(
            f"/globus/sessions/{session_id}/mkdir", json={"collection": C2, "path": "/~/x"}
        )
        assert broken.status_code == 502
        assert broken.json()["globus_code"] == "ExternalError.Broken"
        shared_sim.schedule_fault(route="endpoint_search", status=429, count=10)
        limited = http.get(f"/globus/sessions/{session_id}/endpoint_search")
        assert limited.status_code == 429
        assert "retry" in limited.json()["message"]
        shared_sim.clear_faults()
        rejected = http.post(
            f"/globus/sessions/{session_id}/transfers",
            json=transfer_body(
                items=[{"source": "/nope/", "destination": "/~/x/", "recursive": True}]
            )
            | {"source": "11111111-1111-1111-1111-111111111111"},
        )
        assert rejected.status_code in (400, 404)
        kinds = [e["kind"] for e in history(http, session_id=session_id)]
    assert kinds[-1] == "submit_failed"  # recorded as failed, never left pending


def test_consent_required_names_the_scope(shared_session: Session) -> None:
    http, session_id = shared_session
    answer = http.get(
        f"/globus/sessions/{session_id}/ls", params={"collection": MAPPED_COLLECTION_ID}
    )
    assert answer.status_code == 401
    body = answer.json()
    assert body["error"] == "ConsentRequired"
    assert body["required_scopes"]
    assert body["required_scopes"][0] in body["message"]
    assert "register the session again" in body["message"]


def test_body_size_limit(shared_session: Session) -> None:
    http, session_id = shared_session
    items = [{"source": "/" + "a" * 4000, "destination": "/b"}] * 1100  # ~4.5 MB
    big = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body(items=items))
    assert big.status_code == 413
    assert big.json()["error"] == "PayloadTooLarge"

    def chunks() -> Iterator[bytes]:
        yield b'{"source": "x", "destination": "y", "items": ["'
        for _ in range(600):
            yield b"z" * 8192
        yield b'"]}'

    streamed = http.post(
        f"/globus/sessions/{session_id}/transfers",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    recorded = [e["kind"] for e in history(http, session_id=session_id)]
    assert recorded == ["session_opened"]


def test_openapi_document_needs_the_token(shared_daemon: DaemonProcess) -> None:
    assert httpx.get(shared_daemon.url + "/openapi.json").status_code == 401
    with client(shared_daemon) as http:
        document = http.get("/openapi.json").json()
        assert http.get("/docs").status_code == 404
    assert "/globus/sessions/{session_id}/transfers" in document["paths"]
    assert "/globus/history" in document["paths"]
