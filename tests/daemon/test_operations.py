"""Operators' routes: /health, /ready, /metrics (Prometheus text), and the sessions route."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import httpx
from daemon_helpers import (
    Session,
    client,
    new_user,
    next_events,
    register,
    start_daemon,
    submit,
    transfer_body,
    wait_status,
    ws_connect,
)
from prometheus_client.parser import text_string_to_metric_families

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.daemon.runtime.metrics import REGISTRY, CommitMetrics
from radical.orbit.ledger.events import StoredEvent
from radical.orbit.simulator import Simulator
from timing import UNIT

NAMED = {
    "orbit_tasks",
    "orbit_queued_submits",
    "orbit_globus_requests",
    "orbit_globus_errors",
    "orbit_sweep_duration_seconds",
    "orbit_notification_lag_seconds",
    "orbit_ledger_append_seconds",
    "orbit_ledger_batch_events",
    "orbit_websocket_clients",
    "orbit_sessions_without_credential",
    "orbit_ledger_append_failures",
}


def scrape(
    daemon: DaemonProcess, **headers: str
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    answer = httpx.get(daemon.url + "/metrics", headers=headers, timeout=10 * UNIT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_health_and_ready_need_no_token_say_nothing_and_stay_out_of_the_api(
    shared_daemon: DaemonProcess,
) -> None:
    for route in ("/health", "/ready"):
        answer = httpx.get(shared_daemon.url + route, timeout=10 * UNIT)
        assert answer.status_code == 204 and answer.content == b""
    with client(shared_daemon) as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert not {"/health", "/ready", "/metrics"} & set(paths)


def test_ready_turns_503_when_the_ledger_refuses_writes(shared_daemon: DaemonProcess) -> None:
    daemon = shared_daemon
    ledger = daemon.state_dir / "ledger.db"
    # Another connection holding the write lock: the ledger cannot take a write now.
    blocker = sqlite3.connect(ledger, isolation_level=None, timeout=5)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        answer = httpx.get(daemon.url + "/ready", timeout=20 * UNIT)
        assert answer.status_code == 503 and answer.content == b""
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert httpx.get(daemon.url + "/ready", timeout=10 * UNIT).status_code == 204


async def test_metrics_show_every_named_metric_without_user_data(
    daemon: DaemonProcess, sim: Simulator
) -> None:
    user = new_user(sim)
    label = f"secret-label-{uuid.uuid4().hex[:6]}"
    with client(daemon) as http:
        session_id = register(http, user)
        # A live WebSocket client sees the task's events: notification lag is measured.
        ws = await ws_connect(daemon, session_id=session_id)
        answer = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body(label))
        assert answer.status_code == 200, answer.text
        task_id = answer.json()["task_id"]
        await next_events(ws, lambda m: m["data"].get("status") == "SUCCEEDED", seconds=30 * UNIT)
        missing = http.get(
            f"/globus/sessions/{session_id}/ls", params={"collection": str(uuid.uuid4())}
        )
        assert missing.status_code >= 400
        metrics = await asyncio.to_thread(scrape, daemon)
        await ws.close()
    names = {
        name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")
        for name in metrics
    }
    assert names >= NAMED, NAMED - names
    assert metrics["orbit_tasks"][(("status", "SUCCEEDED"),)] == 1
    assert metrics["orbit_queued_submits"][()] == 0
    assert metrics["orbit_websocket_clients"][()] == 1
    assert metrics["orbit_sessions_without_credential"][()] == 0
    requests = metrics["orbit_globus_requests_total"]
    assert requests[(("code", "202"), ("route", "submit_transfer"))] == 1
    assert any(dict(k)["route"] == "task_list" for k in requests)
    errors = metrics["orbit_globus_errors_total"]
    assert any(
        dict(k)["route"] == "operation_ls" and dict(k)["code"].startswith("4") for k in errors
    )
    assert metrics["orbit_notification_lag_seconds_count"][()] >= 1
    assert metrics["orbit_ledger_append_seconds_count"][()] >= 3
    assert metrics["orbit_ledger_append_failures_total"][()] == 0
    assert sum(metrics["orbit_sweep_duration_seconds_count"].values()) >= 1
    text = (await asyncio.to_thread(httpx.get, daemon.url + "/metrics", timeout=10 * UNIT)).text
    for private in (task_id, session_id, label, user.access_token, daemon.token):
        assert private not in text


def test_metrics_may_require_the_daemon_token(tmp_path: Path, sim: Simulator) -> None:
    daemon = start_daemon(tmp_path, sim, env={"RADICAL_ORBIT_METRICS_AUTH": "true"})
    try:
        assert httpx.get(daemon.url + "/metrics", timeout=10 * UNIT).status_code == 401
        assert "orbit_tasks" in scrape(daemon, **daemon.headers)
        assert httpx.get(daemon.url + "/health", timeout=10 * UNIT).status_code == 204
    finally:
        daemon.stop()


def test_sessions_list_their_credential_state_and_task_counts(
    daemon: DaemonProcess, sim: Simulator, session: Session
) -> None:
    http, session_id = session
    other = register(http, new_user(sim))
    task_id = submit(http, session_id, "x")
    wait_status(http, session_id, [task_id], "SUCCEEDED", timeout=30 * UNIT)
    listed = {s["session_id"]: s for s in http.get("/globus/sessions").json()["sessions"]}
    assert listed.keys() == {session_id, other}
    assert listed[session_id]["credential"] == "ok" and listed[session_id]["auth"] == "access_token"
    assert listed[session_id]["tasks"] == {
        "ACTIVE": 0,
        "INACTIVE": 0,
        "SUCCEEDED": 1,
        "FAILED": 0,
    }
    assert listed[other]["tasks"]["SUCCEEDED"] == 0
    # Another daemon token sees none of them.
    stranger = daemon.add_token("stranger")
    with client(daemon, stranger) as http:
        assert http.get("/globus/sessions").json() == {"sessions": []}
        assert http.get(f"/globus/sessions/{session_id}").status_code == 404


def test_commit_metrics_count_tasks_starting_to_need_attention() -> None:
    def count(reason: str) -> float:
        value = REGISTRY.get_sample_value("orbit_task_attention_total", {"reason": reason})
        return value or 0.0

    before = count("erroring"), count("paused")
    CommitMetrics().offer(
        [
            StoredEvent(7, 0.0, "task_needs_attention", "o", "s", "t", {"needs_attention": n})
            for n in ("erroring", "erroring", "paused")
        ]
        + [StoredEvent(8, 0.0, "task_recovered", "o", "s", "t", {"after": "erroring"})]
    )
    assert (count("erroring"), count("paused")) == (before[0] + 2, before[1] + 1)
