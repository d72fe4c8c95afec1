"""Isolation between daemon tokens, across every route the daemon publishes.

Routes come from the daemon's own OpenAPI document, so a route added later is covered
without touching this file. Complements tests/daemon/test_auth_isolation.py (token files,
a fixed list of routes, 4404 on a foreign session filter).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from e2e_support import C1, C2, wait_until

from http_api import ROUTES
from radical.orbit.daemon.runtime.config import load_config
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator
from timing import UNIT

GODATA = [{"source": "/home/share/godata/", "destination": "/~/iso/", "recursive": True}]
# Every route the API documents (tests/http_api.py): if the OpenAPI document stopped listing
# one, the enumeration below would silently test less.
KNOWN = frozenset(ROUTES)


class Party:
    """One daemon token with its own session and task."""

    def __init__(self, daemon: DaemonProcess, sim: Simulator, token: str, name: str) -> None:
        self.token = token
        self.http = httpx.Client(
            base_url=daemon.url, headers={"Authorization": f"Bearer {token}"}, timeout=30 * UNIT
        )
        self.creds = sim.add_user(name)
        answer = self.http.post("/globus/sessions", json={"access_token": self.creds.access_token})
        assert answer.status_code == 200, answer.text
        self.session_id = str(answer.json()["session_id"])
        self.label = f"secret-label-{name}"
        body = {"source": C1, "destination": C2, "items": GODATA, "label": self.label}
        answer = self.http.post(f"/globus/sessions/{self.session_id}/transfers", json=body)
        assert answer.status_code == 200, answer.text
        self.task_id = str(answer.json()["task_id"])


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    # Tasks stay ACTIVE until finished here, so "wait" and "cancel" have a live target.
    with running_simulator(tmp_path_factory.mktemp("iso"), min_task_seconds=3600.0) as s:
        yield s


@pytest.fixture(scope="module")
def parties(daemon: DaemonProcess, sim: Simulator) -> tuple[Party, Party]:
    alice = Party(daemon, sim, daemon.token, "iso-alice")
    bob = Party(daemon, sim, daemon.add_token("iso-bob"), "iso-bob")
    return alice, bob


@pytest.fixture(scope="module")
def routes(daemon: DaemonProcess) -> list[tuple[str, str]]:
    answer = httpx.get(daemon.url + "/openapi.json", headers=daemon.headers, timeout=30 * UNIT)
    assert answer.status_code == 200, answer.text
    found = {
        (method.upper(), path)
        for path, item in answer.json()["paths"].items()
        for method in item
        if method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")
    }
    assert found >= KNOWN, f"OpenAPI lacks {sorted(KNOWN - found)}"
    return sorted(found)


def fill(path: str, party: Party) -> str:
    return (
        path.replace("{session_id}", party.session_id)
        .replace("{task_id}", party.task_id)
        .replace("{collection}", C1)
    )


def body_for(method: str, path: str) -> dict[str, Any] | None:
    """A body the route would accept from the session's owner."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if path.endswith("/transfers"):
        return {"source": C1, "destination": C2, "items": GODATA}
    if path.endswith("/deletes"):
        return {"collection": C2, "paths": ["/~/iso/"]}
    if path.endswith("/wait"):
        return {"timeout": 0}
    if path.endswith("/mkdir"):
        return {"collection": C2, "path": "/~/made/"}
    if path.endswith("/rename"):
        return {"collection": C2, "oldpath": "/~/a", "newpath": "/~/b"}
    return {}


def test_every_route_needs_a_valid_token(
    daemon: DaemonProcess, parties: tuple[Party, Party], routes: list[tuple[str, str]]
) -> None:
    alice, _ = parties
    refusals = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "x" * 43},
        {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()},
        {"Authorization": daemon.token},  # the right token without the scheme
        {"Authorization": f"Bearer {daemon.token}x"},
        {"Authorization": f"Bearer {daemon.token[:-1]}"},
    ]
    checked = 0
    anonymous = httpx.Client(base_url=daemon.url, timeout=30 * UNIT)
    for method, path in [*routes, ("GET", "/openapi.json")]:
        for headers in refusals:
            answer = anonymous.request(
                method, fill(path, alice), headers=headers, json=body_for(method, path)
            )
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["error"] == "Unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
            # The refusal tells nothing about the session or its tasks.
            assert alice.label not in answer.text
            checked += 1
    anonymous.close()
    assert checked >= len(KNOWN) * len(refusals)
    # The task was untouched by all of that.
    row = alice.http.get(f"/globus/sessions/{alice.session_id}/tasks/{alice.task_id}").json()
    assert row["status"] == "ACTIVE"


