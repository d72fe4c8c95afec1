"""The daemon's HTTP API as the tests see it: every route, and what a clear refusal is.

Shared by the fuzzers (tests/fuzz, tests/bridge) and the isolation test (tests/e2e).
"""

from __future__ import annotations

from typing import Any

from schemathesis import Case
from schemathesis.core.transport import Response

__all__ = ["GENERIC_CODES", "ROUTES", "clear_rejection"]

# Every route of the HTTP API (DESIGN.md). The schema must list exactly these: a new route
# without a fuzzer fails test_every_route_is_fuzzed (tests/fuzz/test_http_fuzz.py).
ROUTES = (
    ("GET", "/endpoints"),
    ("POST", "/globus/sessions"),
    ("GET", "/globus/sessions"),
    ("GET", "/globus/sessions/{session_id}"),
    ("DELETE", "/globus/sessions/{session_id}"),
    ("POST", "/globus/sessions/{session_id}/transfers"),
    ("POST", "/globus/sessions/{session_id}/deletes"),
    ("GET", "/globus/sessions/{session_id}/submission_id"),
    ("GET", "/globus/sessions/{session_id}/tasks"),
    ("GET", "/globus/sessions/{session_id}/tasks/{task_id}"),
    ("POST", "/globus/sessions/{session_id}/tasks/{task_id}/wait"),
    ("POST", "/globus/sessions/{session_id}/tasks/{task_id}/cancel"),
    ("GET", "/globus/sessions/{session_id}/tasks/{task_id}/events"),
    ("GET", "/globus/sessions/{session_id}/ls"),
    ("POST", "/globus/sessions/{session_id}/mkdir"),
    ("POST", "/globus/sessions/{session_id}/rename"),
    ("GET", "/globus/sessions/{session_id}/endpoint_search"),
    ("GET", "/globus/sessions/{session_id}/endpoints/{collection}"),
    ("GET", "/globus/history"),
    ("POST", "/dashboard/api/link"),
)
# Codes that name no fix: the framework's fallbacks. A rejection must use one of ours.
GENERIC_CODES = frozenset({"HTTPError", "InternalError", ""})


def clear_rejection(_ctx: Any, response: Response, case: Case) -> bool | None:
    """A refusal is a 4xx with ``{"error": <our code>, "message": <what to fix>}``."""
    status = response.status_code
    if status < 400:
        return None
    where = f"{case.method} {case.formatted_path} -> {status}: {response.text[:300]!r}"
    assert status < 500, f"server error: {where}"
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a rejection without a JSON body: {where}") from None
    assert isinstance(body, dict), where
    code, message = body.get("error"), body.get("message")
    assert isinstance(code, str), f"no error code: {where}"
    assert code not in GENERIC_CODES, f"a generic error code: {where}"
    assert isinstance(message, str), f"no message: {where}"
    assert len(message) >= 10, f"a message that says nothing: {where}"
    return None
