"""Hostile WebSocket clients against the real daemon's ``/ws``.

The protocol is push-only: the daemon reads client messages only to notice a disconnect and
drops them, so no client frame can be misparsed. What it must do, whatever the client sends:
stay up, keep serving everyone else, and end a connection only with a clear close code
(1009 frame too large, 4400 bad query, 4404 another token's session, 4008 too slow, with the
seq to resume from), never a 5xx, a 1011 or a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
from typing import Any

import httpx
import pytest
import websockets
from fuzz_support import EXAMPLES, HEARTBEAT, WS_QUEUE, assert_alive
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from raw_ws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawSocket
from websockets.asyncio.client import ClientConnection

from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import TUTORIAL_COLLECTION_2, Simulator
from timing import UNIT

MAX_FRAME = 1 << 20  # the daemon's ws_max_size (main.py)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def access_token(fuzz_sim: Simulator) -> str:
    return fuzz_sim.add_user("ws-abuser").access_token


def _url(process: DaemonProcess, **query: Any) -> str:
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    return process.ws_url + (f"?{params}" if params else "")


async def _connect(process: DaemonProcess, **query: Any) -> ClientConnection:
    return await websockets.connect(
        _url(process, **query),
        additional_headers={"Authorization": f"Bearer {process.token}"},
        open_timeout=10,
        max_size=None,
        # The daemon must cope with clients that never answer pings; ours do not ping.
        ping_interval=None,
    )


async def _next_event(ws: ClientConnection, *, seconds: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "event":
                return dict(message)


def _register(http: httpx.Client, access_token: str) -> str:
    """One new session: a ``session_opened`` event for the token's subscribers."""
    answer = http.post("/globus/sessions", json={"access_token": access_token})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["session_id"])


async def _aregister(process: DaemonProcess, access_token: str) -> str:
    async with httpx.AsyncClient(base_url=process.url, headers=process.headers) as c:
        answer = await c.post("/globus/sessions", json={"access_token": access_token})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["session_id"])


# -- client frames: malformed, wrong types, binary, floods ------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_frames = st.lists(
    st.one_of(
        st.text(max_size=200),  # mostly not JSON at all
        _json.map(json.dumps),  # JSON of any shape, e.g. a command the daemon does not have
        st.fixed_dictionaries(
            {"type": st.sampled_from(["subscribe", "event", "ack", 1, None])},
            optional={"since": _json, "topic": _json, "seq": _json},
        ).map(json.dumps),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=30,
)


@SETTINGS
@given(frames=_frames)
def test_client_frames_are_ignored_and_the_stream_goes_on(
    fuzz_daemon: DaemonProcess, access_token: str, frames: list[str | bytes]
) -> None:
    async def scenario() -> dict[str, Any]:
        ws = await _connect(fuzz_daemon, topic="session")
        try:
            for frame in frames:
                await ws.send(frame)
            session_id = await _aregister(fuzz_daemon, access_token)
            event = await _next_event(ws)
            assert event["session_id"] == session_id
            return event
        finally:
            await ws.close()

    event = asyncio.run(scenario())
    assert event["kind"] == "session_opened"


def test_flood_of_frames_does_not_starve_others(
    fuzz_daemon: DaemonProcess, access_token: str
) -> None:
    """Several clients send frames as fast as they can; a quiet subscriber still gets its
    event promptly and HTTP answers."""

    async def scenario() -> float:
        quiet = await _connect(fuzz_daemon, topic="session")
        flooders = [await _connect(fuzz_daemon) for _ in range(4)]
        payload = json.dumps({"type": "flood", "pad": "x" * 1000})

        async def flood(ws: ClientConnection) -> None:
            for _ in range(50 * EXAMPLES):
                await ws.send(payload)

        floods = [asyncio.create_task(flood(ws)) for ws in flooders]
        await asyncio.sleep(0.2)
        started = time.monotonic()
        session_id = await _aregister(fuzz_daemon, access_token)
        event = await _next_event(quiet, seconds=10)
        delay = time.monotonic() - started
        await asyncio.gather(*floods)
        assert event["session_id"] == session_id
        for ws in [quiet, *flooders]:
            await ws.close()
        return delay

    delay = asyncio.run(scenario())
    assert delay < 5, delay
    assert_alive(fuzz_daemon)


