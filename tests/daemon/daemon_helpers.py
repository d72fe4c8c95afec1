"""Helpers shared by the daemon tests: real HTTP and WebSockets, and the rows and Globus task
documents the pure poller cores are fed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.ledger import events as ev
from radical.orbit.ledger.fold import TaskRow, apply_task
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from timing import UNIT

C1 = TUTORIAL_COLLECTION_1
C2 = TUTORIAL_COLLECTION_2
POLL = 0.2
GODATA = [{"source": "/home/share/godata/", "destination": "/~/out/", "recursive": True}]


def transfer_body(label: str = "t", **extra: Any) -> dict[str, Any]:
    return {"source": C1, "destination": C2, "items": GODATA, "label": label, **extra}


def task_row(task_id: str, status: str, nice: str | None, nbytes: int, files: int) -> TaskRow:
    """A ledger row as the fold makes it at a submit at time 0, then seen by a poll with these
    status and counts (``is_ok`` unknown: the documents fed to the cores carry none)."""
    submitted = ev.TaskSubmitted(
        owner="default", session_id="s1", submission_id="sub", task_id=task_id, label="l"
    )
    return apply_task(None, submitted, seq=1, time=0.0)._replace(
        status=status,
        nice_status=nice,
        bytes_transferred=nbytes,
        files_transferred=files,
        is_ok=None,
    )


def task_doc(
    task_id: str, status: str, nice: str | None, nbytes: int, files: int
) -> dict[str, Any]:
    """A Globus task document (task_list fields the poller reads); FAILED ones carry an error."""
    return {
        "task_id": task_id,
        "status": status,
        "nice_status": nice,
        "label": "l",
        "bytes_transferred": nbytes,
        "files_transferred": files,
        "fatal_error": {"code": "X", "description": "d"} if status == "FAILED" else None,
    }


def daemon_process(tmp_path: Path, simulator: Simulator, **opts: Any) -> DaemonProcess:
    """A daemon talking to ``simulator``, not started yet: ``with daemon_process(...) as d:``
    runs it for the block."""
    opts.setdefault("poll_interval", POLL)
    env = {**simulator.environ(), **opts.pop("env", {})}
    return DaemonProcess(state_dir=tmp_path / "state", env=env, **opts)


def start_daemon(tmp_path: Path, simulator: Simulator, **opts: Any) -> DaemonProcess:
    return daemon_process(tmp_path, simulator, **opts).start()


# A client of a daemon and a session open on it.
Session = tuple[httpx.Client, str]


def client(process: DaemonProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or process.token}"}
    return httpx.Client(base_url=process.url, headers=headers, timeout=30 * UNIT)


def register(http: httpx.Client, creds: Any, *, refreshable: bool = False, **extra: Any) -> str:
    """Open a session with the user's access token, or its refresh token and client id."""
    credential = (
        {"refresh_token": creds.refresh_token, "client_id": creds.client_id}
        if refreshable
        else {"access_token": creds.access_token}
    )
    answer = http.post("/globus/sessions", json={**credential, **extra})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["session_id"])


def history(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = http.get("/globus/history", params={"limit": 1000, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


def submit(http: httpx.Client, session_id: str, label: str = "t", **extra: Any) -> str:
    """Submit a transfer of the tutorial files; its Globus task id."""
    answer = http.post(
        f"/globus/sessions/{session_id}/transfers", json=transfer_body(label, **extra)
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["task_id"])


def task_status(http: httpx.Client, session_id: str, task_id: str) -> str:
    """The status the ledger holds for the task."""
    return str(http.get(f"/globus/sessions/{session_id}/tasks/{task_id}").json()["status"])


def wait_status(
    http: httpx.Client, session_id: str, task_ids: Iterable[str], status: str, **opts: Any
) -> None:
    """Wait until the ledger holds ``status`` for every one of the tasks."""
    ids = list(task_ids)
    wait_for(
        lambda: all(task_status(http, session_id, t) == status for t in ids),
        what=opts.pop("what", f"{status} for {ids}"),
        **opts,
    )


def events_of(http: httpx.Client, kind: str, **params: Any) -> list[dict[str, Any]]:
    """The ledger's events of one kind (the history filters of ``params`` applied)."""
    return [e for e in history(http, **params) if e["kind"] == kind]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0 * UNIT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


async def ws_connect(
    process: DaemonProcess, token: str | None = None, **query: Any
) -> ClientConnection:
    params = "&".join(f"{k}={v}" for k, v in query.items() if v is not None)
    url = process.ws_url + (f"?{params}" if params else "")
    return await websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {token or process.token}"},
        open_timeout=10,
        max_size=None,
    )


async def next_events(
    ws: ClientConnection, until: Callable[[dict[str, Any]], bool], *, seconds: float = 15.0
) -> list[dict[str, Any]]:
    """Collect event messages (heartbeats dropped) up to and including one matching ``until``."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] != "event":
                continue
            out.append(message)
            if until(message):
                return out


_USERS = iter(range(1_000_000))


def new_user(simulator: Simulator) -> Any:
    """A simulator user with a fresh name (shared simulators outlive one test)."""
    return simulator.add_user(f"user{next(_USERS)}")
