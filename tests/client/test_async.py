"""AsyncGlobusClient: the same routes, awaited, and the async event stream."""

from __future__ import annotations

import asyncio

import pytest
from client_helpers import DST, GODATA, SRC, godata_items

from radical.orbit import AsyncGlobusClient, BridgeClient, NotFoundError, TaskWaitTimeout
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator.auth import Credentials
from timing import UNIT


async def test_every_async_method(daemon: DaemonProcess, user: Credentials) -> None:
    async with AsyncGlobusClient(daemon.url, daemon.token) as globus:
        assert len(await globus.list_endpoints()) == 1
        opened = await globus.register_session(access_token=user.access_token, local_collection=DST)
        assert opened["session_id"] == globus.session_id
        assert (await globus.mkdir("local", "/~/aio/"))["code"] == "DirectoryCreated"
        sub = await globus.submit_transfer(SRC, "local", godata_items("/~/aio/in/"), label="aio")
        final = await globus.task_wait(sub["task_id"], timeout=30 * UNIT)
        assert final["status"] == "SUCCEEDED"
        polled = await globus.task_wait(sub["task_id"], timeout=5 * UNIT, use_stream=False)
        assert polled["status"] == "SUCCEEDED"
        assert (await globus.get_task(sub["task_id"]))["label"] == "aio"
        assert [t["task_id"] for t in await globus.list_tasks()] == [sub["task_id"]]
        renamed = await globus.rename("local", "/~/aio/in/file2.txt", "/~/aio/in/second.txt")
        assert renamed["code"] == "FileRenamed"
        names = {e["name"] for e in (await globus.ls("local", "/~/aio/in/"))["DATA"]}
        assert names == {"file1.txt", "second.txt", "file3.txt"}
        assert {e["name"] for e in (await globus.ls(SRC, GODATA))["DATA"]} >= {"file1.txt"}
        assert SRC in {e["id"] for e in await globus.endpoint_search("Tutorial")}
        assert (await globus.get_endpoint(DST))["id"] == DST
        slow = await globus.submit_transfer(
            SRC,
            "local",
            [{"source": "/home/share/big/", "destination": "/~/aio/big/", "recursive": True}],
        )
        with pytest.raises(TaskWaitTimeout):
            await globus.task_wait(slow["task_id"], timeout=0.3 * UNIT)
        assert (await globus.cancel_task(slow["task_id"]))["code"] == "Canceled"
        gone = await globus.delete("local", "/~/aio/in/", recursive=True)
        assert (await globus.task_wait(gone["task_id"], timeout=30 * UNIT))["status"] == "SUCCEEDED"
        page = await globus.history(task_id=sub["task_id"], session_id=globus.session_id)
        assert page["events"][-1]["data"]["status"] == "SUCCEEDED"
        seqs = [
            e["seq"] async for e in globus.iter_history(session_id=globus.session_id, page_size=3)
        ]
        assert seqs == sorted(set(seqs)) and len(seqs) >= 6
        with pytest.raises(NotFoundError):
            await globus.get_task("00000000-0000-0000-0000-000000000000")
        assert (await globus.unregister_session())["closed"] is True


async def test_async_stream_and_subscription(daemon: DaemonProcess, user: Credentials) -> None:
    bc = BridgeClient(daemon.url, daemon.token)
    globus = bc.get_endpoint_client(bc.list_endpoints()[0]).get_async_plugin("globus")
    async with globus:
        await globus.register_session(access_token=user.access_token, local_collection=DST)
        seen: list[int] = []

        async def record(event: dict[str, object]) -> None:
            seen.append(int(event["seq"]))  # type: ignore[call-overload]

        subscription = globus.subscribe(record, since=0)
        subs = [
            await globus.submit_transfer(SRC, "local", godata_items(f"/~/s{i}/")) for i in range(3)
        ]
        for sub in subs:
            await globus.task_wait(sub["task_id"], timeout=30 * UNIT)
        history = [e["seq"] async for e in globus.iter_history(session_id=globus.session_id)]
        for _ in range(100):
            if len(seen) >= len(history):
                break
            await asyncio.sleep(0.05)
        await subscription.stop()
        assert subscription.error is None
        assert seen == history
        async with globus.events(since=0, topic="transfer_status") as stream:
            first = await stream.get(timeout=10 * UNIT)
            assert first is not None and first["topic"] == "transfer_status"
            assert first["kind"] == "task_submitted"
    bc.close()
