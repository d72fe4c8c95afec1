"""Client-chosen submission ids: a repeat is answered from the ledger, never sent again, and
an id used for another request is refused with one answer that reveals nothing."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from daemon_helpers import (
    C1,
    Session,
    client,
    history,
    new_user,
    register,
    start_daemon,
    transfer_body,
)

from radical.orbit.client import GlobusClient, SubmitUnresolved
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from timing import UNIT


def _tasks_with(sim: Simulator, label: str) -> list[dict[str, object]]:
    """Globus's tasks with this label (task documents do not show the submission id)."""
    return [t for t in sim.tasks() if t.get("label") == label]


def test_repeat_answers_the_first_task(shared_daemon: DaemonProcess, shared_sim: Simulator) -> None:
    creds = new_user(shared_sim)
    sub = str(uuid.uuid4())
    with client(shared_daemon) as http:
        session_id = register(http, creds)
        body = transfer_body("once", submission_id=sub)
        first = http.post(f"/globus/sessions/{session_id}/transfers", json=body)
        again = http.post(f"/globus/sessions/{session_id}/transfers", json=body)
        delete_sub = str(uuid.uuid4())
        body = {
            "collection": C1,
            "paths": ["/~/nothing"],
            "label": "delete-once",
            "submission_id": delete_sub,
        }
        d1 = http.post(f"/globus/sessions/{session_id}/deletes", json=body)
        d2 = http.post(f"/globus/sessions/{session_id}/deletes", json=body)
        by_sub = http.get(f"/globus/sessions/{session_id}/tasks/{sub}")
        requested = [
            e for e in history(http, session_id=session_id) if e["kind"] == "submit_requested"
        ]
    assert first.status_code == 200, first.text
    assert first.json()["submission_id"] == sub and first.json()["status"] == "ACTIVE"
    assert again.status_code == 200, again.text
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.json()["code"] == "Duplicate"
    assert d2.json()["task_id"] == d1.json()["task_id"]
    # Each id reached Globus once, and the ledger recorded each request once.
    assert len(_tasks_with(shared_sim, "once")) == 1
    assert len(_tasks_with(shared_sim, "delete-once")) == 1
    assert len(requested) == 2
    # The submission id stands for its task.
    assert by_sub.status_code == 200 and by_sub.json()["task_id"] == first.json()["task_id"]


def test_an_id_used_elsewhere_is_refused_alike(
    shared_daemon: DaemonProcess, shared_sim: Simulator
) -> None:
    """Another token's id and this token's id with another body get the same answer."""
    alice, bob = new_user(shared_sim), new_user(shared_sim)
    other_token = shared_daemon.add_token("other")
    sub = str(uuid.uuid4())
    with client(shared_daemon) as http, client(shared_daemon, other_token) as other:
        session_id = register(http, alice)
        other_sid = register(other, bob)
        ok = http.post(
            f"/globus/sessions/{session_id}/transfers",
            json=transfer_body("mine", submission_id=sub),
        )
        assert ok.status_code == 200, ok.text
        changed = http.post(
            f"/globus/sessions/{session_id}/transfers",
            json=transfer_body("other", submission_id=sub),
        )
        foreign = other.post(
            f"/globus/sessions/{other_sid}/transfers", json=transfer_body("mine", submission_id=sub)
        )
        peek = other.get(f"/globus/sessions/{other_sid}/tasks/{sub}")
    assert changed.status_code == foreign.status_code == 409
    assert changed.json() == foreign.json()
    assert foreign.json()["error"] == "SubmissionIdConflict"
    assert ok.json()["task_id"] not in foreign.text
    assert peek.status_code == 404
    assert len(_tasks_with(shared_sim, "mine")) == 1
    assert not _tasks_with(shared_sim, "other")


def test_bad_submission_id_is_refused(shared_session: Session) -> None:
    http, session_id = shared_session
    answer = http.post(
        f"/globus/sessions/{session_id}/transfers",
        json=transfer_body(submission_id="not-a-uuid"),
    )
    fresh = http.get(f"/globus/sessions/{session_id}/submission_id")
    assert answer.status_code == 422
    assert "submission_id" in answer.json()["message"]
    assert fresh.status_code == 200
    assert str(uuid.UUID(fresh.json()["value"])) == fresh.json()["value"]


def test_library_retries_through_a_restart(tmp_path: Path, sim: Simulator) -> None:
    """The daemon is down when the submit starts; the library repeats it with the same
    submission_id until the daemon is back, and the answer names the one task."""
    daemon = start_daemon(tmp_path, sim)
    creds = sim.add_user("alice")
    try:
        globus = GlobusClient(daemon.url, daemon.token, submit_timeout=60 * UNIT)
        globus.register_session(access_token=creds.access_token)
        sub = globus.generate_submission_id()
        daemon.stop()
        answers: list[dict[str, object]] = []
        items = [{"source": "/home/share/godata/file1.txt", "destination": "/~/f1"}]

        def submit() -> None:
            answers.append(
                globus.submit_transfer(C1, C1, items, label="restart", submission_id=sub)
            )

        worker = threading.Thread(target=submit)
        worker.start()
        time.sleep(0.5)
        daemon.start()
        worker.join(60 * UNIT)
        tasks = _tasks_with(sim, "restart")
        assert answers and answers[0]["submission_id"] == sub
        assert len(tasks) == 1 and answers[0]["task_id"] == tasks[0]["task_id"]
        # A repeat later gives the same task, never a second one.
        again = globus.submit_transfer(C1, C1, items, label="restart", submission_id=sub)
        assert again["task_id"] == answers[0]["task_id"]
        assert len(_tasks_with(sim, "restart")) == 1
        # With the daemon gone for longer than the submit timeout, the error says what is known.
        daemon.stop()
        short = GlobusClient(daemon.url, daemon.token, session_id=globus.session_id)
        short.submit_timeout = 0.5
        fresh = str(uuid.uuid4())
        try:
            short.submit_transfer(
                C1, C1, [{"source": "/a", "destination": "/b"}], submission_id=fresh
            )
        except SubmitUnresolved as exc:
            assert exc.submission_id == fresh
            assert not exc.recorded
            assert fresh in str(exc)
        else:
            raise AssertionError("expected SubmitUnresolved")
        globus.close()
        short.close()
    finally:
        daemon.stop()
