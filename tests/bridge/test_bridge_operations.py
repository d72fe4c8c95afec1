"""Operating the bridge: its systemd unit, sd_notify readiness and watchdog, TLS credentials."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bridge_helpers import UNIT

from radical.orbit.bridge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BRIDGE_UNIT = ROOT / "systemd" / "orbit-globus-bridge.service"


def _unit_values(key: str) -> list[str]:
    return [
        line.partition("=")[2].strip()
        for line in BRIDGE_UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_unit_contract_and_no_secret_in_its_environment(tmp_path: Path) -> None:
    assert _unit_values("Type") == ["notify"]
    assert _unit_values("NotifyAccess") == ["main"]
    assert _unit_values("WatchdogSec") == ["30"]
    assert _unit_values("ExecStart")[0].startswith("/opt/orbit-globus/bin/orbit-globus-bridge")
    environment = " ".join(_unit_values("Environment"))
    assert "TOKEN" not in environment and "KEY" not in environment
    env = dict(v.split("=", 1) for v in environment.split())
    env["STATE_DIRECTORY"] = str(tmp_path)
    config = load_config(env=env)
    assert (config.host, config.port, config.state_dir) == ("127.0.0.1", 8422, tmp_path)


def test_tls_certificate_from_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "tls-cert").write_text("cert")
    (tmp_path / "tls-key").write_text("key")
    config = load_config(
        env={
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "RADICAL_ORBIT_BRIDGE_HOST": "0.0.0.0",
            "STATE_DIRECTORY": str(tmp_path),
        }
    )
    assert config.tls and config.tls_cert == tmp_path / "tls-cert"


def test_ready_status_watchdog_and_stopping_reach_systemd(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.2)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(path),
        "WATCHDOG_USEC": "400000",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "radical.orbit.bridge", "--state-dir", str(tmp_path / "s")]
    proc = subprocess.Popen(
        [*cmd, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    seen: list[str] = []

    def read_until(key: str, within: float) -> None:
        deadline = time.monotonic() + within * UNIT
        while time.monotonic() < deadline:
            try:
                seen.extend(listener.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
            if any(line.startswith(key) for line in seen):
                return
        raise AssertionError(f"no {key} in {seen}")

    try:
        read_until("READY=1", 20)
        assert (tmp_path / "s" / "bridge.json").exists()  # READY comes after listening
        status = next(line for line in seen if line.startswith("STATUS="))
        assert "endpoints online" in status
        seen.clear()
        read_until("WATCHDOG=1", 5)
        proc.send_signal(signal.SIGTERM)
        read_until("STOPPING=1", 10)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()


@pytest.mark.parametrize("args", [["--port", "70000"], ["--host", "192.0.2.1"]])
def test_configuration_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    cmd = [sys.executable, "-m", "radical.orbit.bridge", "--state-dir", str(tmp_path), "serve"]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("orbit-globus-bridge: ")
