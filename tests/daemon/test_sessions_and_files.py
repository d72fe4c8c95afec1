"""Unregister with pending submissions, malformed credentials, private state files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from daemon_helpers import Session, client, events_of, transfer_body, wait_for

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT


def test_unregister_keeps_a_pending_submission_until_globus_answers(
    sim: Simulator, session: Session
) -> None:
    http, session_id = session
    sim.schedule_fault(route="submit_transfer", status=503, count=None)
    pending = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("p"))
    assert pending.status_code == 503, pending.text
    submission_id = pending.json()["submission_id"]

    closing = http.delete(f"/globus/sessions/{session_id}")
    assert closing.status_code == 200, closing.text
    assert closing.json() == {
        "session_id": session_id,
        "closed": False,
        "pending_submissions": [submission_id],
    }
    refused = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("new"))
    assert refused.status_code == 400 and "unregistered" in refused.json()["message"]

    sim.clear_faults()

    wait_for(
        lambda: events_of(http, "task_submitted", session_id=session_id),
        timeout=30 * UNIT,
        what="the pending submission sent",
    )
    wait_for(
        lambda: events_of(http, "session_closed", session_id=session_id),
        timeout=30 * UNIT,
        what="the session closed after its submission",
    )
    assert http.get(f"/globus/sessions/{session_id}/tasks").status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("access_token", "abc\ud800def"),  # a lone surrogate
        ("access_token", "abc\r\nX-Injected: 1"),
        ("access_token", "abc\x00def"),
        ("access_token", "abc def"),
        ("client_id", "client\nid"),
    ],
)
def test_malformed_credentials_are_refused_with_400(
    shared_daemon: DaemonProcess, field: str, value: str
) -> None:
    body = {"refresh_token": "rt", field: value} if field == "client_id" else {field: value}
    with client(shared_daemon) as http:
        # json.dumps keeps a lone surrogate as the escape "\ud800", valid JSON.
        answer = http.post(
            "/globus/sessions",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "BadRequest"
    assert field in answer.json()["message"]
    assert value not in answer.text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_files_are_private_even_when_they_were_not(tmp_path: Path, sim: Simulator) -> None:
    state = tmp_path / "state"
    process = DaemonProcess(state_dir=state, env=sim.environ()).start()
    process.stop()
    state.chmod(0o755)
    for name in ("ledger.db", "tokens.json", "token"):
        (state / name).chmod(0o644)
    process.start()
    try:
        assert _mode(state) == 0o700
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "tokens.json", "token"):
            assert _mode(state / name) == 0o600, name
    finally:
        process.stop()
