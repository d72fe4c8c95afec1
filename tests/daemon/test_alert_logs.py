"""Operators' logs: nothing but JSON lines off a terminal, and one alert line per task that
FAILED, went INACTIVE or needs attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_helpers import client, new_user, register, start_daemon, transfer_body, wait_for

from radical.orbit.daemon.service.alerts import AlertLog, alert_for
from radical.orbit.ledger.events import StoredEvent
from radical.orbit.simulator import Simulator
from timing import UNIT


def stored(kind: str, data: dict[str, object], *, task_id: str | None = "t1") -> StoredEvent:
    return StoredEvent(1, 0.0, kind, "owner", "s1", task_id, data)


@pytest.mark.parametrize(
    ("kind", "data", "alert", "code"),
    [
        (
            "task_state_changed",
            {"status": "FAILED", "label": "L", "fatal_error": {"code": "CANCELED"}},
            "task_failed",
            "CANCELED",
        ),
        (
            "task_state_changed",
            {"status": "INACTIVE", "nice_status": "PERMISSION_DENIED"},
            "task_inactive",
            "PERMISSION_DENIED",
        ),
        ("task_submitted", {"status": "FAILED", "label": None}, "task_failed", None),
        (
            "submit_failed",
            {"code": "ClientError.BadRequest", "submission_id": "x"},
            "submit_failed",
            "ClientError.BadRequest",
        ),
        ("credential_expired", {"message": "refused"}, "credential_expired", "CredentialExpired"),
        (
            "task_needs_attention",
            {"needs_attention": "erroring", "error": {"code": "FILE_NOT_FOUND"}},
            "task_needs_attention",
            "FILE_NOT_FOUND",
        ),
        ("task_needs_attention", {"needs_attention": "stalled"}, "task_needs_attention", "stalled"),
    ],
)
def test_alerts_name_the_task_session_label_and_code(
    kind: str, data: dict[str, object], alert: str, code: str | None
) -> None:
    fields = alert_for(stored(kind, data))
    assert fields is not None
    assert fields["alert"] == alert and fields["code"] == code
    assert fields["session_id"] == "s1"


def test_no_alert_for_progress_success_or_activity() -> None:
    for kind, data in [
        ("task_state_changed", {"status": "SUCCEEDED"}),
        ("task_state_changed", {"status": "ACTIVE"}),
        ("task_progress", {"status": "INACTIVE"}),  # a progress report is not a change
        ("session_opened", {}),
        # INACTIVE has its own alert (task_inactive), from the state change.
        ("task_needs_attention", {"needs_attention": "inactive"}),
    ]:
        assert alert_for(stored(kind, data)) is None


def test_an_inactive_task_reported_again_gives_a_line_only_when_its_code_changes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sink = AlertLog()
    for nice in ("PAUSED_BY_ADMIN", "PAUSED_BY_ADMIN", "ENDPOINT_ERROR"):
        sink.offer([stored("task_state_changed", {"status": "INACTIVE", "nice_status": nice})])
    assert capsys.readouterr().out.count("task inactive") == 2


def test_daemon_log_is_json_only_with_an_alert_for_a_failed_task(
    tmp_path: Path, slow_sim: Simulator
) -> None:
    # Tasks stay ACTIVE for 2 s there: long enough to cancel one, which then FAILED.
    user = new_user(slow_sim)
    daemon = start_daemon(tmp_path, slow_sim, env={"RADICAL_ORBIT_LOG_LEVEL": "info"})
    try:
        with client(daemon) as http:
            session_id = register(http, user)
            body = transfer_body("doomed")
            task_id = http.post(f"/globus/sessions/{session_id}/transfers", json=body).json()[
                "task_id"
            ]
            http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/cancel")
            wait_for(
                lambda: (
                    http.get(f"/globus/sessions/{session_id}/tasks/{task_id}").json()["status"]
                    == "FAILED"
                ),
                timeout=30 * UNIT,
            )
            wait_for(lambda: "task failed" in daemon.log_path.read_text(), timeout=10 * UNIT)
    finally:
        daemon.stop()
    lines = daemon.log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # every line, the start-up notice too
    failed = [p for p in parsed if p.get("alert") == "task_failed"]
    assert len(failed) == 1
    assert failed[0]["task_id"] == task_id and failed[0]["session_id"] == session_id
    assert failed[0]["label"] == "doomed" and failed[0]["code"]
    assert failed[0]["level"] == "warning"
    assert any("client token written" in p["event"] for p in parsed)
    assert user.access_token not in daemon.log_path.read_text()
