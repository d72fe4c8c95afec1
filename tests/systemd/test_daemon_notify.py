"""The real daemon process talks sd_notify to a real NOTIFY_SOCKET, in the right order.

Each test runs twice: plainly, and under the seccomp half of the system unit's sandbox
(SystemCallFilter=, MemoryDenyWriteExecute=, RestrictAddressFamilies=, NoNewPrivileges=,
see unit_sandbox.py), which shows CPython and the daemon's whole stack run under them.
"""

from __future__ import annotations

import ctypes.util
import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO

import httpx
import pytest
from sdnotify_listener import Message, NotifyListener

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT

HERE = Path(__file__).resolve().parent
SYSTEM_UNIT = HERE.parents[1] / "systemd" / "orbit-globus-endpoint.service"
STATUS = re.compile(r"^(\d+) sessions, (\d+) active tasks, ledger head (\d+)$")
WATCHDOG_USEC = 2_000_000  # the daemon should ping every second

can_sandbox = shutil.which("systemd-analyze") is not None and bool(
    ctypes.util.find_library("seccomp")
)


@pytest.fixture(
    params=[
        "plain",
        pytest.param(
            "sandboxed",
            marks=pytest.mark.skipif(
                not can_sandbox, reason="needs systemd-analyze and libseccomp"
            ),
        ),
    ]
)
def sandbox(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Daemon:
    """The daemon started with Popen, so the test sees READY before anything else does."""

    def __init__(self, *, state_dir: Path, env: Mapping[str, str], sandbox: str):
        command = DaemonProcess(state_dir=state_dir, poll_interval=0.2).command()
        if sandbox == "sandboxed":
            wrapper = [sys.executable, str(HERE / "unit_sandbox.py"), str(SYSTEM_UNIT), "--"]
            command = [*wrapper, *command]
        self.state_dir = state_dir
        state_dir.mkdir(parents=True)
        self.log: IO[bytes] = open(state_dir.parent / "daemon.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command, env=dict(env), stdout=self.log, stderr=subprocess.STDOUT
        )

    def endpoint(self) -> dict[str, object]:
        data = json.loads((self.state_dir / "endpoint.json").read_text())
        assert isinstance(data, dict)
        return data

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + (self.state_dir / "token").read_text().strip()}

    def log_text(self) -> str:
        return (self.state_dir.parent / "daemon.log").read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def start_daemon(
    tmp_path: Path, listener: NotifyListener, sandbox: str
) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(**env: str) -> Daemon:
        daemon = Daemon(
            state_dir=tmp_path / "state",
            env=listener.environ(**{"WATCHDOG_USEC": str(WATCHDOG_USEC), **env}),
            sandbox=sandbox,
        )
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def _kinds(messages: list[Message]) -> list[str]:
    """One word per datagram: READY, STATUS, WATCHDOG or STOPPING (the first key wins)."""
    return [m.keys[0] for m in messages]


def test_ready_watchdog_stopping_in_order(
    listener: NotifyListener, start_daemon: Callable[..., Daemon], sandbox: str
) -> None:
    daemon: Daemon = start_daemon()
    ready = listener.wait_for("READY", timeout=60 * UNIT)
    if sandbox == "sandboxed":
        # The filters are really in force on the daemon itself (mode 2 = filter).
        proc_status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        assert re.search(r"^NoNewPrivs:\s+1$", proc_status, re.MULTILINE)
        assert re.search(r"^Seccomp:\s+2$", proc_status, re.MULTILINE)
        assert re.search(r"^Seccomp_filters:\s+2$", proc_status, re.MULTILINE)
    # READY comes first, from the main process (NotifyAccess=main), and carries STATUS.
    assert listener.received[0] is ready, daemon.log_text()
    assert ready.pid == daemon.proc.pid
    status = STATUS.match(ready.fields.get("STATUS", ""))
    assert status is not None, ready.fields
    assert status.group(1) == "0"
    # READY means listening: endpoint.json is there for this pid and the API answers now.
    info = daemon.endpoint()
    assert info["pid"] == daemon.proc.pid
    answer = httpx.get(f"{info['url']}/endpoints", headers=daemon.headers(), timeout=10 * UNIT)
    assert answer.status_code == 200, answer.text

    # Pings from the event loop, close enough together that systemd would not fire.
    pings = [listener.wait_for("WATCHDOG", timeout=WATCHDOG_USEC / 1e6) for _ in range(3)]
    gaps = [b.time - a.time for a, b in itertools.pairwise(pings)]
    assert all(0.3 < gap < WATCHDOG_USEC / 1e6 for gap in gaps), gaps

    daemon.proc.send_signal(signal.SIGTERM)
    stopping = listener.wait_for("STOPPING", timeout=30 * UNIT)
    assert daemon.proc.wait(30) == 0, daemon.log_text()
    listener.drain(timeout=0.2 * UNIT)

    kinds = _kinds(listener.received)
    assert kinds.count("READY") == 1
    assert kinds.index("READY") < kinds.index("WATCHDOG") < kinds.index("STOPPING")
    assert kinds.count("STOPPING") == 1
    assert set(kinds) <= {"READY", "STATUS", "WATCHDOG", "STOPPING"}, kinds
    assert {m.pid for m in listener.received} == {daemon.proc.pid}
    assert stopping.pid == daemon.proc.pid
    assert not (daemon.state_dir / "endpoint.json").exists()


def test_daemon_without_notify_socket_sends_nothing(
    listener: NotifyListener, start_daemon: Callable[..., Daemon]
) -> None:
    # WATCHDOG_USEC without NOTIFY_SOCKET (e.g. run by hand from a service's shell).
    daemon: Daemon = start_daemon(NOTIFY_SOCKET="", WATCHDOG_USEC="200000")
    endpoint_file = daemon.state_dir / "endpoint.json"
    for _ in range(1200):  # up to a minute on a loaded machine
        if endpoint_file.exists() or daemon.proc.poll() is not None:
            break
        listener.recv(timeout=0.05 * UNIT)
    assert endpoint_file.exists(), daemon.log_text()
    # Two watchdog periods with nothing sent.
    assert listener.recv(timeout=0.4 * UNIT) is None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0, daemon.log_text()
    assert listener.received == []


def test_status_follows_sessions(
    listener: NotifyListener,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
) -> None:
    with Simulator(root=tmp_path / "sim", port=0) as sim:
        user = sim.add_user("alice")
        daemon: Daemon = start_daemon(**sim.environ())
        listener.wait_for("READY", timeout=60 * UNIT)
        url = daemon.endpoint()["url"]
        answer = httpx.post(
            f"{url}/globus/sessions",
            json={"access_token": user.access_token},
            headers=daemon.headers(),
            timeout=30 * UNIT,
        )
        assert answer.status_code == 200, answer.text
        # The daemon refreshes STATUS every few seconds; only changes are sent.
        message = listener.wait_for("STATUS", timeout=20 * UNIT)
        while not message.fields["STATUS"].startswith("1 sessions"):
            message = listener.wait_for("STATUS", timeout=20 * UNIT)
        status = STATUS.match(message.fields["STATUS"])
        assert status is not None
        assert int(status.group(3)) >= 1  # session_opened is in the ledger
        daemon.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", timeout=30 * UNIT)
        assert daemon.proc.wait(30) == 0, daemon.log_text()
    statuses = [m.fields["STATUS"] for m in listener.received if "STATUS" in m.fields]
    # Consecutive duplicates are never sent.
    assert all(a != b for a, b in itertools.pairwise(statuses)), statuses