# -- frame size limit ---------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_frame_over_the_limit_is_closed_with_1009(
    fuzz_daemon: DaemonProcess, access_token: str, binary: bool
) -> None:
    async def scenario() -> tuple[int, int | None, dict[str, Any]]:
        bystander = await _connect(fuzz_daemon, topic="session")
        at_limit = await _connect(fuzz_daemon)
        over = await _connect(fuzz_daemon)
        size = MAX_FRAME
        await at_limit.send(os.urandom(size) if binary else "x" * size)
        await over.send(os.urandom(size + 1) if binary else "x" * (size + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await over.recv()
        # The bystander and the client that stayed within the limit keep being served.
        session_id = await _aregister(fuzz_daemon, access_token)
        event = await _next_event(bystander)
        assert event["session_id"] == session_id
        pong = await at_limit.ping()
        async with asyncio.timeout(5):
            await pong
        received = closed.value.rcvd
        for ws in (bystander, at_limit):
            await ws.close()
        return size, received.code if received else None, event

    _, code, _ = asyncio.run(scenario())
    assert code == 1009
    assert_alive(fuzz_daemon)


def test_fragmented_message_over_the_limit_is_closed_with_1009(
    fuzz_daemon: DaemonProcess,
) -> None:
    """The limit is on the message, so splitting it into small frames does not get past it."""

    async def scenario() -> int | None:
        ws = await _connect(fuzz_daemon)
        chunk = "y" * (64 * 1024)
        await ws.send(chunk for _ in range(MAX_FRAME // len(chunk) + 1))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 1009
    assert_alive(fuzz_daemon)


# -- query parameters ---------------------------------------------------------------------

_since = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=20),
    st.sampled_from(["", "0", "-1", "1.5", "1e3", " 7 ", "0x10", "9" * 30, "NaN"]),
)
_topic = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["transfer_status", "session", "task"]), max_size=3).map(",".join),
    st.text(max_size=30),
)
_ident = st.one_of(st.none(), st.text(max_size=60))


def _valid_since(value: str | None) -> bool:
    if value in (None, ""):
        return True
    try:
        return 0 <= int(value) < 2**63
    except ValueError:
        return False


def _valid_topic(value: str | None) -> bool:
    if not value:
        return True
    names = {t.strip() for t in value.split(",") if t.strip()}
    return names <= {"transfer_status", "session", "task"}


@SETTINGS
@given(since=_since, topic=_topic, session_id=_ident, task_id=_ident)
@example(since=str(2**63), topic=None, session_id=None, task_id=None)
@example(since="-1", topic="session,bogus", session_id="", task_id="\x00")
def test_any_query_is_served_or_refused_with_4400(
    fuzz_daemon: DaemonProcess,
    since: str | None,
    topic: str | None,
    session_id: str | None,
    task_id: str | None,
) -> None:
    valid = _valid_since(since) and _valid_topic(topic)

    async def scenario() -> tuple[str, int | None, str]:
        query = {"since": since, "topic": topic, "session_id": session_id, "task_id": task_id}
        ws = await _connect(fuzz_daemon, **query)
        try:
            async with asyncio.timeout(HEARTBEAT * 10 + 5):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "heartbeat":
                        return "served", None, ""
        except websockets.ConnectionClosed as exc:
            frame = exc.rcvd
            return "closed", frame.code if frame else None, frame.reason if frame else ""
        finally:
            await ws.close()

    outcome, code, reason = asyncio.run(scenario())
    if valid:
        assert outcome == "served", (since, topic, code, reason)
    else:
        assert (outcome, code) == ("closed", 4400), (since, topic, outcome, code)
        assert reason and ("since" in reason or "topic" in reason), reason


def test_another_tokens_session_is_refused_with_4404(
    fuzz_daemon: DaemonProcess, http: httpx.Client, access_token: str
) -> None:
    session_id = _register(http, access_token)
    other = fuzz_daemon.add_token("ws-other")

    async def scenario() -> tuple[int | None, str]:
        ws = await websockets.connect(
            _url(fuzz_daemon, session_id=session_id, since=0),
            additional_headers={"Authorization": f"Bearer {other}"},
            open_timeout=10,
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await ws.recv())
                    assert message["type"] != "event", message
        frame = closed.value.rcvd
        return (frame.code, frame.reason) if frame else (None, "")

    code, reason = asyncio.run(scenario())
    assert code == 4404
    assert session_id in reason


# -- connection abuse ---------------------------------------------------------------------


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connect_disconnect_storm_leaks_nothing(
    fuzz_daemon: DaemonProcess, access_token: str
) -> None:
    """Clean closes, TCP drops without a close frame, handshakes cut short, bad and missing
    tokens: afterwards the daemon holds no more sockets than before and still streams."""
    assert fuzz_daemon.pid is not None
    before = _open_fds(fuzz_daemon.pid)
    rounds = 4 * EXAMPLES
    refused = []
    for i in range(rounds):
        raw = RawSocket(_url(fuzz_daemon, since=0))
        kind = i % 5
        if kind == 0:  # handshake, then drop the TCP connection without a close frame
            assert raw.handshake(fuzz_daemon.token).startswith("HTTP/1.1 101")
        elif kind == 1:  # half a request line, then gone
            raw.sock.sendall(raw.request(fuzz_daemon.token)[:17])
        elif kind == 2:  # a wrong token: a plain HTTP 401, no upgrade
            refused.append(raw.handshake("not-a-token"))
        elif kind == 3:  # no token at all
            refused.append(raw.handshake(None))
        else:  # a proper close handshake
            assert raw.handshake(fuzz_daemon.token).startswith("HTTP/1.1 101")
            raw.send_frame(OP_CLOSE, (1000).to_bytes(2, "big"))
            while raw.read_frame().opcode != OP_CLOSE:
                pass
        raw.close()
    assert refused and all(line.startswith("HTTP/1.1 401") for line in refused), refused

    def settled() -> bool:
        return _open_fds(fuzz_daemon.pid or 0) <= before + 2

    deadline = time.monotonic() + 15
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert settled(), (before, _open_fds(fuzz_daemon.pid))

    async def still_streams() -> str:
        ws = await _connect(fuzz_daemon, topic="session")
        session_id = await _aregister(fuzz_daemon, access_token)
        event = await _next_event(ws)
        await ws.close()
        assert event["session_id"] == session_id
        return str(event["kind"])

    assert asyncio.run(still_streams()) == "session_opened"
    assert_alive(fuzz_daemon)


