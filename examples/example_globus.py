#!/usr/bin/env python3
"""Copy a folder with Globus through the local orbit endpoint daemon, and watch it happen.

What it does: registers your Globus credential with the daemon, submits a recursive
transfer, follows the task through the daemon's notification stream (printing progress as
it arrives), then prints the finished task and lists the destination folder.

Run it against real Globus (the daemon must be running: ``orbit-globus-endpoint``)::

    export GLOBUS_ACCESS_TOKEN=...          # a Transfer API token, e.g. from the Globus CLI
    python3 examples/example_globus.py

or with ``GLOBUS_REFRESH_TOKEN`` + ``GLOBUS_CLIENT_ID`` (a native app) instead of the access
token. ``python3 dev.py demo`` runs this same file against the bundled simulator.

Environment (defaults in brackets):
    ORBIT_EXAMPLE_SRC        source collection      [Globus Tutorial Collection 1]
    ORBIT_EXAMPLE_SRC_PATH   source folder          [/home/share/godata/]
    ORBIT_EXAMPLE_DST        destination collection [Globus Tutorial Collection 2]
    ORBIT_EXAMPLE_DST_PATH   destination folder     [/~/endpoint-globus-demo/]
    ORBIT_EXAMPLE_TIMEOUT    seconds to wait        [600]
    RADICAL_ORBIT_URL, RADICAL_ORBIT_TOKEN          the daemon (default: the local one)

Exit code 0 when the transfer SUCCEEDED, 1 when it FAILED or timed out.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from radical.orbit import BridgeClient, GlobusClient, OrbitError

TUTORIAL_COLLECTION_1 = "6c54cade-bde5-45c1-bdea-f4bd71dba2cc"
TUTORIAL_COLLECTION_2 = "31ce9ba0-176d-45a5-add3-f37d233ba47d"


def settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "source": env.get("ORBIT_EXAMPLE_SRC", TUTORIAL_COLLECTION_1),
        "source_path": env.get("ORBIT_EXAMPLE_SRC_PATH", "/home/share/godata/"),
        "destination": env.get("ORBIT_EXAMPLE_DST", TUTORIAL_COLLECTION_2),
        "destination_path": env.get("ORBIT_EXAMPLE_DST_PATH", "/~/endpoint-globus-demo/"),
        "timeout": float(env.get("ORBIT_EXAMPLE_TIMEOUT", "600")),
    }


def credentials(env: Mapping[str, str]) -> dict[str, str]:
    if env.get("GLOBUS_REFRESH_TOKEN") and env.get("GLOBUS_CLIENT_ID"):
        return {"refresh_token": env["GLOBUS_REFRESH_TOKEN"], "client_id": env["GLOBUS_CLIENT_ID"]}
    if env.get("GLOBUS_ACCESS_TOKEN"):
        return {"access_token": env["GLOBUS_ACCESS_TOKEN"]}
    raise SystemExit(
        "set GLOBUS_ACCESS_TOKEN, or GLOBUS_REFRESH_TOKEN and GLOBUS_CLIENT_ID (see --help)"
    )


def size(count: float) -> str:
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def follow(globus: GlobusClient, task_id: str, timeout: float) -> None:
    """Print each status/progress notification of the task until it ends."""
    started = time.monotonic()
    # since=0 with a task filter replays this task's events from its submission, so nothing
    # that happened before the stream opened is missed.
    with globus.events(since=0, task_id=task_id, topic="transfer_status") as stream:
        while (left := timeout - (time.monotonic() - started)) > 0:
            event = stream.get(timeout=left)
            if event is None:
                break
            data = event["data"]
            print(
                f"  [{time.monotonic() - started:5.1f} s] {data['status']:<9}"
                f" {size(data['bytes_transferred']):>9}  {data['files_transferred']} files"
                f"  ({event['kind']})",
                flush=True,
            )
            if data["status"] in ("SUCCEEDED", "FAILED"):
                return


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    cfg = settings(env)
    with BridgeClient() as bc:
        endpoint = bc.get_endpoint_client(bc.list_endpoints()[0])
        globus = endpoint.get_plugin("globus")
        session = globus.register_session(**credentials(env))
        print(f"endpoint {endpoint.name}, session {session['session_id']}")

        sub = globus.submit_transfer(
            source=cfg["source"],
            destination=cfg["destination"],
            items=[
                {
                    "source": cfg["source_path"],
                    "destination": cfg["destination_path"],
                    "recursive": True,
                }
            ],
            label="orbit-globus example",
            sync_level="checksum",
        )
        print(f"submitted task {sub['task_id']} ({sub['status']})")
        follow(globus, sub["task_id"], cfg["timeout"])

        task = globus.get_task(sub["task_id"])
        print("final task:")
        for key in (
            "task_id",
            "status",
            "label",
            "bytes_transferred",
            "files_transferred",
            "fatal_error",
        ):
            print(f"  {key:<18} {task[key]}")

        listing = globus.ls(cfg["destination"], cfg["destination_path"])
        print(f"destination {cfg['destination']}:{cfg['destination_path']}")
        for entry in listing["DATA"]:
            suffix = "/" if entry["type"] == "dir" else ""
            print(f"  {entry['name'] + suffix:<24} {size(entry['size']):>9}")
        return 0 if task["status"] == "SUCCEEDED" else 1


if __name__ == "__main__":
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(__doc__)
        sys.exit(0)
    try:
        sys.exit(main())
    except OrbitError as exc:
        print(f"example_globus: {exc}", file=sys.stderr)
        sys.exit(1)
