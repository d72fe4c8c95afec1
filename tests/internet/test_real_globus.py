"""The daemon and client against real Globus; skipped unless real credentials are given.

    # a token for the scope urn:globus:auth:scope:transfer.api.globus.org:all
    ORBIT_REAL_GLOBUS_ACCESS_TOKEN=...
    # or ORBIT_REAL_GLOBUS_REFRESH_TOKEN=... ORBIT_REAL_GLOBUS_CLIENT_ID=... (a native app)
    python3 dev.py test tests/internet

It moves the public Globus tutorial files (Tutorial Collection 1 -> 2), as the example does.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radical.orbit import BridgeClient
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from timing import UNIT

ACCESS = os.environ.get("ORBIT_REAL_GLOBUS_ACCESS_TOKEN")
REFRESH = os.environ.get("ORBIT_REAL_GLOBUS_REFRESH_TOKEN")
CLIENT_ID = os.environ.get("ORBIT_REAL_GLOBUS_CLIENT_ID")

pytestmark = [
    pytest.mark.internet,
    pytest.mark.skipif(
        not (ACCESS or (REFRESH and CLIENT_ID)),
        reason="needs ORBIT_REAL_GLOBUS_ACCESS_TOKEN (or _REFRESH_TOKEN + _CLIENT_ID)",
    ),
]

TUTORIAL_1 = "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"
TUTORIAL_2 = "31ce9ba0-176d-45a5-add3-f37d233ba47d"


@pytest.fixture
def real_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    # Without the simulator's service URLs globus-sdk talks to the real Globus services.
    for name in list(os.environ):
        if name.startswith("GLOBUS_SDK_SERVICE_URL_"):
            pytest.fail(f"{name} is set: unset it to test against real Globus")
    with DaemonProcess(state_dir=tmp_path / "endpoint", poll_interval=2.0) as daemon:
        yield daemon


def test_tutorial_transfer_through_the_daemon(real_daemon: DaemonProcess) -> None:
    bc = BridgeClient(url=real_daemon.url, token=real_daemon.token)
    globus = bc.get_endpoint_client(bc.list_endpoints()[0]).get_plugin("globus")
    with globus:
        if ACCESS:
            globus.register_session(access_token=ACCESS)
        else:
            globus.register_session(refresh_token=REFRESH, client_id=CLIENT_ID)
        assert globus.get_endpoint(TUTORIAL_1)["id"] == TUTORIAL_1
        names = {entry["name"] for entry in globus.ls(TUTORIAL_1, "/home/share/godata/")["DATA"]}
        assert {"file1.txt", "file2.txt", "file3.txt"} <= names

        folder = f"/~/orbit-globus-test-{uuid.uuid4().hex[:8]}/"
        sub = globus.submit_transfer(
            TUTORIAL_1,
            TUTORIAL_2,
            [{"source": "/home/share/godata/", "destination": folder, "recursive": True}],
            label="orbit-globus internet test",
        )
        final = globus.task_wait(sub["task_id"], timeout=600 * UNIT, polling_interval=5)
        assert final["status"] == "SUCCEEDED", final
        assert final["files_transferred"] == 3
        listed = {entry["name"] for entry in globus.ls(TUTORIAL_2, folder)["DATA"]}
        assert listed == {"file1.txt", "file2.txt", "file3.txt"}

        cleanup = globus.delete(TUTORIAL_2, [folder], recursive=True, label="orbit-globus cleanup")
        assert globus.task_wait(cleanup["task_id"], timeout=600 * UNIT)["status"] == "SUCCEEDED"
