from __future__ import annotations

from bridge_helpers import DST, SRC, godata_items
from conftest import Site

from radical.orbit import BridgeClient
from radical.orbit.simulator.auth import Credentials


def test_smoke(site: Site, user: Credentials) -> None:
    bc = BridgeClient(site.bridge.url, site.tokens["alice"])
    assert bc.list_endpoints() == ["site-a", "site-b", "site-c"]
    g = bc.get_endpoint_client("site-b").get_plugin("globus")
    g.register_session(access_token=user.access_token, local_collection=DST)
    sub = g.submit_transfer(SRC, "local", godata_items(), label="x")
    g.task_wait(sub["task_id"], timeout=30)
    assert g.get_task(sub["task_id"])["status"] == "SUCCEEDED"
    events = []
    for ev in g.events(since=0):
        events.append(ev)
        if ev.get("data", {}).get("status") == "SUCCEEDED":
            break
    assert events
    bc.close()
