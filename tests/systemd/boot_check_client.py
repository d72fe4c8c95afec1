"""API calls for boot_check.sh, run inside the container with the distribution's python3.

    client.py endpoints [TOKEN]   # GET /endpoints (default token from the state folder)
    client.py session             # register a new simulator user, list tutorial endpoints

Exits non-zero with the answer on stderr when a call fails. Standard library only.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

from timing import UNIT

API = "http://127.0.0.1:8421"
SIM = "http://127.0.0.1:8500"
STATE = "/var/lib/private/orbit-globus"


def call(method: str, url: str, *, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310
    try:
        # Fixed http://127.0.0.1 URLs only (API and SIM above).
        with urllib.request.urlopen(request, timeout=30 * UNIT) as answer:  # noqa: S310
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        sys.exit(f"{method} {url}: {exc.code} {exc.read().decode()[:500]}")


def main() -> None:
    with open(f"{STATE}/token") as fh:
        default = fh.read().strip()
    if sys.argv[1] == "endpoints":
        token = sys.argv[2] if len(sys.argv) > 2 else default
        answer = call("GET", f"{API}/endpoints", token=token)
        assert answer["endpoints"], answer
    elif sys.argv[1] == "session":
        # A fresh simulator user: the control route hands out its credentials.
        user = call("POST", f"{SIM}/_sim/users", body={"name": "boot-check"})
        session_id = call(
            "POST",
            f"{API}/globus/sessions",
            token=default,
            body={"access_token": user["access_token"]},
        )["session_id"]
        found = call(
            "GET",
            f"{API}/globus/sessions/{session_id}/endpoint_search?filter_text=tutorial&limit=5",
            token=default,
        )
        assert found["endpoints"], found
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
