"""Poller under Globus faults: token expiry, 429/5xx storms, INACTIVE tasks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
from daemon_helpers import (
    Session,
    client,
    daemon_process,
    history,
    next_events,
    register,
    submit,
    task_status,
    transfer_body,
    wait_for,
    wait_status,
    ws_connect,
)

from radical.orbit.daemon.globus.credentials import Credential, Secret
from radical.orbit.daemon.globus.ops import build_clients
from radical.orbit.daemon.poller.loop import BATCH
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator


async def test_token_expiry_notifies_then_reregister_resumes(
    slow_daemon: DaemonProcess, slow_sim: Simulator
) -> None:
    sim = slow_sim
    creds = sim.add_user("alice")
    http = client(slow_daemon)
    session_id = register(http, creds)
    ws = await ws_connect(slow_daemon, session_id=session_id)
    try:
        task_id = submit(http, session_id, "exp")
        sim.expire_token(creds.access_token)
        expired = await next_events(ws, lambda m: m["kind"] == "credential_expired")
        assert expired[-1]["topic"] == "session"
        sim.finish_task(task_id)
        await asyncio.sleep(0.6)  # several intervals: nothing is polled meanwhile
        assert task_status(http, session_id, task_id) == "ACTIVE"  # kept, not failed
        refused = http.get(f"/globus/sessions/{session_id}/ls", params={"collection": "x"})
        assert refused.status_code == 401
        assert refused.json()["error"] == "CredentialExpired"

        again = http.post(
            "/globus/sessions",
            json={
                "session_id": session_id,
                "refresh_token": creds.refresh_token,
                "client_id": creds.client_id,
            },
        )
        assert again.status_code == 200, again.text
        done = await next_events(ws, lambda m: m["data"].get("status") == "SUCCEEDED")
    finally:
        await ws.close()
        http.close()
    assert done[-1]["task_id"] == task_id
    assert done[0]["kind"] == "session_opened"  # the re-registration, then the catch-up
    assert all(m["data"].get("status") != "FAILED" for m in expired + done)
    # The credentials reached no file: not the log, not the ledger, not its WAL.
    for path in slow_daemon.state_dir.iterdir():
        data = path.read_bytes()
        assert creds.access_token.encode() not in data, path
        assert creds.refresh_token.encode() not in data, path


def _statuses(events: list[dict[str, Any]]) -> set[Any]:
    return {e["data"].get("status") for e in events if e["topic"] == "transfer_status"}


@pytest.mark.parametrize("status", [429, 503, 500])
def test_storms_never_fail_a_task(tmp_path: Path, slow_sim: Simulator, status: int) -> None:
    """task_list answers ``status`` for 2 s while every task finishes: the poller backs off,
    records nothing false, and catches up once Globus answers again."""
    sim = slow_sim
    creds = sim.add_user("alice")
    env = {"RADICAL_ORBIT_MAX_BACKOFF": "1.6"}
    with daemon_process(tmp_path, sim, env=env) as process, client(process) as http:
        session_id = register(http, creds)
        ids = [submit(http, session_id, f"s{i}") for i in range(5)]
        sim.schedule_fault(route="task_list", status=status, count=None)
        wait_for(lambda: sim.request_counts()["task_list"] >= 1, what="a poll in the storm")
        sim.reset_counts()
        sim.finish_all()
        time.sleep(2.0)
        storm_polls = sim.request_counts()["task_list"]
        during = history(http, session_id=session_id)
        sim.clear_faults()
        wait_status(http, session_id, ids, "SUCCEEDED", what="all SUCCEEDED after the storm")
        events = history(http, session_id=session_id)
    # Backing off: far fewer polls than one per 0.2 s interval (10 in 2 s).
    assert storm_polls <= 5, storm_polls
    assert _statuses(during) == {"ACTIVE"}
    assert "FAILED" not in _statuses(events)
    assert all(sim.task(t)["status"] == "SUCCEEDED" for t in ids)


def test_cancel_hit_by_a_globus_outage_is_retried_in_the_background(
    slow_daemon: DaemonProcess, slow_sim: Simulator
) -> None:
    """Globus answers 503 to the cancel (and to the SDK's own retries): the client hears
    CancelPending, and the daemon sends the cancel again by itself, without a re-registration."""
    sim = slow_sim
    creds = sim.add_user("alice")
    with client(slow_daemon) as http:
        session_id = register(http, creds)
        task_id = submit(http, session_id)
        sim.pause_task(task_id)  # so it cannot finish while the SDK retries with backoff
        sim.schedule_fault(route="cancel_task", status=503, count=4)  # 1 try + 3 SDK retries
        answer = http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/cancel")
        results = wait_for(
            lambda: [e for e in history(http, task_id=task_id) if e["kind"] == "cancel_result"],
            what="cancel_result from the background retry",
        )
        wait_status(http, session_id, [task_id], "FAILED", what="the task cancelled")
        kinds = [e["kind"] for e in history(http, task_id=task_id)]
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "CancelPending"
    assert answer.json()["task_id"] == task_id
    assert results[0]["data"]["code"] == "Canceled"
    assert kinds.count("cancel_requested") == 1
    assert kinds.count("cancel_result") == 1
    assert sim.task(task_id)["fatal_error"]["code"] == "CANCELED"
    assert sim.request_counts()["cancel_task"] == 5


async def test_inactive_is_reported_and_not_terminal(
    slow_daemon: DaemonProcess, slow_sim: Simulator, slow_session: Session
) -> None:
    sim = slow_sim
    http, session_id = slow_session
    task_id = submit(http, session_id, "pause")
    ws = await ws_connect(slow_daemon, task_id=task_id, since=0)
    try:
        # INACTIVE comes from a credential expiry only (a pause keeps a task ACTIVE).
        sim.expire_credential(task_id)
        paused = await next_events(ws, lambda m: m["data"].get("status") == "INACTIVE")
        waited = http.post(
            f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 0.3}
        ).json()
        assert waited["done"] is False
        sim.renew_credential(task_id)
        resumed = await next_events(ws, lambda m: m["data"].get("status") == "ACTIVE")
        sim.finish_task(task_id)
        finished = await next_events(ws, lambda m: m["data"].get("status") == "SUCCEEDED")
    finally:
        await ws.close()
    assert paused[-1]["kind"] == "task_state_changed"
    assert paused[-1]["data"]["nice_status"] == "CREDENTIAL_EXPIRED"
    assert resumed[-1]["kind"] == "task_state_changed"
    assert finished[-1]["data"]["files_transferred"] == 3


def test_sweeps_never_overlap_when_globus_is_slow(tmp_path: Path, slow_sim: Simulator) -> None:
    """Each task_list takes 0.3 s and the interval is 0.05 s: sweeps run back to back, so at
    most one request is in flight, i.e. at most ~1 request per 0.3 s."""
    sim = slow_sim
    creds = sim.add_user("alice")
    with daemon_process(tmp_path, sim, poll_interval=0.05) as process, client(process) as http:
        session_id = register(http, creds)
        submit(http, session_id)
        sim.latency = 0.3
        wait_for(lambda: sim.request_counts()["task_list"] >= 1, what="polling")
        sim.reset_counts()
        time.sleep(2.4)
        polls = sim.request_counts()["task_list"]
        sim.latency = 0.0
    assert 4 <= polls <= 9, polls  # 2.4 s / 0.3 s = 8 back-to-back requests at most


def test_refresh_token_session_survives_access_token_expiry(
    slow_daemon: DaemonProcess, slow_sim: Simulator
) -> None:
    """With a refresh token, an expired access token is renewed silently, again and again
    (each refresh needs the refresh token the previous answer left): no expiry event."""
    sim = slow_sim
    creds = sim.add_user("alice")
    with client(slow_daemon) as http:
        session_id = register(http, creds, refreshable=True)
        task_id = submit(http, session_id)
        listings = []
        for _ in range(2):
            sim.expire_token("alice")  # every access token of the user, the daemon's included
            # Answered only after a refresh; the second needs the token the first answer left.
            listings.append(
                http.get(
                    f"/globus/sessions/{session_id}/ls",
                    params={"collection": transfer_body()["destination"]},
                ).status_code
            )
            time.sleep(0.3)
        sim.finish_task(task_id)
        wait_status(http, session_id, [task_id], "SUCCEEDED")
        kinds = [e["kind"] for e in history(http, session_id=session_id)]
        listing = http.get(
            f"/globus/sessions/{session_id}/ls",
            params={"collection": transfer_body()["destination"]},
        )
    assert listings == [200, 200]
    assert "credential_expired" not in kinds
    assert listing.status_code == 200


def test_expired_access_token_renewed_after_a_503_storm_used_up_the_sdk_retries(
    daemon: DaemonProcess, sim: Simulator
) -> None:
    """Three 503s take every retry the SDK allows; the 401 that follows must still lead to a
    refresh (the refresh token works), not to a 'credential expired' answer."""
    creds = sim.add_user("carol")
    with client(daemon) as http:
        session_id = register(http, creds, refreshable=True)
        sim.expire_token("carol")
        sim.schedule_fault(route="get_submission_id", status=503, count=3)
        submitted = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body())
        kinds = [e["kind"] for e in history(http, session_id=session_id)]
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "ACTIVE"
    assert "credential_expired" not in kinds


def test_a_server_error_costs_only_its_batch(tmp_path: Path) -> None:
    """A 500 to one task_list of a two-batch sweep (and to its retry) while every task
    finishes: the other batch is recorded as usual and the failed one in the next sweep,
    without event lists (a missed interval is no gap worth a catch-up). Before, any failure
    made the session's next sweep a catch-up of every changed task, and a soak with 15%
    errors fell thousands of tasks behind."""
    with running_simulator(
        tmp_path, min_task_seconds=3600, max_active=1000, max_pending=1000
    ) as sim:
        creds = sim.add_user("alice")
        # Catch-up begins at 4 intervals unobserved; the 500 and its retry (up to 2 s) must
        # stay well inside that even on a loaded machine.
        process = daemon_process(
            tmp_path,
            sim,
            poll_interval=2.0,
            # The simulator's limits are raised: the daemon's admission queue must know.
            env={"RADICAL_ORBIT_GLOBUS_MAX_PENDING": "1000", "RADICAL_ORBIT_ADMISSION_RATE": "0"},
        )
        with process, client(process) as http:
            session_id = register(http, creds)
            for i in range(BATCH + 50):
                submit(http, session_id, f"b{i}")
            sim.reset_counts()
            # Two whole sweeps, so every task has been observed ACTIVE.
            wait_for(lambda: sim.request_counts()["task_list"] >= 4, what="two sweeps")
            sim.schedule_fault(route="task_list", status=500, count=2)  # with its retry
            sim.reset_counts()
            sim.finish_all()

            def open_tasks() -> int:
                page = http.get(
                    f"/globus/sessions/{session_id}/tasks",
                    params={"status": "ACTIVE", "limit": 1000},
                )
                return len(page.json()["tasks"])

            wait_for(lambda: open_tasks() == 0, what="every task recorded SUCCEEDED")
            counts = sim.request_counts()
            done = http.get(
                f"/globus/sessions/{session_id}/tasks",
                params={"status": "SUCCEEDED", "limit": 1000},
            ).json()["tasks"]
    assert len(done) == BATCH + 50
    assert counts["task_event_list"] == 0, counts


@pytest.mark.parametrize(
    ("fault", "tries"), [({"status": 500}, 2), ({"status": 429}, 2), ({"delay": 1.5}, 1)]
)
def test_the_poll_client_tries_an_answer_twice_and_a_timeout_once(
    tmp_path: Path, fault: dict[str, Any], tries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll client retries a 429 or 5xx once, so a lone fault costs a second and not a
    sweep, and never retries a request Globus did not answer (it already cost the whole
    timeout). The SDK appends its default checks to any given, so without the client's
    own first check it would also retry the timeout."""
    with running_simulator(tmp_path) as sim:
        for name, value in sim.environ().items():
            monkeypatch.setenv(name, value)
        creds = sim.add_user("alice")
        clients = build_clients(
            Credential(access_token=Secret(creds.access_token)), http_timeout=1.0
        )
        sim.schedule_fault(route="task_list", count=tries, **fault)
        with pytest.raises(globus_sdk.GlobusError):
            clients.poll.task_list(limit=5)
        # One fault fewer and the retry goes through (the timeout: none is tried again).
        if tries > 1:
            sim.schedule_fault(route="task_list", count=tries - 1, **fault)
            assert clients.poll.task_list(limit=5).http_status == 200
        # The retrying client, for contrast, gets through after a timeout too.
        sim.schedule_fault(route="task_list", count=1, **fault)
        assert clients.api.task_list(limit=5).http_status == 200
