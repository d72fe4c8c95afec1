"""Trouble is news, end to end: the faithful simulator, the real daemon, the real client.

Globus keeps a task whose source is missing, whose permission is denied or whose endpoint
fails ACTIVE with ``is_ok`` false and ``faults`` counting; a pause keeps it ACTIVE with
``is_paused``; an expired credential makes it INACTIVE; a deadline ends it FAILED/EXPIRED.
Each scenario here checks what a user of the daemon sees: the notifications (with the newest
error and ``needs_attention``), the ledger's episodes (``task_needs_attention`` once,
``task_recovered``), task_wait's early stop and its timeout message, the CLI's words, and a
trouble policy that cancels a doomed task with the reason recorded.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import C1, C2

from live_stack import start_daemon
from radical.orbit import GlobusClient, TaskNeedsAttention, TaskWaitTimeout
from radical.orbit.client import cli
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

DAY = 24 * 3600.0


def _file(sim: Simulator, user: Credentials, path: str, size: int) -> None:
    target = sim.local_path(C1, path, username=user.username)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(os.urandom(size))


def _submit(globus: GlobusClient, src: str, dst: str, **options: Any) -> str:
    items = [{"source": src, "destination": dst, "recursive": options.pop("recursive", False)}]
    return str(globus.submit_transfer(C1, C2, items, label="trouble", **options)["task_id"])


def _under_way(globus: GlobusClient, sim: Simulator, user: Credentials, path: str) -> str:
    """A transfer of a new 50 MB file at ``path``, once it has moved some bytes."""
    _file(sim, user, path, 50_000_000)
    task_id = _submit(globus, path, path)
    _row(globus, task_id, lambda r: r["bytes_transferred"] > 0)
    return task_id


def _notifications(
    globus: GlobusClient, task_id: str, until: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The task's transfer_status notifications from the start, up to the first that holds."""
    seen: list[dict[str, Any]] = []
    with globus.events(since=0, task_id=task_id, topic="transfer_status") as stream:
        while True:
            event = stream.get(timeout=30 * UNIT)
            assert event is not None, f"no notification met the condition; saw {seen}"
            seen.append(event)
            if until(event):
                return seen


def _kinds(globus: GlobusClient, task_id: str) -> list[str]:
    return [e["kind"] for e in globus.history(task_id=task_id, limit=1000)["events"]]


