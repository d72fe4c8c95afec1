#!/usr/bin/env python3
"""The multi-endpoint demo: one bridge, three endpoint daemons, one client, offline.

    python3 dev.py demo --bridge

Starts the Globus simulator, a bridge, and three endpoint daemons (``site-a``, ``site-b``,
``site-c``) that connect out to the bridge with their enrollment tokens. The client knows
only the bridge (``RADICAL_ORBIT_URL`` / ``RADICAL_ORBIT_TOKEN``): it lists the endpoints,
starts one transfer on each, follows all three event streams through the bridge and waits
for every task. Everything lives in a temporary folder; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from demo import offline_globus

from radical.orbit import BridgeClient
from radical.orbit.bridge.launcher import BridgeProcess, linked_endpoints
from radical.orbit.simulator import TUTORIAL_COLLECTION_1, TUTORIAL_COLLECTION_2

SITES = ("site-a", "site-b", "site-c")
BYTES_PER_SECOND = 50.0


def wait_online(bc: BridgeClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        if all(doc["online"] for doc in bc.describe_endpoints()):
            return
        time.sleep(0.1)
    raise SystemExit("the endpoints did not connect to the bridge")


def run_client(access_token: str) -> int:
    """What a user of the bridge writes; it reads RADICAL_ORBIT_URL/_TOKEN like the seed."""
    lock = threading.Lock()

    def show(site: str) -> Any:
        def printer(event: dict[str, Any]) -> None:
            data = event["data"]
            if event["topic"] == "transfer_status":
                with lock:
                    print(
                        f"  [{site}] seq {event['seq']:>3}  {data['status']:<9}"
                        f" {data['bytes_transferred']:>4} bytes  {data.get('label')}"
                    )

        return printer

    with BridgeClient() as bc:
        wait_online(bc, time.monotonic() + 30)
        print("endpoints behind the bridge:")
        for doc in bc.describe_endpoints():
            print(f"  {doc['name']:<8} online={doc['online']}  plugins={doc['plugins']}")
        print()
        plugins, tasks, subs = {}, {}, []
        for site in bc.list_endpoints():
            globus = bc.get_endpoint_client(site).get_plugin("globus")
            globus.register_session(access_token=access_token)
            subs.append(globus.subscribe(show(site), since=0))
            task = globus.submit_transfer(
                TUTORIAL_COLLECTION_1,
                TUTORIAL_COLLECTION_2,
                [
                    {
                        "source": "/home/share/godata/",
                        "destination": f"/~/{site}/",
                        "recursive": True,
                    }
                ],
                label=f"demo {site}",
            )
            plugins[site], tasks[site] = globus, task["task_id"]
        statuses = {
            site: plugins[site].task_wait(tasks[site], timeout=120)["status"] for site in tasks
        }
        time.sleep(0.5)  # let the last notifications print
        for sub in subs:
            sub.stop()
    print()
    for site, status in statuses.items():
        print(f"  {site}: task {tasks[site][:8]}... {status}")
    return 0 if set(statuses.values()) == {"SUCCEEDED"} else 1


def main() -> int:
    started = time.monotonic()
    with offline_globus(BYTES_PER_SECOND) as (root, sim, user):
        bridge = BridgeProcess(state_dir=root / "bridge")
        token = bridge.add_client("demo")
        with bridge:
            print(f"bridge:    {bridge.url}")
            env = {**sim.environ(), "RADICAL_ORBIT_LOG_LEVEL": "warning"}
            # Enrolls each site and starts its daemon with RADICAL_ORBIT_BRIDGE_URL and its
            # enrollment token as RADICAL_ORBIT_BRIDGE_TOKEN, as docs/bridge.md sets one up.
            with linked_endpoints(bridge, SITES, root=root, env=env, poll_interval=0.5):
                for site in SITES:
                    print(f"endpoint:  {site} (links out to the bridge)")
                print()
                os.environ.update({"RADICAL_ORBIT_URL": bridge.url, "RADICAL_ORBIT_TOKEN": token})
                code = run_client(user.access_token)
    verdict = "all transfers SUCCEEDED" if code == 0 else "a transfer did not succeed"
    print(f"\nbridge demo finished in {time.monotonic() - started:.1f} s: {verdict}")
    return code


if __name__ == "__main__":
    sys.exit(main())
