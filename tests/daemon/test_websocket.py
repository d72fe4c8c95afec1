"""Notifications over the real WebSocket: live, replay with a cursor, lag, heartbeats, shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from daemon_helpers import (
    Session,
    client,
    daemon_process,
    history,
    next_events,
    register,
    start_daemon,
    submit,
    wait_for,
    wait_status,
    ws_connect,
)

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.testing import running_simulator


async def test_transfer_seen_from_submit_to_succeeded(
    shared_daemon: DaemonProcess, shared_sim: Simulator, shared_session: Session
) -> None:
    http, session_id = shared_session
    ws = await ws_connect(shared_daemon, session_id=session_id, topic="transfer_status")
    try:
        task_id = await asyncio.to_thread(submit, http, session_id, "ws")
        events = await next_events(ws, lambda m: m["data"]["status"] == "SUCCEEDED")
    finally:
        await ws.close()
    assert events[0]["kind"] == "task_submitted"
    assert events[0]["data"]["status"] == "ACTIVE"
    last = events[-1]
    assert last["topic"] == "transfer_status"
    assert last["task_id"] == task_id
    # The seed's six fields, then the trouble fields, and nothing else.
    assert list(last["data"]) == [
        "task_id",
        "status",
        "label",
        "bytes_transferred",
        "files_transferred",
        "nice_status",
        "is_ok",
        "is_paused",
        "faults",
        "error",
        "needs_attention",
        "attention_message",
    ]
    assert last["data"]["is_ok"] is None  # Globus: null once the task ended
    assert last["data"]["faults"] == 0 and last["data"]["is_paused"] is False
    assert last["data"]["label"] == "ws"
    assert last["data"]["files_transferred"] == 3
    assert last["data"]["bytes_transferred"] == shared_sim.task(task_id)["bytes_transferred"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    assert all(isinstance(e["time"], float) for e in events)


async def test_reconnect_with_cursor_gets_exactly_what_it_missed(
    daemon: DaemonProcess, session: Session
) -> None:
    http, session_id = session
    ws = await ws_connect(daemon, since=0)
    seen = await next_events(ws, lambda m: m["kind"] == "session_opened")
    cursor = seen[-1]["seq"]
    await ws.close()

    # While nobody listens: two transfers run to the end.
    for label in ("m1", "m2"):
        task_id = submit(http, session_id, label)
        http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 10})
    missed = [e for e in history(http) if e["seq"] > cursor]
    assert len(missed) >= 6

    ws = await ws_connect(daemon, since=cursor)
    try:
        got = await next_events(ws, lambda m: m["seq"] == missed[-1]["seq"])
        # Nothing more arrives than what was missed (a short quiet period).
        with pytest.raises(TimeoutError):
            await next_events(ws, lambda m: True, seconds=0.5)
    finally:
        await ws.close()
    assert got == missed


async def test_replay_and_live_have_no_gaps_or_duplicates(
    daemon: DaemonProcess, session: Session
) -> None:
    """Subscribe from 0 while events are being produced: the union is exactly the ledger."""
    http, session_id = session

    def produce() -> list[str]:
        with client(daemon) as h:
            return [submit(h, session_id, f"p{i}") for i in range(8)]

    producer = asyncio.create_task(asyncio.to_thread(produce))
    await asyncio.sleep(0.15)
    ws = await ws_connect(daemon, since=0)
    try:
        task_ids = await producer
        await asyncio.to_thread(wait_status, http, session_id, task_ids, "SUCCEEDED")
        truth = history(http)
        got = await next_events(ws, lambda m: m["seq"] == truth[-1]["seq"])
    finally:
        await ws.close()
    assert [e["seq"] for e in got] == [e["seq"] for e in truth]
    assert got == truth


async def test_filters_by_topic_and_task(daemon: DaemonProcess, sim: Simulator) -> None:
    creds = sim.add_user("alice")
    http = client(daemon)
    session_id = register(http, creds)
    for label in ("f1", "f2"):
        task_id = submit(http, session_id, label)
        http.post(f"/globus/sessions/{session_id}/tasks/{task_id}/wait", json={"timeout": 10})
    second = task_id
    http.close()

    ws = await ws_connect(daemon, since=0, task_id=second)
    only = await next_events(ws, lambda m: m["data"].get("status") == "SUCCEEDED")
    await ws.close()
    assert {e["task_id"] for e in only} == {second}

    ws = await ws_connect(daemon, since=0, topic="session")
    sessions = await next_events(ws, lambda m: True)
    await ws.close()
    assert sessions[0]["kind"] == "session_opened"
    assert sessions[0]["topic"] == "session"
    assert sessions[0]["data"] == {
        "local_collection": None,
        "auth": "access_token",
        "policy": None,
    }

    ws = await ws_connect(daemon, topic="nonsense")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert "unknown topic" in closed.value.rcvd.reason


async def _head_and_first_message(
    process: DaemonProcess, creds: Any, *, seconds: float
) -> tuple[int, dict[str, Any]]:
    """Open a session, then subscribe "from now": the ledger's head before the subscription
    and the first message it gets."""
    with client(process) as http:
        register(http, creds)
        head = history(http)[-1]["seq"]
    ws = await ws_connect(process)
    async with asyncio.timeout(seconds):
        message = json.loads(await ws.recv())
    await ws.close()
    return head, message


async def test_heartbeat_carries_head(tmp_path: Path, sim: Simulator) -> None:
    env = {"RADICAL_ORBIT_HEARTBEAT_INTERVAL": "0.3"}
    with daemon_process(tmp_path, sim, env=env) as process:
        head, message = await _head_and_first_message(process, sim.add_user("alice"), seconds=5)
    assert message["type"] == "heartbeat"
    assert message["head"] == head
    assert isinstance(message["time"], float)


async def test_first_message_is_a_heartbeat_so_from_now_resumes_without_gap(
    daemon: DaemonProcess, sim: Simulator
) -> None:
    """A client subscribing "from now" gets the head at once (the periodic heartbeat is 5 s
    away), disconnects before any event, and resuming from that head loses nothing."""
    creds = sim.add_user("alice")
    head, first = await _head_and_first_message(daemon, creds, seconds=2)
    with client(daemon) as http:
        session_id = register(http, creds)  # committed while nobody listens
        missed = [e for e in history(http) if e["seq"] > first["head"]]
    again = await ws_connect(daemon, since=first["head"])
    try:
        got = await next_events(again, lambda m: m["seq"] == missed[-1]["seq"], seconds=5)
    finally:
        await again.close()
    assert first["type"] == "heartbeat"
    assert first["head"] == head
    assert [e["kind"] for e in missed] == ["session_opened"]
    assert missed[0]["session_id"] == session_id
    assert got == missed


async def test_slow_client_is_closed_with_resume_cursor(
    tmp_path: Path, slow_sim: Simulator
) -> None:
    """A burst larger than a client's queue closes it with 4008 "resume from <seq>"; resuming
    from that seq yields the rest without a gap; another client is unaffected."""
    sim = slow_sim
    with daemon_process(tmp_path, sim, env={"RADICAL_ORBIT_WS_QUEUE_SIZE": "3"}) as process:
        creds = sim.add_user("alice")
        http = client(process)
        session_id = register(http, creds)
        slow = await ws_connect(process, since=0)
        for i in range(12):
            submit(http, session_id, f"s{i}")
        # All finish at once: the next sweep appends 12 changes in one batch.
        sim.finish_all()
        received: list[dict[str, object]] = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(20):
                while True:
                    message = json.loads(await slow.recv())
                    if message["type"] == "event":
                        received.append(message)
        frame = closed.value.rcvd
        assert frame is not None
        assert frame.code == 4008
        resume = int(frame.reason.removeprefix("resume from "))
        assert resume == received[-1]["seq"]
        await asyncio.to_thread(
            wait_for,
            lambda: (
                not http.get(
                    f"/globus/sessions/{session_id}/tasks", params={"status": "ACTIVE"}
                ).json()["tasks"]
            ),
        )
        truth = history(http)
        again = await ws_connect(process, since=resume)
        rest = await next_events(again, lambda m: m["seq"] == truth[-1]["seq"])
        await again.close()
        http.close()
    assert received + rest == truth


async def test_shutdown_closes_websockets_with_going_away(tmp_path: Path, sim: Simulator) -> None:
    process = start_daemon(tmp_path, sim)
    ws = await ws_connect(process)
    code = await asyncio.to_thread(process.stop)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(5):
            while True:
                await ws.recv()
    assert code == 0
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001
    assert not process.endpoint_file.exists()


async def test_progress_events_while_bytes_move(tmp_path: Path) -> None:
    """A slow transfer (50 bytes/s) shows task_progress events with growing byte counts."""
    with (
        running_simulator(tmp_path, bytes_per_second=50) as sim,
        daemon_process(tmp_path, sim) as process,
    ):
        creds = sim.add_user("alice")
        with client(process) as http:
            session_id = register(http, creds)
        ws = await ws_connect(process, session_id=session_id, topic="transfer_status")
        with client(process) as http:
            submit(http, session_id, "slow")
        events = await next_events(ws, lambda m: m["data"]["status"] == "SUCCEEDED", seconds=30)
        await ws.close()
    progress = [e for e in events if e["kind"] == "task_progress"]
    assert progress, [e["kind"] for e in events]
    moved = [e["data"]["bytes_transferred"] for e in progress]
    assert moved == sorted(moved)
    assert 0 < moved[0] < events[-1]["data"]["bytes_transferred"]
    assert all(e["data"]["status"] == "ACTIVE" for e in progress)
