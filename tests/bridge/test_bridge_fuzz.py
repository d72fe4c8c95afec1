"""schemathesis over the bridge's own HTTP surface, from its OpenAPI document.

Cases go over real HTTP to the bridge subprocess, which relays them over the link to a real
endpoint daemon (and that one to the simulator). Most cases aim at the enrolled endpoint and
at real routes of its API, so they cross the whole relay; the rest exercise unknown
endpoints and junk paths. Checks: no 5xx, ever; every rejection a 4xx with our error code and
a message that says what to fix (the same rule as tests/fuzz holds the daemon to).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from bridge_helpers import DST, online, start_endpoint, wait_until
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error

from http_api import GENERIC_CODES, clear_rejection
from radical.orbit.bridge.launcher import BridgeProcess
from radical.orbit.simulator import Simulator

pytestmark = pytest.mark.timeout(180)

# Fewer than tests/fuzz per route: every case crosses two processes and a link.
EXAMPLES = int(os.environ.get("ORBIT_FUZZ_EXAMPLES", "15"))
ROUTES = (
    ("GET", "/endpoints"),
    *((method, "/endpoints/{name}/{path}") for method in ("GET", "POST", "PUT", "PATCH", "DELETE")),
    ("POST", "/dashboard/api/link"),  # the dashboard's one route for clients (`orbit-globus ui`)
)


@dataclass
class Target:
    bridge: BridgeProcess
    headers: dict[str, str]
    schema: Any
    session_id: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with Simulator(root=tmp_path_factory.mktemp("sim"), rate_limit=None) as sim:
        bridge = BridgeProcess(state_dir=tmp_path_factory.mktemp("bridge"))
        enrollment = bridge.add_endpoint("fuzzed")
        token = bridge.add_client("fuzzer")
        bridge.start()
        daemon = start_endpoint(sim, bridge, tmp_path_factory.mktemp("ep"), "fuzzed", enrollment)
        try:
            wait_until(lambda: online(bridge.url, token)["fuzzed"], what="endpoint online")
            headers = {"Authorization": f"Bearer {token}"}
            doc = httpx.get(bridge.url + "/openapi.json", headers=headers, timeout=30)
            assert doc.status_code == 200, doc.text
            schema = schemathesis.openapi.from_dict(doc.json())
            creds = sim.add_user("fuzzer")
            registered = httpx.post(
                bridge.url + "/endpoints/fuzzed/globus/sessions",
                json={"access_token": creds.access_token, "local_collection": DST},
                headers=headers,
                timeout=30,
            )
            assert registered.status_code == 200, registered.text
            yield Target(bridge, headers, schema, registered.json()["session_id"])
        finally:
            daemon.stop()
            bridge.stop()


def test_every_route_is_fuzzed(target: Target) -> None:
    found = {(r.ok().method.upper(), r.ok().path) for r in target.schema.get_all_operations()}
    assert found == set(ROUTES)


# The bridge's routes take path segments only (free text: any string is "valid"); invalid
# bodies are the endpoint's to refuse, fuzzed below through the relay.
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_bridge_route_survives_fuzzing(target: Target, method: str, path: str) -> None:
    operation = target.schema[path][method]
    mode = GenerationMode.POSITIVE
    real_paths = [
        "globus/history",
        f"globus/sessions/{target.session_id}/tasks",
        f"globus/sessions/{target.session_id}/ls",
        f"globus/sessions/{target.session_id}/mkdir",
        "endpoints",
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(mode), pick=st.integers(0, 3), real=st.sampled_from(real_paths)
    )
    def run(case: Case, pick: int, real: str) -> None:
        params = case.path_parameters
        if params is not None and "name" in params and pick > 0:
            params["name"] = "fuzzed"
            if pick > 1:
                params["path"] = real
        response = case.call(base_url=target.bridge.url, headers=target.headers, timeout=60)
        case.validate_response(
            response,
            checks=[not_a_server_error],
            additional_checks=[clear_rejection],
            headers=target.headers,
        )

    run()
    assert target.bridge.running


def test_junk_bodies_through_the_relay_are_refused_clearly(target: Target) -> None:
    routes = [
        "globus/sessions",
        f"globus/sessions/{target.session_id}/transfers",
        f"globus/sessions/{target.session_id}/mkdir",
        f"globus/sessions/{target.session_id}/tasks/x/wait",
    ]

    @settings(max_examples=EXAMPLES * 4, deadline=None, database=None)
    @given(
        route=st.sampled_from(routes),
        body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
        content_type=st.sampled_from(["application/json", "text/plain", "x/y; charset=zz"]),
    )
    def run(route: str, body: bytes, content_type: str) -> None:
        answer = httpx.post(
            f"{target.bridge.url}/endpoints/fuzzed/{route}",
            content=body,
            headers={**target.headers, "Content-Type": content_type},
            timeout=60,
        )
        assert answer.status_code < 500, answer.text
        if answer.status_code >= 400:
            document = answer.json()
            assert document.get("error") not in GENERIC_CODES, answer.text

    run()
    assert target.bridge.running
