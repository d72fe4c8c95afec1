"""Restarts: the daemon keeps its address, clients follow it when it must move, and waits
(Python and CLI) finish with the task's real final status across a restart."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from client_helpers import DAEMON_ENV, DST, SRC

from radical.orbit import GlobusClient
from radical.orbit.client.errors import AuthenticationError
from radical.orbit.daemon.runtime.launcher import DaemonProcess, LaunchError
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

BIG = [{"source": "/home/share/big/", "destination": "/~/big/", "recursive": True}]


def remembering_daemon(sim: Simulator, state: Path, **env: str) -> DaemonProcess:
    """A daemon left to choose its own port (no --port), as a user's daemon is."""
    return DaemonProcess(
        state_dir=state, env={**sim.environ(), **DAEMON_ENV, **env}, poll_interval=0.2, port=None
    )


@pytest.fixture
def own_daemon(sim: Simulator, tmp_path: Path) -> Iterator[DaemonProcess]:
    process = remembering_daemon(sim, tmp_path / "state").start()
    try:
        yield process
    finally:
        process.stop()


def occupy(url: str) -> socket.socket:
    """Listen on the daemon's port from another socket, as another user's process would."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    blocker = socket.socket()
    # Connections of the stopped daemon may linger in TIME_WAIT on that port; a listener
    # (this one, or the daemon's) still keeps every other socket off it.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((host, int(port)))
    blocker.listen()
    return blocker


def test_a_taken_port_stops_the_start_with_a_clear_message(sim: Simulator, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with socket.socket() as probe:  # a port of our own to remember, then to block
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (state / "port").write_text(f"{port}\n")
    with occupy(f"http://127.0.0.1:{port}"), pytest.raises(LaunchError) as refused:
        remembering_daemon(sim, state).start()
    message = " ".join(refused.value.args[0].split())
    assert f"cannot listen on 127.0.0.1:{port}" in message
    assert "another process uses that port" in message
    assert "remembered in" in message and "port_fallback" in message


@pytest.mark.parametrize("move", [False, True], ids=["same-port", "moved"])
def test_python_task_wait_finishes_across_a_daemon_restart(
    sim: Simulator,
    tmp_path: Path,
    user: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    move: bool,
) -> None:
    state = tmp_path / "state"
    daemon = remembering_daemon(sim, state, RADICAL_ORBIT_PORT_FALLBACK="1").start()
    # Found through the state folder, as a user's script finds its daemon: a daemon that
    # moved announces its new address in endpoint.json.
    monkeypatch.setenv("RADICAL_ORBIT_STATE_DIR", str(state))
    for name in ("RADICAL_ORBIT_URL", "RADICAL_ORBIT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    client = GlobusClient()
    client.register_session(access_token=user.access_token, local_collection=DST)
    task_id = client.submit_transfer(SRC, "local", BIG, label="restart")["task_id"]
    result: dict[str, Any] = {}

    def wait() -> None:
        try:
            result["row"] = client.task_wait(task_id, timeout=60 * UNIT)
        except Exception as exc:  # reported below
            result["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    first = daemon.url
    try:
        daemon.kill()
        if move:
            with occupy(daemon.url):
                daemon.start()
            assert daemon.url != first
            assert "port taken, listening on another" in daemon.log_tail()
        else:
            daemon.start()
            # Back on the port it bound first, remembered in its state folder.
            assert daemon.url == first
            assert (state / "port").read_text().strip() == first.rsplit(":", 1)[1]
        waiter.join(90 * UNIT)
        assert not waiter.is_alive()
        assert "error" not in result, result.get("error")
        assert result["row"]["status"] == "SUCCEEDED"
        # The client now talks to where the daemon is (moved or not).
        assert client._transport.address.url == daemon.url
    finally:
        client.close()
        daemon.stop()


def run_cli(daemon: DaemonProcess, env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    """``orbit-globus ARGV`` as a process, with only the Globus variables given in ``env``."""
    exe = Path(sys.executable).parent / "orbit-globus"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GLOBUS_", "RADICAL_"))}
    return subprocess.Popen(
        [str(exe), *argv],
        env={
            **base,
            **env,
            "RADICAL_ORBIT_URL": daemon.url,
            "RADICAL_ORBIT_TOKEN": daemon.token,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("credential", [True, False], ids=["re-registers", "says-so"])
def test_cli_task_wait_across_a_daemon_restart(
    own_daemon: DaemonProcess, user: Credentials, credential: bool
) -> None:
    client = GlobusClient(own_daemon.url, own_daemon.token)
    session_id = client.register_session(access_token=user.access_token, local_collection=DST)[
        "session_id"
    ]
    task_id = client.submit_transfer(SRC, "local", BIG, label="cli-restart")["task_id"]
    client.close()
    env = {"RADICAL_ORBIT_SESSION": session_id}
    env.update({"GLOBUS_ACCESS_TOKEN": user.access_token} if credential else {})
    waiting = run_cli(own_daemon, env, "-F", "json", "task", "wait", task_id, "--timeout", "60")
    own_daemon.kill()
    own_daemon.start()
    out, err = waiting.communicate(timeout=90 * UNIT)
    if credential:
        assert waiting.returncode == 0, err
        assert json.loads(out)["status"] == "SUCCEEDED"
    else:
        assert waiting.returncode == 6, err
        error = json.loads(err.strip().splitlines()[-1])
        assert error["error"] == "CredentialMissing"
        assert f"orbit-globus session register --session {session_id}" in error["message"]
        assert user.access_token not in err


def test_waiting_without_a_credential_says_so_at_once(
    own_daemon: DaemonProcess, user: Credentials
) -> None:
    client = GlobusClient(own_daemon.url, own_daemon.token)
    client.register_session(access_token=user.access_token, local_collection=DST)
    task_id = client.submit_transfer(SRC, "local", BIG, label="lost")["task_id"]
    own_daemon.kill()
    own_daemon.start()
    forgetful = GlobusClient(own_daemon.url, own_daemon.token, session_id=client.session_id)
    assert forgetful.list_sessions()[0]["credential"] == "missing"
    metrics = httpx.get(own_daemon.url + "/metrics", timeout=10 * UNIT).text
    assert "orbit_sessions_without_credential 1.0" in metrics
    for use_stream in (True, False):
        with pytest.raises(AuthenticationError) as lost:
            forgetful.task_wait(task_id, timeout=30 * UNIT, use_stream=use_stream)
        assert lost.value.code == "CredentialMissing"
    # The command line's other waiting command says so too (exit 6), with nothing to hand.
    watching = run_cli(own_daemon, {"RADICAL_ORBIT_SESSION": str(client.session_id)}, "watch")
    _, err = watching.communicate(timeout=60 * UNIT)
    assert watching.returncode == 6 and "orbit-globus session register" in err
    # The client that registered it hands its credential over and the wait ends well.
    assert client.task_wait(task_id, timeout=60 * UNIT)["status"] == "SUCCEEDED"
    assert forgetful.list_sessions()[0]["credential"] == "ok"
    client.close()
    forgetful.close()
