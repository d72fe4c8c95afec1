"""The README's examples, run as written against the simulator and a real daemon.

Every fenced ``python`` and ``bash`` block of README.md is either run (after putting real
values where the README writes ``...``, a placeholder UUID or a path of the reader's) or
named below with the reason it cannot run here, so a new example cannot go untested
silently.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import DST, GODATA, SRC

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)

# A line each block contains -> why it is not run here.
NOT_RUN = {
    "python3 dev.py demo": "the demo and the whole suite (test_examples.py runs the demo)",
    "orbit-globus-endpoint serve": "starts a daemon; the test's daemon stands in for it",
    "examples/example_globus.py": "real Globus (test_examples.py runs the example)",
    "python3 dev.py check": "the development commands themselves",
    "--stop-on-attention": "needs a task in trouble; tests/e2e/test_e2e_trouble.py runs these",
    "orbit-globus ui": "opens a browser; tests/dashboard signs in through the same link",
}


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def runnable() -> list[tuple[str, str]]:
    return [(lang, text) for lang, text in blocks() if not any(k in text for k in NOT_RUN)]


def test_every_readme_block_is_run_or_named_with_a_reason() -> None:
    found = blocks()
    skipped = [text for _, text in found if any(k in text for k in NOT_RUN)]
    assert len(skipped) + len(runnable()) == len(found)
    # The Python client and the command line examples are run.
    assert {lang for lang, _ in runnable()} == {"python", "bash"}


def environment(daemon: DaemonProcess, tmp_path: Path) -> dict[str, str]:
    """A clean user environment: the daemon found through its state folder, as the README
    says, the venv's commands on PATH, and the collections as $SRC and $DST."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GLOBUS_", "RADICAL_ORBIT_")) or k.startswith("GLOBUS_SDK_")
    }
    env["RADICAL_ORBIT_STATE_DIR"] = str(daemon.state_dir)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["SRC"] = SRC
    env["DST"] = DST
    env["HOME"] = str(tmp_path)
    return env


@pytest.mark.parametrize("index", range(len(runnable())))
def test_readme_example_runs(
    index: int, daemon: DaemonProcess, user: Credentials, tmp_path: Path
) -> None:
    lang, text = runnable()[index]
    if lang == "python":
        code = (
            text.replace("access_token='...'", f"access_token={user.access_token!r}")
            .replace("local_collection='...'", f"local_collection={DST!r}")
            .replace("'<src-uuid>'", repr(SRC))
            .replace("'/data/in/'", repr(GODATA))
        )
        argv = [sys.executable, "-c", code]
    else:
        script = text.replace(
            "GLOBUS_REFRESH_TOKEN=... GLOBUS_CLIENT_ID=...",
            f"GLOBUS_REFRESH_TOKEN={user.refresh_token} GLOBUS_CLIENT_ID={user.client_id}",
        ).replace("/data/in/", GODATA)
        assert "..." not in script.split("#")[0]
        argv = ["bash", "-c", "set -o pipefail\n" + script]
    # Output to a file and the process in a group of its own: a command of the script left
    # hanging must fail the test, not hold a pipe open past the timeout.
    log = tmp_path / "output.txt"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            argv,
            env=environment(daemon, tmp_path),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=120 * UNIT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"the README example did not finish:\n{log.read_text()}")
    output = log.read_text()
    assert returncode == 0, output
    assert "SUCCEEDED" in output
    if lang == "bash":
        assert "\n0\n" in output  # echo $? after task wait
        assert (tmp_path / "history.csv").read_text().startswith("seq,time,kind")
        assert "Credential" in output  # session list
