"""What the client says about a task in trouble: watch's lines, task show's line, the errors of
task_wait (pure: rows and notifications in, words out)."""

from __future__ import annotations

from typing import Any

from radical.orbit import TaskNeedsAttention, TaskWaitTimeout
from radical.orbit.client.render import ProgressBoard
from radical.orbit.client.trouble import INACTIVE_ADVICE, policy_body, trouble_text

ERROR = {"code": "FILE_NOT_FOUND", "description": "file not found", "details": "/~/a.txt"}


def _note(kind: str, **data: Any) -> dict[str, Any]:
    base = {"task_id": "t" * 36, "status": "ACTIVE", "label": "x", "nice_status": "OK"}
    return {"topic": "transfer_status", "kind": kind, "data": {**base, **data}}


def test_watch_lines_show_faults_pauses_and_inactive() -> None:
    board = ProgressBoard()
    task = board.apply(
        _note(
            "task_needs_attention",
            nice_status="FILE_NOT_FOUND",
            is_ok=False,
            faults=2,
            error=ERROR,
            needs_attention="erroring",
        )
    )
    assert task is not None
    line = board.line(task)
    assert "!! Globus retries: FILE_NOT_FOUND; 2 faults" in line
    assert "newest error FILE_NOT_FOUND: file not found (/~/a.txt)" in line
    # Paused: the administrator's message from the episode's notification, kept after it.
    board.apply(
        _note(
            "task_needs_attention",
            is_paused=True,
            is_ok=True,
            needs_attention="paused",
            attention_message="disk swap until noon",
        )
    )
    board.apply(_note("task_progress", is_paused=True, needs_attention="paused"))
    assert "!! paused: disk swap until noon" in board.line(task)
    board.apply(_note("task_state_changed", status="INACTIVE", needs_attention="inactive"))
    assert INACTIVE_ADVICE in board.line(task)
    board.apply(_note("task_recovered", is_ok=True, needs_attention=None))
    assert "!!" not in board.line(task)


def test_task_wait_errors_say_why() -> None:
    row = {"status": "ACTIVE", "nice_status": "FILE_NOT_FOUND", "is_ok": False, "faults": 4}
    row |= {"error": ERROR, "needs_attention": "erroring"}
    text = str(TaskWaitTimeout("t1", 60, row))
    assert text.startswith("task t1 still ACTIVE after 60 s: Globus retries: FILE_NOT_FOUND")
    assert "4 faults" in text and "file not found" in text
    stopped = TaskNeedsAttention("t1", row)
    assert stopped.reason == "erroring" and "needs attention (erroring)" in str(stopped)
    assert str(TaskWaitTimeout("t1", 5, {"status": "ACTIVE", "nice_status": "OK"})) == (
        "task t1 still ACTIVE after 5 s"
    )
    assert trouble_text({"status": "ACTIVE", "is_ok": True, "faults": 0}) == ""


def test_policy_body_keeps_only_what_is_set() -> None:
    assert policy_body() is None
    assert policy_body(max_faults=3, fatal_codes=["FILE_NOT_FOUND"]) == {
        "max_faults": 3,
        "fatal_codes": ["FILE_NOT_FOUND"],
    }
