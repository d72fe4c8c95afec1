"""Restarts: kill -9 mid-submit gives exactly one Globus task; a restarted daemon catches up."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_helpers import (
    client,
    events_of,
    history,
    register,
    start_daemon,
    submit,
    transfer_body,
    wait_for,
    wait_status,
)

from radical.orbit.daemon.runtime.launcher import DaemonProcess, LaunchError
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials


def _kinds(events: list[dict[str, object]]) -> list[object]:
    return [e["kind"] for e in events]


def _alice_on(
    tmp_path: Path, sim: Simulator
) -> tuple[DaemonProcess, httpx.Client, Credentials, str]:
    """A started daemon, a client of it, and alice (to register again after a restart) with
    a session open on it."""
    creds = sim.add_user("alice")
    process = start_daemon(tmp_path, sim)
    http = client(process)
    return process, http, creds, register(http, creds)


def _kill_during(
    process: DaemonProcess, http: httpx.Client, send: Callable[[httpx.Client], object], kind: str
) -> list[dict[str, Any]]:
    """Send a request from another thread and kill -9 the daemon once its ``kind`` event is
    committed (the request still waits for Globus); those events."""

    def request() -> None:
        try:
            with client(process) as h:
                send(h)
        except httpx.HTTPError:
            pass  # the daemon died under this request

    sender = threading.Thread(target=request)
    sender.start()
    recorded = wait_for(lambda: events_of(http, kind), what=f"{kind} in the ledger")
    process.kill()
    sender.join(30)
    return recorded


@pytest.mark.parametrize("fault", ["answer_lost", "never_arrived"])
def test_kill_between_submit_requested_and_globus_answer(
    tmp_path: Path, slow_sim: Simulator, fault: str
) -> None:
    sim = slow_sim
    process, http, creds, session_id = _alice_on(tmp_path, sim)
    if fault == "answer_lost":
        # Globus gets the request and creates the task, but answers after we are dead.
        sim.schedule_fault(route="submit_transfer", delay=1.5)
    else:
        # Globus never executes it: every attempt fails until the daemon is dead.
        sim.schedule_fault(route="submit_transfer", status=503, count=None)
    requested = _kill_during(
        process,
        http,
        lambda h: h.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("once")),
        "submit_requested",
    )
    submission_id = requested[0]["data"]["submission_id"]
    http.close()
    sim.clear_faults()

    process.start()
    try:
        with client(process) as http:
            # Restarted: the session is known but has no credential; the submit is pending.
            assert http.get(f"/globus/sessions/{session_id}/tasks").json() == {"tasks": []}
            missing = http.get(f"/globus/sessions/{session_id}/ls", params={"collection": "x"})
            assert missing.status_code == 401
            assert missing.json()["error"] == "CredentialMissing"
            assert register(http, creds, session_id=session_id) == session_id
            submitted = wait_for(
                lambda: events_of(http, "task_submitted"),
                what="task_submitted after re-registration",
            )
            # Let any stray duplicate resubmission show up before counting.
            sim.finish_all()
            task_id = submitted[0]["task_id"]
            wait_status(http, session_id, [task_id], "SUCCEEDED")
            events = history(http)
            row = http.get(f"/globus/sessions/{session_id}/tasks/{task_id}").json()
    finally:
        process.stop()
    globus_tasks = [t for t in sim.tasks() if t["label"] == "once"]
    assert len(globus_tasks) == 1
    assert globus_tasks[0]["task_id"] == task_id
    assert len(submitted) == 1
    assert submitted[0]["data"]["task_id"] == task_id
    assert _kinds(events).count("submit_requested") == 1
    assert "submit_failed" not in _kinds(events)
    assert row["submission_id"] == submission_id


def test_restart_catches_up_every_task(tmp_path: Path, slow_sim: Simulator) -> None:
    sim = slow_sim
    creds = sim.add_user("alice")
    process = start_daemon(tmp_path, sim)
    with client(process) as http:
        session_id = register(http, creds)
        ids = [submit(http, session_id, f"c{i}") for i in range(4)]
    process.stop()  # graceful this time
    # While the daemon is down: one fails, one goes INACTIVE (its credential expired; a pause
    # would keep it ACTIVE, as with Globus), the rest finish.
    sim.fail_task(ids[0], code="PERMISSION_DENIED", description="denied")
    sim.expire_credential(ids[1])
    for task_id in ids[2:]:
        sim.finish_task(task_id)
    process.start()
    try:
        with client(process) as http:
            rows = {t: http.get(f"/globus/sessions/{session_id}/tasks/{t}").json() for t in ids}
            assert {r["status"] for r in rows.values()} == {"ACTIVE"}  # not yet polled
            register(http, creds, session_id=session_id)

            def caught_up() -> bool:
                return all(
                    http.get(f"/globus/sessions/{session_id}/tasks/{t}").json()["status"]
                    == sim.task(t)["status"]
                    for t in ids
                )

            wait_for(caught_up, what="ledger equal to the simulator")
            rows = {t: http.get(f"/globus/sessions/{session_id}/tasks/{t}").json() for t in ids}
    finally:
        process.stop()
    assert rows[ids[0]]["status"] == "FAILED"
    assert rows[ids[0]]["fatal_error"]["code"] == "PERMISSION_DENIED"
    assert rows[ids[1]]["status"] == "INACTIVE"
    assert rows[ids[1]]["nice_status"] == "CREDENTIAL_EXPIRED"
    assert rows[ids[2]]["status"] == rows[ids[3]]["status"] == "SUCCEEDED"
    assert rows[ids[2]]["files_transferred"] == 3


def _gap_histories(
    tmp_path: Path, sim: Simulator, seen: str, *, in_gap: str
) -> tuple[dict[str, list[str]], int]:
    """Task a is seen ``seen`` (``"INACTIVE"``: its credential expired), the daemon is killed;
    meanwhile a gets its credential back, task b goes through ``in_gap`` (``"pause"`` or
    ``"credential"``), and both finish. Returns both status histories after the restart and
    the re-registration, and the number of event_list requests."""
    creds = sim.add_user("alice")
    process = start_daemon(tmp_path, sim)
    with client(process) as http:
        session_id = register(http, creds)
        a, b = (submit(http, session_id, label) for label in ("a", "b"))
        if seen == "INACTIVE":
            sim.expire_credential(a)
        wait_for(
            lambda: http.get(f"/globus/sessions/{session_id}/tasks/{a}").json()["status"] == seen,
            what=f"a seen {seen}",
        )
    process.kill()
    sim.renew_credential(a)
    if in_gap == "pause":
        sim.pause_task(b)
        sim.unpause_task(b)
    else:
        sim.expire_credential(b)
        sim.renew_credential(b)
    sim.finish_task(a)
    sim.finish_task(b)
    wait_for(lambda: sim.task(a)["status"] == sim.task(b)["status"] == "SUCCEEDED")
    process.start()
    try:
        with client(process) as http:
            register(http, creds, session_id=session_id)
            wait_status(http, session_id, (a, b), "SUCCEEDED", what="both SUCCEEDED in the ledger")
            changes = {
                name: [
                    e["data"]["status"]
                    for e in history(http, task_id=t)
                    if e["kind"] in ("task_submitted", "task_state_changed")
                ]
                for name, t in (("a", a), ("b", b))
            }
    finally:
        process.stop()

    def transitions(statuses: list[str]) -> list[str]:
        # nice_status-only changes (Queued -> OK) repeat a status: not transitions.
        return [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]

    return {k: transitions(v) for k, v in changes.items()}, sim.request_counts()["task_event_list"]


def test_restart_catches_up_what_globus_shows_of_the_gap(
    tmp_path: Path, slow_sim: Simulator
) -> None:
    """Task a, seen INACTIVE, gets its credential back and finishes while the daemon is
    down; task b's credential expires and is renewed meanwhile. Globus logs no event for a
    credential's expiry or renewal (the simulator models none: docs/simulator.md), so the
    catch-up can only record what the documents show: a INACTIVE -> SUCCEEDED, b ACTIVE ->
    SUCCEEDED; it still reads both event lists."""
    changes, event_lists = _gap_histories(tmp_path, slow_sim, "INACTIVE", in_gap="credential")
    assert changes["a"] == ["ACTIVE", "INACTIVE", "SUCCEEDED"]
    assert changes["b"] == ["ACTIVE", "SUCCEEDED"]
    assert event_lists >= 2


def test_a_pause_inside_the_gap_is_not_recorded_as_inactive(
    tmp_path: Path, slow_sim: Simulator
) -> None:
    changes, _ = _gap_histories(tmp_path, slow_sim, "ACTIVE", in_gap="pause")
    assert changes["b"] == ["ACTIVE", "SUCCEEDED"]


def test_sigterm_finishes_in_flight_submits(tmp_path: Path, sim: Simulator) -> None:
    """SIGTERM while a submit waits for Globus: the request is answered and both its
    events are committed before the daemon exits."""
    process, http, _, session_id = _alice_on(tmp_path, sim)
    sim.schedule_fault(route="submit_transfer", delay=1.0)
    answers: list[httpx.Response] = []
    submitter = threading.Thread(
        target=lambda: answers.append(
            http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("term"))
        )
    )
    submitter.start()
    wait_for(lambda: events_of(http, "submit_requested"), what="submit_requested")
    assert process.stop() == 0
    submitter.join(10)
    http.close()
    assert answers[0].status_code == 200, answers[0].text
    task_id = answers[0].json()["task_id"]
    process.start()
    try:
        with client(process) as http:
            kinds = [e["kind"] for e in history(http)]
            row = http.get(f"/globus/sessions/{session_id}/tasks/{task_id}")
    finally:
        process.stop()
    assert kinds[:3] == ["session_opened", "submit_requested", "task_submitted"]
    assert row.status_code == 200
    assert "stopped" in process.log_path.read_text()


def test_kill_between_cancel_requested_and_globus_answer(
    tmp_path: Path, slow_sim: Simulator
) -> None:
    sim = slow_sim
    process, http, creds, session_id = _alice_on(tmp_path, sim)
    task_id = submit(http, session_id, "c")
    sim.pause_task(task_id)  # so it cannot finish before the delayed cancel on a busy machine
    sim.schedule_fault(route="cancel_task", delay=1.5)
    _kill_during(
        process,
        http,
        lambda h: h.post(f"/globus/sessions/{session_id}/tasks/{task_id}/cancel"),
        "cancel_requested",
    )
    http.close()
    process.start()
    try:
        with client(process) as http:
            register(http, creds, session_id=session_id)
            results = wait_for(
                lambda: events_of(http, "cancel_result"),
                what="the pending cancel resent after re-registration",
            )
            wait_status(http, session_id, [task_id], "FAILED")
            kinds = _kinds(history(http))
    finally:
        process.stop()
    assert results[0]["data"]["code"] in ("Canceled", "TaskComplete")
    assert kinds.count("cancel_requested") == 1
    assert kinds.count("cancel_result") == 1
    assert sim.task(task_id)["status"] == "FAILED"


def test_one_daemon_per_state_folder_and_clear_port_errors(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    second = DaemonProcess(state_dir=daemon.state_dir)
    with pytest.raises(LaunchError) as refused:
        second.start()
    assert "another daemon" in str(refused.value)
    assert f"pid {daemon.pid}" in str(refused.value)
    assert json.loads(daemon.endpoint_file.read_text())["pid"] == daemon.pid  # untouched
    port = int(daemon.url.rsplit(":", 1)[1])
    elsewhere = DaemonProcess(state_dir=tmp_path / "other", port=port)
    with pytest.raises(LaunchError) as taken:
        elsewhere.start()
    assert "cannot listen on 127.0.0.1" in str(taken.value)
    with client(daemon) as http:
        assert http.get("/endpoints").status_code == 200  # the first one is unharmed
