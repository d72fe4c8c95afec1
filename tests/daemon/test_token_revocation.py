"""Revoking a client token: its WebSockets close at once, and a new token of the same name
is someone else (sessions are owned by a token's id, never by its name)."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from daemon_helpers import client, new_user, register, transfer_body, ws_connect

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.protocol import CloseCode
from radical.orbit.simulator import Simulator
from timing import UNIT


async def test_deleting_a_token_closes_its_websockets_and_orphans_nothing(
    daemon: DaemonProcess, sim: Simulator
) -> None:
    old_bob = daemon.add_token("bob")
    with client(daemon, old_bob) as http:
        session_id = register(http, new_user(sim))
        task = http.post(f"/globus/sessions/{session_id}/transfers", json=transfer_body("b"))
        assert task.status_code == 200, task.text
    ws = await ws_connect(daemon, old_bob, since=0)
    witness = await ws_connect(daemon, since=0)  # the default token's: stays open
    await asyncio.to_thread(daemon.delete_token, "bob")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(5 * UNIT):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.POLICY
    assert "revoked" in closed.value.rcvd.reason
    await witness.ping()
    await witness.close()

    with client(daemon, old_bob) as http:
        assert http.get("/endpoints").status_code == 401
    new_bob = daemon.add_token("bob")
    with client(daemon, new_bob) as http:
        for path in (
            f"/globus/sessions/{session_id}/tasks",
            f"/globus/history?session_id={session_id}",
        ):
            answer = http.get(path)
            assert answer.status_code == 404, (path, answer.text)
        assert http.get("/globus/history").json()["events"] == []
