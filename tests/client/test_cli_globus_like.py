"""The command line's globus-cli-like behaviour: SRC:PATH, --batch, --jmespath, checksums on by
default, ISO local times, exports, waiting for a label, errors and exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from client_helpers import DST, GODATA, SRC, Cli

from radical.orbit.client.cli import main
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials

ISO_LOCAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


def submitted_request(cli: Cli, task_id: str) -> dict[str, object]:
    submission = cli.json("task", "show", task_id)["submission_id"]
    events = cli.json("history", "--limit", "1000")["events"]
    return next(
        e["data"]["request"]
        for e in events
        if e["kind"] == "submit_requested" and e["data"]["submission_id"] == submission
    )


def test_src_path_arguments_wait_prints_the_final_task_and_checksums_default_on(
    cli: Cli, sim: Simulator, user: Credentials
) -> None:
    final = cli.json("transfer", f"{SRC}:{GODATA}", "local:/~/colon/", "-r", "--wait")
    assert final["status"] == "SUCCEEDED" and final["files_transferred"] == 3
    assert (sim.local_path(DST, "/~/colon/", username=user.username) / "file2.txt").exists()
    assert submitted_request(cli, final["task_id"])["verify_checksum"] is True
    off = cli.json("transfer", SRC, "local", GODATA, "/~/nock/", "-r", "--no-verify-checksum")
    assert submitted_request(cli, off["task_id"])["verify_checksum"] is False
    code, _, err = cli.run("transfer", f"{SRC}:{GODATA}", "local", "/~/x/")
    assert code == 2 and "not a mix" in err


def test_batch_items_from_a_file_and_from_stdin(
    cli: Cli, sim: Simulator, user: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = tmp_path / "items.txt"
    batch.write_text(
        "# one pair per line, as globus-cli reads them\n"
        f"{GODATA}file1.txt /~/batch/one.txt\n"
        f"'{GODATA}' /~/batch/all/ --recursive\n"
    )
    final = cli.json("transfer", SRC, "local", "--batch", str(batch), "--wait")
    assert final["status"] == "SUCCEEDED"
    home = sim.local_path(DST, "/~/batch/", username=user.username)
    assert (home / "one.txt").exists() and (home / "all" / "file3.txt").exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("/~/batch/one.txt\n"))
    deleted = cli.json("delete", "local", "--batch", "-", "--wait")
    assert deleted["status"] == "SUCCEEDED" and not (home / "one.txt").exists()
    batch.write_text("only-one-path\n")
    code, _, err = cli.run("transfer", SRC, "local", "--batch", str(batch))
    assert code == 2 and "batch line 1" in err


def test_history_label_glob_for_events_local_times_and_exports(cli: Cli) -> None:
    for name in ("run-1", "run-2", "other"):
        cli.json("transfer", SRC, "local", GODATA, f"/~/{name}/", "-r", "--label", name, "--wait")
    code, out, err = cli.run("history", "--label", "run-*")
    assert code == 0, err
    rows = out.splitlines()[2:]
    assert rows and all(ISO_LOCAL.search(row) for row in rows)
    assert "SUCCEEDED" in out
    events = cli.json("history", "--label", "run-*", "--limit", "1000")["events"]
    assert {e["data"]["label"] for e in events} == {"run-1", "run-2"}
    code, out, _ = cli.run("task", "list")
    assert code == 0 and ISO_LOCAL.search(out)
    # Exports stream the whole range, however many pages.
    code, out, _ = cli.run("history", "-F", "jsonl", "--label", "run-*")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [e["seq"] for e in events]
    code, out, _ = cli.run("history", "-F", "csv", "--view", "tasks")
    table = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["label"] for r in table) == ["other", "run-1", "run-2"]
    assert {r["status"] for r in table} == {"SUCCEEDED"}
    # --since is a time everywhere: the future holds nothing yet.
    tomorrow = datetime.fromtimestamp(time.time() + 86400).isoformat(timespec="seconds")
    assert cli.json("history", "--since", tomorrow)["events"] == []
    code, _, err = cli.run("history", "--since", "yesterday-ish")
    assert code == 2 and "ISO 8601" in err


def test_task_wait_for_a_whole_label(cli: Cli) -> None:
    subs = [
        cli.json("transfer", SRC, "local", GODATA, f"/~/b{i}/", "-r", "--label", f"batch-{i}")
        for i in range(3)
    ]
    finals = cli.json("task", "wait", "--label", "batch-*", "--timeout", "60")["tasks"]
    assert sorted(t["task_id"] for t in finals) == sorted(s["task_id"] for s in subs)
    assert {t["status"] for t in finals} == {"SUCCEEDED"}
    code, _, err = cli.run("task", "wait", "--label", "nothing-*")
    assert code == 2 and "no task" in err
    assert cli.run("task", "wait")[0] == 2


def test_jmespath_session_list_and_endpoint_help(cli: Cli) -> None:
    code, out, err = cli.run("--jmespath", "endpoints[0].plugins", "endpoints")
    assert code == 0, err
    assert json.loads(out) == ["globus"]
    sessions = cli.json("session", "list")["sessions"]
    mine = next(s for s in sessions if s["session_id"] == cli.session)
    assert mine["credential"] == "ok" and set(mine["tasks"]) >= {"ACTIVE", "SUCCEEDED"}
    code, out, _ = cli.run("session", "list")
    assert code == 0 and "Credential" in out and cli.session is not None and cli.session in out
    code, _, err = cli.run("--jq", "endpoints[", "endpoints")
    assert code == 2 and "jmespath" in err.lower()
    help_out = io.StringIO()
    assert main(["endpoint", "--help"], out=help_out, err=io.StringIO()) == 0
    assert "search" in help_out.getvalue() and "show" in help_out.getvalue()


def test_exit_codes_tell_usage_failure_auth_and_daemon_apart_with_json_errors(
    cli: Cli, daemon: DaemonProcess, user: Credentials
) -> None:
    def json_error(*argv: str) -> tuple[int, dict[str, object]]:
        code, _, err = cli.run("-F", "json", *argv)
        return code, json.loads(err.strip().splitlines()[-1])

    code, error = json_error("transfer", SRC, "local")
    assert (code, error["exit_code"]) == (2, 2) and "nothing to transfer" in str(error["message"])
    code, error = json_error("task", "show", "no-such-task")
    assert code == 3 and error["status"] == 404 and error["error"] == "NotFound"
    code, error = json_error("--token", "wrong-token-0123456789", "endpoints")
    assert code == 6 and error["error"] == "Unauthorized"
    code, error = json_error("--url", "http://127.0.0.1:9", "endpoints")
    assert code == 4 and error["error"] == "DaemonUnavailable"
    sub = cli.json("transfer", SRC, "local", "/home/share/big/", "/~/big/", "-r")
    cli.run("task", "cancel", sub["task_id"])
    code, out, _ = cli.run("-F", "json", "task", "wait", sub["task_id"], "--timeout", "60")
    assert code == 1 and json.loads(out)["status"] == "FAILED"
    code, _, err = cli.run("task", "show", "no-such-task")
    assert "{" not in err and "404" in err  # text mode stays text
    assert user.access_token not in err
