"""The orbit-globus command line: every command, text and JSON output, and the exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from client_helpers import DST, GODATA, SRC, Cli

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT


def test_endpoints_text_and_json(cli: Cli) -> None:
    code, out, _ = cli.run("endpoints")
    assert code == 0
    assert out.splitlines()[0].split(" | ")[:2] == ["Name", "Version"]
    assert "globus" in out
    assert cli.json("endpoints")["endpoints"][0]["plugins"] == ["globus"]


def test_transfer_wait_show_list_history(cli: Cli, sim: Simulator, user: Credentials) -> None:
    code, out, err = cli.run(
        "transfer",
        SRC,
        "local",
        GODATA,
        "/~/cli/",
        "-r",
        "--label",
        "cli",
        "--wait",
        "--timeout",
        "30",
    )
    assert code == 0, err
    assert "SUCCEEDED" in out
    task_id = out.split()[2]  # "task_id : <id>" is the first line
    assert (sim.local_path(DST, "/~/cli/", username=user.username) / "file1.txt").exists()
    shown = cli.json("task", "show", task_id)
    assert shown["status"] == "SUCCEEDED" and shown["label"] == "cli"
    code, out, _ = cli.run("task", "show", task_id)
    assert code == 0 and "files_transferred" in out
    listed = cli.json("task", "list")["tasks"]
    assert [t["task_id"] for t in listed] == [task_id]
    code, out, _ = cli.run("task", "list")
    assert task_id in out and "Status" in out
    assert cli.json("task", "wait", task_id)["status"] == "SUCCEEDED"
    events = cli.json("history", "--task", task_id)["events"]
    assert events[-1]["data"]["status"] == "SUCCEEDED"
    code, out, _ = cli.run("history", "--limit", "1")
    assert code == 0 and "(more: --after" in out
    rows = cli.json("history", "--view", "tasks")["tasks"]
    assert [r["task_id"] for r in rows] == [task_id]


def test_files_commands_and_delete(cli: Cli) -> None:
    assert cli.json("mkdir", "local", "/~/files/")["code"] == "DirectoryCreated"
    code, _, err = cli.run(
        "transfer",
        SRC,
        "local",
        "--item",
        GODATA,
        "/~/files/in/",
        "-r",
        "--wait",
        "--timeout",
        "30",
    )
    assert code == 0, err
    code, out, _ = cli.run("rename", "local", "/~/files/in/file3.txt", "/~/files/in/third.txt")
    assert code == 0 and "FileRenamed" in out
    code, out, _ = cli.run("ls", "local", "/~/files/in/")
    assert out.split() == ["file1.txt", "file2.txt", "third.txt"]
    code, out, _ = cli.run("ls", "-l", "local", "/~/files/")
    assert "in/" not in out and "dir" in out and "Filename" in out
    code, out, err = cli.run("delete", "local", "/~/files/in/", "-r", "--wait")
    assert code == 0, err
    assert "SUCCEEDED" in out
    assert cli.json("ls", "local", "/~/files/")["DATA"] == []


def test_endpoint_search_and_show(cli: Cli) -> None:
    found = cli.json("endpoint", "search", "Tutorial")["endpoints"]
    assert {SRC, DST} <= {e["id"] for e in found}
    code, out, _ = cli.run("endpoint", "show", SRC)
    assert code == 0 and SRC in out


def test_exit_codes(cli: Cli, sim: Simulator) -> None:
    # 2: usage
    code, _, err = cli.run("transfer", SRC)
    assert code == 2 and "destination" in err
    assert cli.run("no-such-command")[0] == 2
    code, _, err = cli.run("transfer", SRC, "local")
    assert code == 2 and "nothing to transfer" in err
    # 3: the daemon refused the request
    code, _, err = cli.run("task", "show", str(uuid.uuid4()))
    assert code == 3 and "404" in err
    # 1: the task FAILED; 5: still running when the wait timed out
    big = ["transfer", SRC, "local", "/home/share/big/", "/~/big/", "-r"]
    code, out, err = cli.run(*big)
    assert code == 0, err
    task_id = out.split()[2]
    assert cli.run("task", "wait", task_id, "--timeout", "0.3")[0] == 5
    code, out, _ = cli.run("task", "cancel", task_id)
    assert code == 0 and "Canceled" in out
    code, out, _ = cli.run("task", "wait", task_id, "--timeout", "30")
    assert code == 1 and "FAILED" in out
    # 4: nobody listens there
    code, _, err = cli.run("--url", "http://127.0.0.1:9", "endpoints")
    assert code == 4 and "unreachable" in err


def test_session_from_environment_and_unregister(
    monkeypatch: pytest.MonkeyPatch, daemon: DaemonProcess, user: Credentials
) -> None:
    runner = Cli(monkeypatch, daemon, user)
    # No --session: the command registers one from GLOBUS_ACCESS_TOKEN and says how to reuse it.
    code, out, err = runner.run("task", "list")
    assert code == 0, err
    session_id = err.split("RADICAL_ORBIT_SESSION=")[1].strip()
    monkeypatch.setenv("RADICAL_ORBIT_SESSION", session_id)
    assert runner.json("task", "list") == {"tasks": []}
    code, out, _ = runner.run("session", "unregister")
    assert code == 0 and session_id in out
    assert runner.run("task", "list")[0] == 3  # the session is gone
    monkeypatch.delenv("RADICAL_ORBIT_SESSION")
    monkeypatch.delenv("GLOBUS_ACCESS_TOKEN")
    code, _, err = runner.run("task", "list")
    assert code == 2 and "--session" in err
    assert user.access_token not in err


def test_watch_streams_progress_until_done(cli: Cli) -> None:
    sub = cli.json("transfer", SRC, "local", GODATA, "/~/watched/", "-r", "--label", "watched")
    code, out, err = cli.run("watch", "--after", "0", "--until-done", "--timeout", "30")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(sub["task_id"][:8]) and "ACTIVE" in lines[0]
    assert "SUCCEEDED" in lines[-1] and "3 files" in lines[-1] and "####" in lines[-1]
    code, out, _ = cli.run(
        "--format",
        "json",
        "watch",
        "--task",
        sub["task_id"],
        "--after",
        "0",
        "--until-done",
        "--timeout",
        "30",
    )
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds[0] == "task_submitted" and kinds[-1] == "task_state_changed"


def test_console_script_runs_as_a_process(cli: Cli, daemon: DaemonProcess) -> None:
    exe = Path(sys.executable).parent / "orbit-globus"
    env = {**os.environ, "RADICAL_ORBIT_URL": daemon.url, "RADICAL_ORBIT_TOKEN": daemon.token}
    done = subprocess.run(
        [str(exe), "--format", "json", "endpoints"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["endpoints"][0]["plugins"] == ["globus"]
    usage = subprocess.run(
        [str(exe), "task"], env=env, capture_output=True, text=True, timeout=60 * UNIT
    )
    assert usage.returncode == 2
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60 * UNIT)
    helped_text = " ".join(helped.stdout.split())
    assert "4 the daemon is unreachable" in helped_text
    # Stop-on-attention has its own code, apart from 6 (authentication or consent).
    assert "6 authentication or consent" in helped_text
    assert "7 the task needs attention (--stop-on-attention)" in helped_text


def test_submission_id_makes_a_submit_safe_to_run_twice(cli: Cli, sim: Simulator) -> None:
    """As globus-cli: `task generate-submission-id`, then the same --submission-id twice
    gives the first task; a submission id works wherever a task id does."""
    code, out, err = cli.run("task", "generate-submission-id")
    assert code == 0, err
    sub = out.strip()
    assert str(uuid.UUID(sub)) == sub
    argv = ("delete", DST, "/~/cli-twice", "--label", "twice", "--submission-id", sub)
    first = cli.json(*argv)
    again = cli.json(*argv)
    assert first["submission_id"] == again["submission_id"] == sub
    assert again["task_id"] == first["task_id"]
    assert again["code"] == "Duplicate"
    assert [t["label"] for t in sim.tasks()].count("twice") == 1
    assert cli.json("task", "show", sub)["task_id"] == first["task_id"]
    code, _, err = cli.run("delete", DST, "/~/other", "--submission-id", sub)
    assert code == 3 and "SubmissionIdConflict" in err
