"""A reconnecting client gets the replay in batch messages and still sees every event once,
in order, through the unchanged client API (the real daemon, a real ledger file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from client_helpers import start_daemon

from radical.orbit import GlobusClient
from radical.orbit.daemon.api.websocket import REPLAY_BATCH
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.ledger import (
    Ledger,
    SessionOpened,
    SubmitRequested,
    TaskProgress,
    TaskSubmitted,
    TransferItem,
    TransferRequest,
)
from radical.orbit.simulator import Simulator
from timing import UNIT

# More than two batches, not a multiple of the batch size.
TASKS = 900  # 2 events each, then 1 progress each: 2,701 events with the session


def _submit(n: int) -> tuple[SubmitRequested, TaskSubmitted]:
    request = TransferRequest(
        source="a", destination="b", items=(TransferItem(source="/x", destination="/y"),)
    )
    envelope = {"owner": "default", "session_id": "s-old", "submission_id": f"sub-{n}"}
    return (
        SubmitRequested(**envelope, type="TRANSFER", request=request),
        TaskSubmitted(**envelope, task_id=f"task-{n}"),
    )


async def _fill(path: Path) -> int:
    async with await Ledger.open(path) as ledger:
        await ledger.append(SessionOpened(owner="default", session_id="s-old", auth="access_token"))
        for n in range(TASKS):
            await ledger.append_many(_submit(n))
        await ledger.append_many(
            [TaskProgress(task_id=f"task-{n}", bytes_transferred=n + 1) for n in range(TASKS)]
        )
        return await ledger.head()


@pytest.fixture
def filled_daemon(sim: Simulator, tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    state = tmp_path / "state"
    start_daemon(sim, state).stop()  # creates the state folder and the default token
    head = asyncio.run(_fill(state / "ledger.db"))
    process = start_daemon(sim, state)
    try:
        yield process, head
    finally:
        process.stop()


def test_replay_arrives_in_batches_and_each_event_once_in_order(
    filled_daemon: tuple[DaemonProcess, int],
) -> None:
    process, head = filled_daemon
    assert head > 2 * REPLAY_BATCH

    async def raw(query: str, until: int = head) -> list[list[dict[str, Any]]]:
        """The events of each message up to seq ``until``, as a raw client receives them."""
        messages: list[list[dict[str, Any]]] = []
        async with websockets.connect(
            f"{process.ws_url}?{query}",
            additional_headers=process.headers,
            max_size=2**24,
            proxy=None,
        ) as ws:
            while not messages or messages[-1][-1]["seq"] < until:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30 * UNIT))
                if message["type"] == "events":
                    messages.append(message["events"])
                elif message["type"] == "event":
                    messages.append([message])
        return messages

    batched = asyncio.run(raw("since=0&batch=1"))
    events = [event for batch in batched for event in batch]
    assert [event["seq"] for event in events] == list(range(1, head + 1))
    assert all(len(batch) <= REPLAY_BATCH for batch in batched)
    assert len(batched) == -(-head // REPLAY_BATCH)  # full batches, then the rest
    # Without asking, one event per message as before, and the very same envelopes.
    single = asyncio.run(raw("since=0"))
    assert all(len(message) == 1 for message in single)
    assert [message[0] for message in single] == events
    # A topic filter applies to the batches too.
    sessions = asyncio.run(raw("since=0&batch=1&topic=session", until=1))
    assert [e["kind"] for batch in sessions for e in batch] == ["session_opened"]

    # The client asks for batches and hands out each event once, in order; resuming from a
    # cursor inside a batch starts right after it.
    with GlobusClient(process.url, process.token) as globus:
        for since in (0, REPLAY_BATCH + 17):
            seen: list[int] = []
            with globus.events(since=since, all_sessions=True, give_up_after=30 * UNIT) as stream:
                while len(seen) < head - since:
                    event = stream.get(timeout=30 * UNIT)
                    assert event is not None, f"stream stopped after {len(seen)} events"
                    seen.append(event["seq"])
            assert seen == list(range(since + 1, head + 1))