def _row(
    globus: GlobusClient, task_id: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The task's row once ``check`` holds for it (polled)."""
    deadline = time.monotonic() + 30 * UNIT
    while True:
        row = globus.get_task(task_id)
        if check(row):
            return row
        assert time.monotonic() < deadline, f"condition never held; last row: {row}"
        time.sleep(0.05)


def _cli(daemon: DaemonProcess, session: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        ["--url", daemon.url, "--token", daemon.token, "--session", session, *argv],
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_missing_source_is_news_with_the_error_and_needs_attention(
    globus: GlobusClient, daemon: DaemonProcess, sim: Simulator, user: Credentials
) -> None:
    task_id = _submit(globus, "/~/missing.txt", "/~/missing.txt")
    seen = _notifications(globus, task_id, lambda e: (e["data"].get("error") or {}).get("code"))
    news = seen[-1]["data"]
    assert news["status"] == "ACTIVE"
    assert news["is_ok"] is False
    assert news["faults"] >= 1
    assert news["nice_status"] == "FILE_NOT_FOUND"
    assert news["error"]["code"] == "FILE_NOT_FOUND"
    assert news["error"]["description"] == "file not found"
    assert "/~/missing.txt" in news["error"]["details"]
    assert news["needs_attention"] == "erroring"
    # More faults come; the episode is recorded once.
    _row(globus, task_id, lambda r: r["faults"] >= 3)
    assert _kinds(globus, task_id).count("task_needs_attention") == 1
    # task_wait: the opt-in early stop, and a timeout that says why.
    with pytest.raises(TaskNeedsAttention) as stopped:
        globus.task_wait(task_id, timeout=30 * UNIT, stop_on_attention=True)
    assert stopped.value.reason == "erroring"
    with pytest.raises(TaskWaitTimeout) as timed_out:
        globus.task_wait(task_id, timeout=0.5)
    text = str(timed_out.value)
    assert "FILE_NOT_FOUND" in text and "faults" in text and "file not found" in text
    # The CLI: task show, wait --stop-on-attention (exit 7: 6 is authentication or consent)
    # and Globus's own event list.
    code, out, _ = _cli(daemon, globus.session_id or "", "task", "show", task_id)
    assert code == 0 and "Globus retries: FILE_NOT_FOUND" in out
    code, _, err = _cli(
        daemon, globus.session_id or "", "task", "wait", task_id, "--stop-on-attention"
    )
    assert code == 7 and "needs attention (erroring)" in err
    code, _, err = _cli(
        daemon,
        globus.session_id or "",
        "-F",
        "json",
        "task",
        "wait",
        task_id,
        "--stop-on-attention",
    )
    error = json.loads(err.strip().splitlines()[-1])
    assert (code, error["exit_code"], error["error"]) == (7, 7, "TaskNeedsAttention")
    assert error["task"]["needs_attention"] == "erroring"
    code, out, _ = _cli(daemon, globus.session_id or "", "task", "event-list", task_id)
    assert code == 0 and "FILE_NOT_FOUND" in out and "file not found" in out
    # The file appears: the next retry succeeds.
    _file(sim, user, "/~/missing.txt", 10)
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "SUCCEEDED"
    assert done["needs_attention"] is None


def test_event_list_is_only_for_the_sessions_own_tasks(
    globus: GlobusClient, daemon: DaemonProcess, sim: Simulator
) -> None:
    task_id = _submit(globus, "/home/share/godata/file1.txt", "/~/f1.txt")
    events = globus.task_event_list(task_id)
    assert isinstance(events, list)
    other = sim.add_user(f"o{uuid.uuid4().hex[:10]}")
    with GlobusClient(daemon.url, daemon.token) as stranger:
        stranger.register_session(access_token=other.access_token)
        code, _, err = _cli(daemon, stranger.session_id or "", "task", "event-list", task_id)
    assert code == 3 and "no task" in err


def test_permission_denied_with_a_fatal_code_policy_is_cancelled(
    globus: GlobusClient, sim: Simulator, user: Credentials
) -> None:
    _file(sim, user, "/~/locked.txt", 10)
    sim.inject_error("PERMISSION_DENIED", path="/~/locked.txt", details="Permission denied")
    task_id = _submit(
        globus, "/~/locked.txt", "/~/locked.txt", policy={"fatal_codes": ["PERMISSION_DENIED"]}
    )
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "FAILED"
    assert done["fatal_error"]["code"] == "CANCELED"
    assert done["error"]["code"] == "PERMISSION_DENIED"
    events = globus.history(task_id=task_id, limit=1000)["events"]
    why = [e["data"].get("reason") for e in events if e["kind"] == "cancel_requested"]
    assert len(why) == 1 and "PERMISSION_DENIED" in why[0]


def test_cancel_after_three_faults(globus: GlobusClient) -> None:
    task_id = _submit(globus, "/~/never.txt", "/~/never.txt", policy={"max_faults": 3})
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "FAILED"
    assert done["fatal_error"]["code"] == "CANCELED"
    assert done["faults"] >= 3
    events = globus.history(task_id=task_id, limit=1000)["events"]
    faults_seen = [e["data"]["faults"] for e in events if e["kind"] == "task_state_changed"]
    cancel = next(e for e in events if e["kind"] == "cancel_requested")
    assert "3 faults reached max_faults=3" in cancel["data"]["reason"]
    # Cancelled after the third fault was seen, not before.
    before = [e for e in events if e["seq"] < cancel["seq"] and e["kind"] == "task_state_changed"]
    assert max(e["data"]["faults"] for e in before) >= 3
    assert max(faults_seen) >= 3


def test_the_cli_submits_a_policy(globus: GlobusClient, daemon: DaemonProcess) -> None:
    code, out, err = _cli(
        daemon,
        globus.session_id or "",
        "--format",
        "json",
        "transfer",
        C1,
        C2,
        "/~/nowhere.txt",
        "/~/nowhere.txt",
        "--cancel-after-faults",
        "2",
        "--cancel-on",
        "PERMISSION_DENIED",
    )
    assert code == 0, err
    task_id = json.loads(out)["task_id"]
    policy = globus.get_task(task_id)["policy"]
    assert policy == {
        "max_faults": 2,
        "max_trouble_minutes": None,
        "fatal_codes": ["PERMISSION_DENIED"],
    }
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["fatal_error"]["code"] == "CANCELED"


def test_a_session_policy_applies_to_its_submits(daemon: DaemonProcess, user: Credentials) -> None:
    with GlobusClient(daemon.url, daemon.token) as client:
        client.register_session(access_token=user.access_token, policy={"max_faults": 2})
        task_id = _submit(client, "/~/gone.txt", "/~/gone.txt")
        assert client.get_task(task_id)["policy"]["max_faults"] == 2
        done = client.task_wait(task_id, timeout=30 * UNIT)
    assert done["fatal_error"]["code"] == "CANCELED"


def test_endpoint_error_that_heals_recovers(
    globus: GlobusClient, sim: Simulator, user: Credentials
) -> None:
    # 2 MB at 1 MB/s: the task is still moving bytes well after the error healed.
    _file(sim, user, "/~/big.bin", 2_000_000)
    sim.inject_error("ENDPOINT_ERROR", path="/~/big.bin", heal_count=3)
    task_id = _submit(globus, "/~/big.bin", "/~/big.bin")
    seen = _notifications(globus, task_id, lambda e: e["kind"] == "task_recovered")
    attention = [e for e in seen if e["kind"] == "task_needs_attention"]
    assert len(attention) == 1
    assert attention[0]["data"]["needs_attention"] == "erroring"
    assert attention[0]["data"]["error"]["code"] == "ENDPOINT_ERROR"
    recovered = seen[-1]["data"]
    assert recovered["is_ok"] is True and recovered["needs_attention"] is None
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "SUCCEEDED"
    assert done["faults"] == 3


def test_pause_and_unpause(
    globus: GlobusClient, daemon: DaemonProcess, sim: Simulator, user: Credentials
) -> None:
    task_id = _under_way(globus, sim, user, "/~/slow.bin")
    assert sim.pause_task(task_id, message="storage maintenance until 17:00")
    seen = _notifications(globus, task_id, lambda e: e["kind"] == "task_needs_attention")
    paused = seen[-1]["data"]
    assert paused["status"] == "ACTIVE" and paused["is_paused"] is True
    assert paused["needs_attention"] == "paused"
    assert paused["attention_message"] == "storage maintenance until 17:00"
    code, out, _ = _cli(daemon, globus.session_id or "", "task", "show", task_id)
    assert code == 0 and "paused: storage maintenance until 17:00" in out
    assert sim.unpause_task(task_id)
    seen = _notifications(globus, task_id, lambda e: e["kind"] == "task_recovered")
    assert seen[-1]["data"]["is_paused"] is False
    assert globus.get_task(task_id)["needs_attention"] is None
    globus.cancel_task(task_id)


def test_credential_expiry_and_renewal(
    globus: GlobusClient, daemon: DaemonProcess, sim: Simulator, user: Credentials
) -> None:
    task_id = _under_way(globus, sim, user, "/~/slow2.bin")
    assert sim.expire_credential(task_id)
    row = _row(globus, task_id, lambda r: r["needs_attention"] == "inactive")
    assert row["status"] == "INACTIVE"
    assert "credential" in row["attention_message"]
    code, out, _ = _cli(daemon, globus.session_id or "", "task", "show", task_id)
    assert code == 0 and "INACTIVE: an endpoint credential of this task expired" in out
    with pytest.raises(TaskNeedsAttention) as stopped:
        globus.task_wait(task_id, timeout=30 * UNIT, stop_on_attention=True)
    assert "renew it" in str(stopped.value)
    assert sim.renew_credential(task_id)
    row = _row(globus, task_id, lambda r: r["needs_attention"] is None)
    assert row["status"] == "ACTIVE"
    assert "task_recovered" in _kinds(globus, task_id)
    globus.cancel_task(task_id)


def test_deadline_expiry_fails_the_task(globus: GlobusClient, sim: Simulator) -> None:
    task_id = _submit(globus, "/~/absent.txt", "/~/absent.txt")
    _row(globus, task_id, lambda r: r["faults"] >= 1)
    sim.advance_clock(DAY + 60)
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "FAILED"
    assert done["fatal_error"]["code"] == "EXPIRED"


def test_skip_source_errors_finishes_without_trouble(
    globus: GlobusClient, sim: Simulator, user: Credentials
) -> None:
    for name in ("a.txt", "b.txt"):
        _file(sim, user, f"/~/some/{name}", 10)
    sim.inject_error("PERMISSION_DENIED", path="/~/some/b.txt")
    task_id = _submit(globus, "/~/some/", "/~/out/", recursive=True, skip_source_errors=True)
    done = globus.task_wait(task_id, timeout=30 * UNIT)
    assert done["status"] == "SUCCEEDED"
    assert done["files_transferred"] == 1
    assert done["faults"] == 0
    assert "task_needs_attention" not in _kinds(globus, task_id)


def test_a_small_task_id_cap_shrinks_the_poll_batch(tmp_path: Path) -> None:
    """11 tasks open at once, Globus takes 4 ids per filter: without a smaller batch every
    sweep would be refused and no task would ever be seen ending."""
    with Simulator(
        root=tmp_path / "sim",
        bytes_per_second=1e9,
        min_task_seconds=2.0,
        max_active=20,
        rate_limit=None,
        max_filter_task_ids=4,
    ) as capped:
        process = start_daemon(tmp_path / "state", capped)
        try:
            creds = capped.add_user("alice")
            with GlobusClient(process.url, process.token) as client:
                client.register_session(access_token=creds.access_token)
                ids = [
                    _submit(client, "/home/share/godata/file1.txt", f"/~/f{i}.txt")
                    for i in range(11)
                ]
                for task_id in ids:
                    assert client.task_wait(task_id, timeout=30 * UNIT)["status"] == "SUCCEEDED"
        finally:
            process.stop()
    assert "filter refused as too long" in process.log_path.read_text()
