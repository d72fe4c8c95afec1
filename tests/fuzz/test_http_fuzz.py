"""Property-based fuzzing of every HTTP route of the real daemon, from its OpenAPI document.

schemathesis turns the daemon's own ``/openapi.json`` (fetched with the bearer token, as a
client would) into hypothesis strategies: positive cases (valid per the schema) and negative
ones (a field of the wrong type, out of range, missing, extra, undecodable bodies...). Each
case is sent over real HTTP to the daemon subprocess, which talks to the simulator. Checks:

- no 5xx, ever (schemathesis ``not_a_server_error``);
- answers conform to the documented content type and schema;
- negative data is rejected (schemathesis ``negative_data_rejection``);
- every rejection is a 4xx whose JSON body has an ``error`` code and a ``message`` that says
  what to fix (our ``clear_rejection``).

Most cases aim at a real session (and a real task) of the token, so the generated body and
query reach the route's own validation instead of stopping at "no such session".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fuzz_support import EXAMPLES, assert_alive
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)

from http_api import ROUTES, clear_rejection
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2, Simulator
from timing import UNIT

CHECKS = [
    not_a_server_error,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Invalid data must be refused with one of these (413: a generated body above the 4 MB limit).
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 413, 422]}}}
)


@dataclass
class Target:
    """What the cases aim at: the daemon, a session of its token and one finished task."""

    daemon: DaemonProcess
    sim: Simulator
    schema: Any
    access_token: str
    session_id: str
    task_id: str

    def fresh_session(self) -> str:
        answer = httpx.post(
            self.daemon.url + "/globus/sessions",
            json={"access_token": self.access_token},
            headers=self.daemon.headers,
            timeout=30 * UNIT,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["session_id"])


@pytest.fixture(scope="module")
def target(fuzz_daemon: DaemonProcess, fuzz_sim: Simulator) -> Iterator[Target]:
    doc = httpx.get(
        fuzz_daemon.url + "/openapi.json", headers=fuzz_daemon.headers, timeout=30 * UNIT
    )
    assert doc.status_code == 200, doc.text
    schema = schemathesis.openapi.from_dict(doc.json(), config=CONFIG)
    creds = fuzz_sim.add_user("fuzzer")
    with httpx.Client(
        base_url=fuzz_daemon.url, headers=fuzz_daemon.headers, timeout=30 * UNIT
    ) as http:
        session_id = http.post(
            "/globus/sessions", json={"access_token": creds.access_token}
        ).json()["session_id"]
        item = {"source": "/home/share/godata/file1.txt", "destination": "/~/fuzz.txt"}
        submitted = http.post(
            f"/globus/sessions/{session_id}/transfers",
            json={
                "source": TUTORIAL_COLLECTION_1,
                "destination": TUTORIAL_COLLECTION_2,
                "items": [item],
            },
        )
        assert submitted.status_code == 200, submitted.text
        task_id = submitted.json()["task_id"]
        # A finished task: a fuzzed wait on it answers at once instead of blocking.
        done = http.post(
            f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 30}
        )
        assert done.json()["done"], done.text
    yield Target(fuzz_daemon, fuzz_sim, schema, creds.access_token, session_id, task_id)


def _aim(case: Case, target: Target, pick: int) -> None:
    """Point most cases at the real session/task; ``pick == 0`` keeps the generated ids,
    which exercises the "no such session/task" paths."""
    if pick == 0:
        return
    params = case.path_parameters
    if params is None:
        return
    if "session_id" in params:
        # Unregistering the shared session would turn every later case into a 404.
        params["session_id"] = (
            target.fresh_session() if case.method == "DELETE" else target.session_id
        )
    if "task_id" in params and pick >= 2:
        params["task_id"] = target.task_id


def _has_checked_input(operation: Any) -> bool:
    params = operation.iter_parameters()
    return len(operation.body) > 0 or any(p.location.value != "path" for p in params)


def test_every_route_is_fuzzed(target: Target) -> None:
    found = set()
    for result in target.schema.get_all_operations():
        operation = result.ok()
        found.add((operation.method.upper(), operation.path))
    assert found == set(ROUTES)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_survives_fuzzing(
    target: Target, method: str, path: str, mode: GenerationMode
) -> None:
    operation = target.schema[path][method]
    if mode is GenerationMode.NEGATIVE and not _has_checked_input(operation):
        # Path segments are free text (ids): any string is valid, "no such id" is a 404.
        pytest.skip("the route takes no body or query to make invalid")
    seen: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), pick=st.integers(0, 3))
    def run(case: Case, pick: int) -> None:
        _aim(case, target, pick)
        response = case.call(
            base_url=target.daemon.url, headers=target.daemon.headers, timeout=60 * UNIT
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        case.validate_response(
            response,
            checks=CHECKS,
            additional_checks=[clear_rejection],
            headers=target.daemon.headers,
        )

    run()
    assert seen, "no request was sent"
    assert all(status < 500 for status in seen), seen
    assert_alive(target.daemon)


def test_no_token_is_refused_on_every_route(target: Target) -> None:
    """The fuzzers above all carry the token; without it every route is a clear 401."""
    for method, path in ROUTES:
        url = target.daemon.url + path.format(
            session_id=target.session_id, task_id="x", collection="local"
        )
        answer = httpx.request(method, url, json={}, timeout=30 * UNIT)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["error"] == "Unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
