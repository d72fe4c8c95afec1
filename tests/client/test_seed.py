"""The seed design's snippet, verbatim apart from the token and the UUIDs."""

from __future__ import annotations

import pytest
from client_helpers import DST, SRC

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT


def test_seed_snippet_runs_against_the_local_daemon(
    sim: Simulator,
    daemon: DaemonProcess,
    user: Credentials,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # BridgeClient() takes no arguments: it must find the daemon from its state folder.
    monkeypatch.delenv("RADICAL_ORBIT_URL", raising=False)
    monkeypatch.delenv("RADICAL_ORBIT_TOKEN", raising=False)
    monkeypatch.setenv("RADICAL_ORBIT_STATE_DIR", str(daemon.state_dir))
    data_in = sim.local_path(SRC, "/data/in/")
    (data_in / "sub").mkdir(parents=True)
    (data_in / "a.txt").write_text("alpha\n")
    (data_in / "sub" / "b.txt").write_text("beta\n")

    # The snippet as the seed design wrote it (only the token and the UUIDs differ).
    # fmt: off
    from radical.orbit import BridgeClient
    bc = BridgeClient()
    ec = bc.get_endpoint_client(bc.list_endpoints()[0])
    globus = ec.get_plugin('globus')
    globus.register_session(access_token=user.access_token, local_collection=DST)
    sub = globus.submit_transfer(source=SRC, destination='local',
              items=[{'source': '/data/in/', 'destination': '/~/out/', 'recursive': True}],
              label='my transfer', sync_level='checksum')
    globus.task_wait(sub['task_id'], timeout=60 * UNIT)
    print(globus.get_task(sub['task_id'])['status'])
    # fmt: on

    # The in-process simulator logs to stdout too; the snippet printed exactly one line.
    printed = [line for line in capsys.readouterr().out.splitlines() if "[" not in line]
    assert printed == ["SUCCEEDED"]
    assert set(sub) >= {"task_id", "submission_id", "status"}
    out = sim.local_path(DST, "/~/out/", username=user.username)
    assert (out / "a.txt").read_text() == "alpha\n"
    assert (out / "sub" / "b.txt").read_text() == "beta\n"
    bc.close()
