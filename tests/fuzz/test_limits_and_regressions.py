"""Request size limits, and the bugs the fuzzers found, pinned down one example each."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest
from fuzz_support import assert_alive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radical.orbit.daemon.api.limits import MAX_BODY
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from timing import UNIT


@pytest.fixture(scope="module")
def task(http: httpx.Client, fuzz_sim: Simulator) -> tuple[str, str]:
    """A session and a finished task in it."""
    creds = fuzz_sim.add_user("limits")
    session_id = http.post("/globus/sessions", json={"access_token": creds.access_token}).json()[
        "session_id"
    ]
    item = {"source": "/home/share/godata/file1.txt", "destination": "/~/l.txt"}
    body = {"source": TUTORIAL_COLLECTION_1, "destination": TUTORIAL_COLLECTION_2, "items": [item]}
    task_id = http.post(f"/globus/sessions/{session_id}/transfers", json=body).json()["task_id"]
    assert http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={}).json()["done"]
    return session_id, task_id


def _padded(document: dict[str, Any], size: int) -> bytes:
    """``document`` as JSON, padded with insignificant whitespace to exactly ``size`` bytes."""
    text = httpx.Request("POST", "http://x", json=document).content
    assert len(text) <= size
    return text[:-1] + b" " * (size - len(text)) + b"}"


def _assert_413(answer: httpx.Response) -> None:
    assert answer.status_code == 413, answer.text[:300]
    body = answer.json()
    assert body["error"] == "PayloadTooLarge"
    assert str(MAX_BODY) in body["message"]


# -- request body limit -------------------------------------------------------------------


@settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    extra=st.sampled_from([-1, 0, 1, 1000, MAX_BODY]) | st.integers(-100, 100),
    chunked=st.booleans(),
)
def test_body_limit_is_exact_whether_declared_or_streamed(
    fuzz_daemon: DaemonProcess, task: tuple[str, str], extra: int, chunked: bool
) -> None:
    session_id, task_id = task
    size = MAX_BODY + extra
    content = _padded({"timeout": 0}, size)
    url = f"{fuzz_daemon.url}/globus/sessions/{session_id}/tasks/{task_id}/wait"
    headers = {**fuzz_daemon.headers, "Content-Type": "application/json"}
    if chunked:
        step = 256 * 1024
        stream = (content[i : i + step] for i in range(0, len(content), step))
        answer = httpx.post(url, content=stream, headers=headers, timeout=60 * UNIT)
        assert "content-length" not in answer.request.headers
    else:
        answer = httpx.post(url, content=content, headers=headers, timeout=60 * UNIT)
    if size > MAX_BODY:
        _assert_413(answer)
    else:
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["done"] is True


def _raw_post(process: DaemonProcess, path: str, head: dict[str, str], body: bytes) -> str:
    """Send exactly these bytes (httpx refuses a Content-Length that lies); the status line."""
    host, port = process.url.removeprefix("http://").rsplit(":", 1)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in head.items())]
    with socket.create_connection((host, int(port)), timeout=30 * UNIT) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("declared", [str(MAX_BODY + 1), str(100 * MAX_BODY), "not-a-number"])
def test_lying_content_length_is_answered_at_once(
    fuzz_daemon: DaemonProcess, declared: str
) -> None:
    """A body announced larger than the limit (or not a number) but never sent: the answer
    comes at once, the daemon does not wait for the bytes that will not come."""
    head = {
        "Authorization": f"Bearer {fuzz_daemon.token}",
        "Content-Type": "application/json",
        "Content-Length": declared,
    }
    started = time.monotonic()
    status = _raw_post(fuzz_daemon, "/globus/sessions", head, b"{}")
    assert time.monotonic() - started < 5
    # 413 from the limit, or the HTTP parser's own 400 for a malformed header.
    assert status.split(" ")[1] in ("400", "413"), status
    assert_alive(fuzz_daemon)


# -- regressions found by the fuzzers -------------------------------------------------------


def test_huge_offsets_are_422_not_500(http: httpx.Client, task: tuple[str, str]) -> None:
    """Was: offset/after beyond SQLite's 64-bit integers -> OverflowError -> 500."""
    session_id, _ = task
    for path, name in (
        (f"/globus/sessions/{session_id}/tasks", "offset"),
        ("/globus/history", "offset"),
        ("/globus/history", "after"),
    ):
        answer = http.get(path, params={name: 2**64})
        assert answer.status_code == 422, (path, name, answer.text)
        assert answer.json()["error"] == "ValidationError"
        assert name in answer.json()["message"]
        assert http.get(path, params={name: 2**63 - 1}).status_code == 200


def test_undecodable_body_is_a_clear_400(http: httpx.Client, task: tuple[str, str]) -> None:
    """Was: 400 {"error": "HTTPError", "message": "There was an error parsing the body"}."""
    session_id, _ = task
    answer = http.post(
        f"/globus/sessions/{session_id}/mkdir",
        content=b"\xff\xfe{",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "BadRequest"
    assert "UTF-8" in answer.json()["message"]
    assert "JSON" in answer.json()["message"]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("wait", {"timeout": False}, "body.timeout"),
        ("wait", {"timeout": "5"}, "body.timeout"),
        ("deletes", {"collection": "local", "paths": ["/x"], "recursive": 1}, "body.recursive"),
        ("deletes", {"collection": "local", "paths": ["/x"], "label": 5}, "body.label"),
        ("mkdir", {"collection": 7, "path": "/x"}, "body.collection"),
    ],
)
def test_wrong_json_types_are_refused_not_converted(
    http: httpx.Client, task: tuple[str, str], route: str, body: dict[str, Any], field: str
) -> None:
    """Was: {"timeout": false} waited 0 s, {"recursive": 1} deleted recursively."""
    session_id, task_id = task
    path = f"/globus/sessions/{session_id}/tasks/{task_id}/wait" if route == "wait" else route
    answer = http.post(
        path if route == "wait" else f"/globus/sessions/{session_id}/{route}", json=body
    )
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["message"]


def test_framework_refusals_carry_our_codes(http: httpx.Client) -> None:
    missing = http.get("/globus/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    assert "/globus/nowhere" in missing.json()["message"]
    wrong = http.put("/endpoints")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "MethodNotAllowed"
    assert "PUT /endpoints" in wrong.json()["message"]
    assert "GET" in wrong.headers["allow"]
