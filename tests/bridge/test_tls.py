"""TLS: the bridge serves HTTPS/WSS with a certificate from a local CA (trustme); endpoints
and clients verify it with a CA bundle, and a client that does not trust the CA is refused.
Plain HTTP is refused anywhere but loopback."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from bridge_helpers import DST, SRC, UNIT, godata_items, online, start_endpoint, wait_until

from radical.orbit import BridgeClient
from radical.orbit.bridge.config import BridgeConfig
from radical.orbit.bridge.errors import ConfigError
from radical.orbit.bridge.launcher import BridgeProcess
from radical.orbit.client.errors import DaemonUnavailable
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    paths["cert"].write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


@pytest.fixture(scope="module")
def tls_site(
    pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeProcess, DaemonProcess, str, Simulator]]:
    with Simulator(root=tmp_path_factory.mktemp("sim"), rate_limit=None) as sim:
        bridge = BridgeProcess(
            state_dir=tmp_path_factory.mktemp("bridge"), tls_cert=pki["cert"], tls_key=pki["key"]
        )
        enrollment = bridge.add_endpoint("secure")
        token = bridge.add_client("alice")
        bridge.start()
        assert bridge.url.startswith("https://")
        daemon = start_endpoint(
            sim,
            bridge,
            tmp_path_factory.mktemp("secure"),
            "secure",
            enrollment,
            ca_bundle=str(pki["ca"]),
        )
        try:
            wait_until(
                lambda: online(bridge.url, token, verify=str(pki["ca"]))["secure"],
                what="the endpoint linked over TLS",
            )
            yield bridge, daemon, token, sim
        finally:
            daemon.stop()
            bridge.stop()


def test_clients_and_endpoints_verify_the_bridge_certificate(
    tls_site: tuple[BridgeProcess, DaemonProcess, str, Simulator], pki: dict[str, Path]
) -> None:
    bridge, _daemon, token, sim = tls_site
    user = sim.add_user(f"u{uuid.uuid4().hex[:10]}")
    with BridgeClient(bridge.url, token, ca_bundle=str(pki["ca"])) as bc:
        assert bc.list_endpoints() == ["secure"]
        globus = bc.get_endpoint_client("secure").get_plugin("globus")
        globus.register_session(access_token=user.access_token, local_collection=DST)
        sub = globus.submit_transfer(SRC, "local", godata_items())
        # The stream (wss://) carries the wait.
        assert globus.task_wait(sub["task_id"], timeout=30)["status"] == "SUCCEEDED"
        with globus.events(since=0) as stream:
            assert stream.get()["kind"] == "session_opened"


def test_a_client_that_does_not_trust_the_ca_is_refused(
    tls_site: tuple[BridgeProcess, DaemonProcess, str, Simulator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge, _daemon, token, _sim = tls_site
    monkeypatch.delenv("RADICAL_ORBIT_CA_BUNDLE", raising=False)
    with (
        BridgeClient(bridge.url, token) as bc,
        pytest.raises(DaemonUnavailable, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        bc.list_endpoints()


def test_an_endpoint_that_does_not_trust_the_ca_stays_offline(
    tls_site: tuple[BridgeProcess, DaemonProcess, str, Simulator],
    pki: dict[str, Path],
    tmp_path: Path,
) -> None:
    bridge, _daemon, token, sim = tls_site
    enrollment = bridge.add_endpoint("untrusting")
    daemon = start_endpoint(sim, bridge, tmp_path / "untrusting", "untrusting", enrollment)
    try:
        time.sleep(3 * UNIT)  # several reconnect attempts
        assert online(bridge.url, token, verify=str(pki["ca"])) == {
            "secure": True,
            "untrusting": False,
        }
        assert daemon.running  # it keeps trying, and keeps serving its local clients
        answer = httpx.get(daemon.url + "/endpoints", headers=daemon.headers, timeout=10)
        assert answer.status_code == 200
    finally:
        daemon.stop()
        bridge.registry.remove_endpoint("untrusting")


def test_plain_http_only_on_loopback(tmp_path: Path, pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="plain HTTP"):
        BridgeConfig(state_dir=tmp_path, host="0.0.0.0")
    BridgeConfig(state_dir=tmp_path, host="::1")
    BridgeConfig(state_dir=tmp_path, host="0.0.0.0", tls_cert=pki["cert"], tls_key=pki["key"])
    cli = [sys.executable, "-m", "radical.orbit.bridge", "--state-dir", str(tmp_path)]
    refused = subprocess.run(
        [*cli, "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "refusing plain HTTP on 0.0.0.0" in refused.stderr