async def test_websocket_needs_a_valid_token(daemon: DaemonProcess) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic " + base64.b64encode(b"user:pass").decode()},
        {"Authorization": f"Bearer {daemon.token[:-1]}"},
    ):
        for query in ("", "?since=0", "?since=0&topic=session"):
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(daemon.ws_url + query, additional_headers=headers)
            assert refused.value.response.status_code == 401
    # A token in the query string is not a way in either.
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            f"{daemon.ws_url}?token={daemon.token}&access_token={daemon.token}"
        )
    assert refused.value.response.status_code == 401


def test_another_token_gets_404_on_every_session_route(
    parties: tuple[Party, Party], routes: list[tuple[str, str]]
) -> None:
    alice, bob = parties
    session_routes = [(m, p) for m, p in routes if "{session_id}" in p]
    assert len(session_routes) >= 12
    for method, path in session_routes:
        query = {"collection": C1} if path.endswith("/ls") else None
        answer = bob.http.request(
            method, fill(path, alice), json=body_for(method, path), params=query
        )
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "NotFound"
        assert alice.label not in answer.text
        assert alice.creds.username not in answer.text
    # Bob's own session works on the same routes (so the 404s above are about ownership).
    assert bob.http.get(f"/globus/sessions/{bob.session_id}/tasks/{bob.task_id}").status_code == 200
    # None of that touched Alice's session or task.
    row = alice.http.get(f"/globus/sessions/{alice.session_id}/tasks/{alice.task_id}")
    assert row.status_code == 200
    assert row.json()["status"] == "ACTIVE"
    assert alice.http.get(f"/globus/sessions/{alice.session_id}/tasks").json()["tasks"]


def test_history_shows_only_the_callers_own_data(parties: tuple[Party, Party]) -> None:
    alice, bob = parties
    assert (
        bob.http.get("/globus/history", params={"session_id": alice.session_id}).status_code == 404
    )
    for params in (
        {"task_id": alice.task_id},
        {"task_id": alice.task_id, "view": "tasks"},
        {"label": alice.label},
        {"label": alice.label, "view": "tasks"},
        {"status": "ACTIVE", "view": "tasks"},
        {"after": "0", "limit": "1000"},
        {"view": "tasks", "limit": "1000"},
    ):
        answer = bob.http.get("/globus/history", params=params)
        assert answer.status_code == 200, answer.text
        text = answer.text
        assert (
            alice.session_id not in text and alice.task_id not in text and alice.label not in text
        )
        rows = answer.json().get("events", answer.json().get("tasks"))
        assert all(r["session_id"] == bob.session_id for r in rows), rows
    # Alice sees hers: the filters work, Bob just has no right to them.
    mine = alice.http.get("/globus/history", params={"task_id": alice.task_id}).json()
    assert mine["events"]


async def _collect(url: str, token: str, seconds: float) -> tuple[list[dict[str, Any]], Any]:
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    messages: list[dict[str, Any]] = []
    closed = None
    try:
        async with asyncio.timeout(seconds):
            while True:
                messages.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    except websockets.ConnectionClosed as exc:
        closed = exc.rcvd
    await ws.close()
    return messages, closed


async def test_websocket_of_another_token_sees_nothing(
    daemon: DaemonProcess, sim: Simulator, parties: tuple[Party, Party]
) -> None:
    alice, bob = parties
    base = daemon.ws_url
    _, closed = await _collect(f"{base}?since=0&session_id={alice.session_id}", bob.token, 2)
    assert closed is not None and closed.code == 4404
    # Live and replayed: Alice's task changes while Bob listens with every filter he can try.
    listeners = [
        asyncio.create_task(_collect(f"{base}?since=0&task_id={alice.task_id}", bob.token, 3)),
        asyncio.create_task(_collect(f"{base}?since=0", bob.token, 3)),
        asyncio.create_task(_collect(f"{base}?task_id={alice.task_id}", bob.token, 3)),
        asyncio.create_task(_collect(f"{base}?since=0&topic=session,task", bob.token, 3)),
    ]
    await asyncio.sleep(0.5)
    # INACTIVE comes from a credential expiry only (a pause keeps a task ACTIVE).
    await asyncio.to_thread(sim.expire_credential, alice.task_id)
    mine, _ = await _collect(f"{base}?since=0&task_id={alice.task_id}", alice.token, 2)
    assert any(m.get("data", {}).get("status") == "INACTIVE" for m in mine), mine
    for listener in listeners:
        messages, closed = await listener
        assert closed is None
        events = [m for m in messages if m["type"] == "event"]
        assert all(e["session_id"] == bob.session_id for e in events), events
        assert alice.task_id not in json.dumps(messages)
    await asyncio.to_thread(sim.renew_credential, alice.task_id)