# -- slow readers -------------------------------------------------------------------------


def _big_delete(n: int) -> dict[str, Any]:
    # ~1.96 MB of paths (under the daemon's 2 MiB budget per submit): its submit_requested
    # event is as large, so two of them fill the socket buffers between the daemon and a
    # client that reads 4 kB at a time.
    return {
        "collection": TUTORIAL_COLLECTION_2,
        "paths": [f"/~/slow/{n}/{i:04d}/" + "p" * 3900 for i in range(500)],
        "label": f"big{n}",
    }


async def _head(process: DaemonProcess) -> int:
    """The ledger head, from the heartbeat a new subscriber gets first."""
    ws = await _connect(process)
    try:
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "heartbeat":
                return int(message["head"])
    finally:
        await ws.close()


def _seqs_after(http: httpx.Client, seq: int) -> list[int]:
    """Every seq after ``seq``, following ``next_after`` (pages are bounded in bytes too)."""
    seqs: list[int] = []
    after: int | None = seq
    while after is not None:
        page = http.get("/globus/history", params={"after": after, "limit": 1000}).json()
        seqs.extend(int(e["seq"]) for e in page["events"])
        after = page["next_after"]
    return seqs


def test_reader_that_stops_reading_is_closed_with_4008_and_resume_seq(
    fuzz_daemon: DaemonProcess, http: httpx.Client, access_token: str
) -> None:
    """A client stops reading while events pile up: the daemon neither buffers without
    bound nor stalls anyone else; once the client reads again it finds the events it was
    sent, then a 4008 close whose reason names the last of them; resuming from there gives
    the rest with no gap."""
    session_id = _register(http, access_token)
    head = asyncio.run(_head(fuzz_daemon))
    slow = RawSocket(_url(fuzz_daemon, since=head), rcvbuf=4096)
    assert slow.handshake(fuzz_daemon.token).startswith("HTTP/1.1 101")

    async def burst_with_a_live_witness() -> float:
        witness = await _connect(fuzz_daemon, topic="session")
        async with httpx.AsyncClient(
            base_url=fuzz_daemon.url, headers=fuzz_daemon.headers, timeout=60 * UNIT
        ) as c:
            for n in range(2):
                big = await c.post(f"/globus/sessions/{session_id}/deletes", json=_big_delete(n))
                assert big.status_code == 200, big.text
            # More events than the slow client's queue holds.
            sids = [await _aregister(fuzz_daemon, access_token) for _ in range(WS_QUEUE + 10)]
        started = time.monotonic()
        async with asyncio.timeout(30):
            while True:
                message = json.loads(await witness.recv())
                if message.get("session_id") == sids[-1]:
                    break
        await witness.close()
        return time.monotonic() - started

    witness_delay = asyncio.run(burst_with_a_live_witness())
    # The witness got the whole burst while the slow client was stuck.
    assert witness_delay < 10, witness_delay
    assert_alive(fuzz_daemon)
    # The burst overflowed this client's buffer, so the daemon has marked it lagged: whether
    # its send is still blocked or it already gave up (send timeout), reading now drains what
    # was sent and then the close frame, which names the last of it. No sleep: how long the
    # burst took on this machine must not decide the outcome.
    received: list[int] = []
    while True:
        frame = slow.read_frame()
        if frame.opcode == OP_CLOSE:
            break
        if frame.opcode in (OP_PING, OP_PONG):
            continue  # uvicorn's keepalive pings
        assert frame.opcode == OP_TEXT
        message = json.loads(frame.payload)
        if message["type"] == "event":
            received.append(int(message["seq"]))
    slow.close()
    assert frame.close_code == 4008, (frame.close_code, frame.close_reason)
    resume = int(frame.close_reason.removeprefix("resume from "))
    assert received, "the slow client got nothing before the close"
    assert resume == received[-1]
    truth = _seqs_after(http, head)
    assert received == truth[: len(received)]
    assert len(received) < len(truth)

    async def resume_from(seq: int, until: int) -> list[int]:
        ws = await _connect(fuzz_daemon, since=seq)
        seqs: list[int] = []
        try:
            async with asyncio.timeout(30):
                while not seqs or seqs[-1] < until:
                    message = json.loads(await ws.recv())
                    if message["type"] == "event":
                        seqs.append(int(message["seq"]))
        finally:
            await ws.close()
        return seqs

    rest = asyncio.run(resume_from(resume, truth[-1]))
    assert received + rest[: len(truth) - len(received)] == truth
