"""``orbit-globus-sim`` as a subprocess, driven through globus-sdk and the /_sim/ routes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

from radical.orbit.simulator import MAPPED_COLLECTION_ID as MAPPED
from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import TUTORIAL_COLLECTION_2 as C2
from timing import UNIT


def _call(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10 * UNIT) as resp:  # noqa: S310 - local http
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"] == "application/json"
        return exc.code, json.loads(exc.read())


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[dict[str, Any]]:
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "collections": [
                    {
                        "id": C1,
                        "display_name": "Source",
                        "root": "src",
                        "files": {"home/share/godata/file1.txt": "one\n"},
                    },
                    {"id": C2, "display_name": "Destination", "root": "dst"},
                    {"id": MAPPED, "display_name": "Mapped", "root": "mapped", "mapped": True},
                ]
            }
        )
    )
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "radical.orbit.simulator",
            "--port",
            "0",
            "--root",
            str(tmp_path / "root"),
            "--world",
            str(world),
            "--bytes-per-second",
            "1e9",
            "--rate-limit",
            "0",
            "--user",
            "zoe",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        info = json.loads(line)
        info["process"] = p
        yield info
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10 * UNIT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_cli_prints_url_and_credentials_and_serves(
    proc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = proc["url"]
    assert url.startswith("http://127.0.0.1:")
    assert proc["environ"]["GLOBUS_SDK_SERVICE_URL_TRANSFER"] == url + "/"
    for key, value in proc["environ"].items():
        monkeypatch.setenv(key, value)
    user = proc["user"]
    assert user["username"] == "zoe"
    auth = globus_sdk.NativeAppAuthClient(user["client_id"])
    tc = globus_sdk.TransferClient(
        authorizer=globus_sdk.RefreshTokenAuthorizer(user["refresh_token"], auth)
    )
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    td.add_item("/home/share/godata/file1.txt", "/~/one.txt")
    task_id = tc.submit_transfer(td)["task_id"]
    assert tc.task_wait(task_id, timeout=10 * UNIT, polling_interval=1)
    assert (tmp_path / "root" / "dst" / "home" / "zoe" / "one.txt").read_text() == "one\n"
    assert tc.get_endpoint(C2)["display_name"] == "Destination"


def test_control_routes(proc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    url = proc["url"]
    for key, value in proc["environ"].items():
        monkeypatch.setenv(key, value)
    status, health = _call(url + "/_sim/health")
    assert status == 200
    assert health["users"] == ["zoe"]
    status, creds = _call(url + "/_sim/users", "POST", {"name": "yan", "consents": []})
    assert status == 200
    assert _call(url + "/_sim/users", "POST", {"name": "yan"})[0] == 409
    tc = globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(creds["access_token"])
    )
    # consent through the control route
    with pytest.raises(globus_sdk.TransferAPIError):
        tc.operation_ls(MAPPED)
    assert _call(url + "/_sim/users/yan/consents", "POST", {"collection_id": MAPPED})[0] == 200
    assert tc.operation_ls(MAPPED)["path"] == "/home/yan/"
    assert _call(url + f"/_sim/users/yan/consents/{MAPPED}", "DELETE")[0] == 200
    with pytest.raises(globus_sdk.TransferAPIError):
        tc.operation_ls(MAPPED)
    # faults
    assert (
        _call(url + "/_sim/faults", "POST", {"route": "get_endpoint", "status": 400, "count": 1})[0]
        == 200
    )
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint(C1)
    assert info.value.http_status == 400
    assert tc.get_endpoint(C1)["id"] == C1
    status, err = _call(url + "/_sim/faults", "POST", {"route": "nope", "status": 500})
    assert status == 400
    assert "unknown route" in err["message"]
    assert (
        _call(url + "/_sim/faults", "POST", {"route": "*", "status": 400, "count": None})[0] == 200
    )
    assert _call(url + "/_sim/faults", "DELETE")[0] == 200
    assert tc.get_endpoint(C1)["id"] == C1
    # latency
    assert _call(url + "/_sim/latency", "PUT", {"seconds": 0.01})[1] == {"latency": 0.01}
    assert _call(url + "/_sim/latency", "PUT", {"seconds": -1})[0] == 400
    # counts
    status, counts = _call(url + "/_sim/counts")
    assert counts["counts"]["get_endpoint"] == 3
    _call(url + "/_sim/counts", "DELETE")
    assert _call(url + "/_sim/counts")[1]["counts"] == {}
    # tasks: pause, unpause, credentials, fail, finish, finish_all
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=C2)
    td.add_item("/home/share/godata/file1.txt", "/~/x.txt")
    task_id = tc.submit_transfer(td)["task_id"]
    status, res = _call(url + f"/_sim/tasks/{task_id}/pause", "POST", {"message": "maintenance"})
    assert status == 200
    if res["changed"]:  # it may have finished already at 1 GB/s
        assert res["task"]["status"] == "ACTIVE"
        assert res["task"]["is_paused"] is True
        assert tc.task_pause_info(task_id)["pause_rules"][0]["message"] == "maintenance"
        # The credential expires and is renewed while the pause holds the task, which at
        # 1 GB/s would otherwise finish before the next control arrives.
        status, res = _call(url + f"/_sim/tasks/{task_id}/expire_credential", "POST", {})
        assert res["task"]["status"] == "INACTIVE"
        assert res["task"]["nice_status"] == "CREDENTIAL_EXPIRED"
        status, res = _call(url + f"/_sim/tasks/{task_id}/renew_credential", "POST")
        assert res["changed"] is True
        assert res["task"]["status"] == "ACTIVE"
        assert _call(url + f"/_sim/tasks/{task_id}/unpause", "POST")[1]["changed"] is True
    assert _call(url + "/_sim/finish_all", "POST")[0] == 200
    assert _call(url + f"/_sim/tasks/{task_id}")[1]["status"] == "SUCCEEDED"
    assert _call(url + f"/_sim/tasks/{task_id}/fail", "POST")[1]["changed"] is False
    assert len(_call(url + "/_sim/tasks")[1]["tasks"]) == 1
    assert _call(url + "/_sim/tasks/nope/finish", "POST")[0] == 404
    # injected retryable errors
    status, rule = _call(
        url + "/_sim/errors", "POST", {"code": "ENDPOINT_ERROR", "path": "/~/e", "heal_count": 2}
    )
    assert status == 200
    assert rule["code"] == "ENDPOINT_ERROR"
    assert _call(url + "/_sim/errors")[1]["errors"][0]["rule_id"] == rule["rule_id"]
    assert _call(url + "/_sim/errors", "POST", {"path": "/~/e"})[0] == 400
    assert _call(url + "/_sim/errors", "POST", {"code": "X", "task_id": "nope"})[0] == 404
    assert _call(url + f"/_sim/errors/{rule['rule_id']}", "DELETE")[1] == {"removed": 1}
    assert _call(url + "/_sim/errors", "DELETE")[1] == {"removed": 0}
    # the clock
    before = _call(url + "/_sim/clock")[1]
    status, after = _call(url + "/_sim/clock/advance", "POST", {"seconds": 3600})
    assert status == 200
    assert after["now"] >= before["now"] + 3600
    assert after["offset"] == 3600
    assert _call(url + "/_sim/clock/advance", "POST", {"seconds": -1})[0] == 400
    assert _call(url + "/_sim/clock", "PUT", {"scale": 2})[1]["scale"] == 2
    assert _call(url + f"/_sim/tasks/{task_id}/explode", "POST")[0] == 404
    # expire a token
    assert _call(url + "/_sim/tokens/expire", "POST", {"token": creds["access_token"]})[0] == 200
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint(C1)
    assert info.value.http_status == 401
    assert _call(url + "/_sim/nothing")[0] == 404


def test_cli_rejects_a_bad_world(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"collections": [{"id": "not-a-uuid", "display_name": "x", "root": "x"}]}')
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "radical.orbit.simulator",
            "--root",
            str(tmp_path),
            "--world",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert res.returncode == 2
    assert "not a UUID" in res.stderr
    assert res.stdout == ""
