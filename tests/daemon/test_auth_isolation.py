"""Daemon tokens: files and modes, 401 without a valid token, sessions private to their token."""

from __future__ import annotations

import asyncio
import json
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from daemon_helpers import client, history, new_user, register, transfer_body, ws_connect

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT


def test_first_start_creates_private_token_files(daemon: DaemonProcess) -> None:
    token_file = daemon.state_dir / "token"
    hashes_file = daemon.state_dir / "tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(hashes_file.stat().st_mode) == 0o600
    hashes = json.loads(hashes_file.read_text())
    assert list(hashes) == ["default"]
    assert daemon.token not in hashes_file.read_text()  # only the hash is stored
    assert "client token written to" in daemon.log_path.read_text()
    info = json.loads(daemon.endpoint_file.read_text())
    assert info["url"] == daemon.url
    assert info["pid"] == daemon.pid
    assert daemon.url.startswith("http://127.0.0.1:")  # loopback by default


def test_default_token_from_a_systemd_credential(tmp_path: Path) -> None:
    """LoadCredential=client-token:...: the provisioned token is the default one, and no
    token is written to the state folder."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    provisioned = secrets.token_hex(32)
    (credentials / "client-token").write_text(provisioned + "\n")
    process = DaemonProcess(
        state_dir=tmp_path / "state", env={"CREDENTIALS_DIRECTORY": str(credentials)}
    ).start()
    try:
        with httpx.Client(base_url=process.url, timeout=10 * UNIT) as http:
            ok = http.get("/endpoints", headers={"Authorization": f"Bearer {provisioned}"})
            refused = http.get("/endpoints", headers={"Authorization": "Bearer " + "x" * 64})
            bob = process.add_token("bob")
            as_bob = http.get("/endpoints", headers={"Authorization": f"Bearer {bob}"})
    finally:
        process.stop()
    assert ok.status_code == 200
    assert refused.status_code == 401
    assert as_bob.status_code == 200
    assert not (process.state_dir / "token").exists()
    assert list(json.loads((process.state_dir / "tokens.json").read_text())) == ["bob"]
    for path in process.state_dir.iterdir():
        if path.is_file():
            assert provisioned not in path.read_text(errors="replace"), path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/endpoints"),
        ("POST", "/globus/sessions"),
        ("GET", "/globus/history"),
        ("GET", "/globus/sessions/x/tasks"),
        ("POST", "/globus/sessions/x/transfers"),
        ("DELETE", "/globus/sessions/x"),
    ],
)
def test_http_without_valid_token_is_401(
    shared_daemon: DaemonProcess, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        answer = httpx.request(method, shared_daemon.url + path, headers=headers, json={})
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["error"] == "Unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_websocket_without_valid_token_is_refused(shared_daemon: DaemonProcess) -> None:
    for token in ("wrong", ""):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                shared_daemon.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
            )
        assert refused.value.response.status_code == 401


def test_token_add_and_another_token_cannot_see_a_session(
    shared_daemon: DaemonProcess, shared_sim: Simulator
) -> None:
    bob_token = shared_daemon.add_token("bob")
    assert "bob" in json.loads((shared_daemon.state_dir / "tokens.json").read_text())
    creds = new_user(shared_sim)
    with client(shared_daemon) as alice, client(shared_daemon, bob_token) as bob:
        session_id = register(alice, creds)
        task_id = alice.post(
            f"/globus/sessions/{session_id}/transfers", json=transfer_body()
        ).json()["task_id"]
        assert bob.get("/endpoints").status_code == 200
        for method, path, body in [
            ("GET", f"/globus/sessions/{session_id}/tasks", None),
            ("GET", f"/globus/sessions/{session_id}/tasks/{task_id}", None),
            ("POST", f"/globus/sessions/{session_id}/tasks/{task_id}/wait", {"timeout": 0}),
            ("POST", f"/globus/sessions/{session_id}/tasks/{task_id}/cancel", None),
            ("POST", f"/globus/sessions/{session_id}/transfers", transfer_body()),
            ("GET", f"/globus/sessions/{session_id}/ls?collection=x", None),
            ("DELETE", f"/globus/sessions/{session_id}", None),
        ]:
            answer = bob.request(method, path, json=body)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"] == "NotFound"
        # Re-registering someone else's session_id is refused the same way.
        stolen = bob.post(
            "/globus/sessions", json={"access_token": creds.access_token, "session_id": session_id}
        )
        assert stolen.status_code == 404
        assert history(bob) == []
        assert bob.get("/globus/history", params={"view": "tasks"}).json() == {"tasks": []}
        assert bob.get("/globus/history", params={"task_id": task_id}).json()["events"] == []
        assert history(alice, task_id=task_id)
        assert alice.get(f"/globus/sessions/{session_id}/tasks/{task_id}").status_code == 200


async def test_another_token_gets_no_events_over_websocket(
    shared_daemon: DaemonProcess, shared_sim: Simulator
) -> None:
    carol_token = shared_daemon.add_token("carol")
    creds = new_user(shared_sim)
    with client(shared_daemon) as alice:
        session_id = register(alice, creds)
    ws = await ws_connect(shared_daemon, carol_token, session_id=session_id)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404
    carol_all = await ws_connect(shared_daemon, carol_token, since=0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            while True:
                message = json.loads(await carol_all.recv())
                if message["type"] == "event":
                    break
    await carol_all.close()


def test_token_cli_refuses_bad_and_duplicate_names(tmp_path: Path) -> None:
    def run(*args: str, options_first: bool = False) -> subprocess.CompletedProcess[str]:
        state_dir = ("--state-dir", str(tmp_path))
        argv = [*state_dir, "token", *args] if options_first else ["token", *args, *state_dir]
        return subprocess.run(
            [sys.executable, "-m", "radical.orbit.daemon", *argv],
            capture_output=True,
            text=True,
            timeout=30 * UNIT,
        )

    first = run("add", "carol", "--quiet")
    assert first.returncode == 0
    assert len(first.stdout.strip()) >= 40
    again = run("add", "carol")
    assert again.returncode == 2
    assert "exists already" in again.stderr
    bad = run("add", "no spaces allowed")
    assert bad.returncode == 2
    assert "invalid" in bad.stderr
    names = run("list")
    assert names.stdout.split() == ["carol", "default"]
    # Options may also come before the subcommand.
    before = run("list", options_first=True)
    assert before.stdout.split() == ["carol", "default"]