def test_sids_are_unguessable_and_listed_only_to_their_token(
    daemon: DaemonProcess, sim: Simulator, routes: list[tuple[str, str]]
) -> None:
    # The one route that lists sessions lists the asking token's own, and no other's.
    assert ("GET", "/globus/sessions") in routes
    http = httpx.Client(base_url=daemon.url, headers=daemon.headers, timeout=30 * UNIT)
    before = {s["session_id"] for s in http.get("/globus/sessions").json()["sessions"]}
    creds = sim.add_user("iso-many")
    sids = set()
    for _ in range(20):
        answer = http.post("/globus/sessions", json={"access_token": creds.access_token})
        sids.add(answer.json()["session_id"])
    assert len(sids) == 20
    listed = {s["session_id"] for s in http.get("/globus/sessions").json()["sessions"]}
    assert listed - before == sids
    other = daemon.add_token("iso-lister")
    stranger = httpx.Client(
        base_url=daemon.url, headers={"Authorization": f"Bearer {other}"}, timeout=30 * UNIT
    )
    assert stranger.get("/globus/sessions").json() == {"sessions": []}
    stranger.close()
    for session_id in sids:
        # Random bytes as hex (4 bits per character) or URL-safe base64 (6 bits).
        if re.fullmatch(r"[0-9a-f]+", session_id):
            bits = len(session_id) * 4
        else:
            assert re.fullmatch(r"[A-Za-z0-9_-]+", session_id), session_id
            bits = len(session_id) * 6
        assert bits >= 128, session_id
    # Not sequential or sharing a prefix (cheap sanity: random ids differ early).
    assert len({session_id[:4] for session_id in sids}) >= 15
    http.close()


def test_default_bind_is_loopback(tmp_path: Path, sim: Simulator) -> None:
    assert load_config(env={}).host == "127.0.0.1"
    # The real daemon with no --host and no RADICAL_ORBIT_HOST: where does it listen?
    env = {k: v for k, v in os.environ.items() if not k.startswith("RADICAL_ORBIT_")}
    env.update(sim.environ())
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-m", "radical.orbit.daemon", "serve", "--state-dir", str(state)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        info: dict[str, Any] = {}

        def listening() -> list[str]:
            try:
                info.update(json.loads((state / "endpoint.json").read_text()))
            except (OSError, ValueError):
                return ["no endpoint.json yet"]
            return [] if info.get("pid") == proc.pid else ["endpoint.json of another pid"]

        wait_until(listening, timeout=20 * UNIT)
        assert info["url"].startswith("http://127.0.0.1:")
        port = int(info["url"].rsplit(":", 1)[1])
        sockets = _listening_sockets(port)
        assert sockets, f"nothing listens on port {port}"
        assert sockets <= {"127.0.0.1", "::1"}, sockets
    finally:
        proc.terminate()
        proc.wait(15)


def _listening_sockets(port: int) -> set[str]:
    """Local addresses of listening TCP sockets on ``port``, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for name, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            address, port_hex = parts[1].split(":")
            if parts[3] != "0A" or int(port_hex, 16) != port:
                continue
            if width == 8:
                found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
            else:
                found.add(
                    "::1"
                    if address.endswith("01000000") and set(address[:24]) == {"0"}
                    else address
                )
    return found


def test_finished_parties_keep_their_own_rows(parties: tuple[Party, Party], sim: Simulator) -> None:
    """After all the probing, each party's task is tracked for its owner only."""
    _alice, bob = parties
    for party in parties:
        sim.finish_task(party.task_id)

    def done() -> list[str]:
        out = []
        for party in parties:
            row = party.http.get(
                f"/globus/sessions/{party.session_id}/tasks/{party.task_id}"
            ).json()
            if row["status"] != "SUCCEEDED":
                out.append(f"{party.creds.username}: {row['status']}")
        return out

    wait_until(done, timeout=15 * UNIT)
    rows = bob.http.get("/globus/history", params={"view": "tasks"}).json()["tasks"]
    assert [r["task_id"] for r in rows] == [bob.task_id]
