"""Notifications with replay: each event exactly once, in order, across dropped connections."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_helpers import DST, SRC, godata_items, start_daemon
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close

from radical.orbit import (
    AuthenticationError,
    DaemonUnavailable,
    GlobusClient,
    LedgerBehind,
    ProtocolError,
    RequestError,
)
from radical.orbit.client.stream import Backoff, CursorFile, ReplayCursor, StreamCore
from radical.orbit.daemon.runtime.launcher import DaemonProcess
from radical.orbit.simulator import Simulator
from radical.orbit.simulator.auth import Credentials
from timing import UNIT

BIG = [{"source": "/home/share/big/", "destination": "/~/big{}/", "recursive": True}]


def event(seq: int) -> dict[str, Any]:
    return {"type": "event", "seq": seq, "kind": "x", "data": {}}


# -- the pure core -----------------------------------------------------------------------


@given(
    total=st.integers(min_value=0, max_value=60),
    plan=st.lists(st.tuples(st.integers(0, 10), st.integers(0, 25)), max_size=12),
)
def test_replay_cursor_delivers_each_event_once_in_order(
    total: int, plan: list[tuple[int, int]]
) -> None:
    """Connections that replay with overlap and drop anywhere still yield 1..total exactly."""
    cursor = ReplayCursor(since=0)
    delivered: list[int] = []
    for overlap, length in [*plan, (0, total)]:
        # The server replays from a little before the cursor (overlap) and dies after length.
        start = max(1, (cursor.last_seq or 0) + 1 - overlap)
        for seq in range(start, min(total, start + length - 1) + 1):
            got = cursor.accept(event(seq))
            if got is not None:
                delivered.append(got["seq"])
    assert delivered == list(range(1, total + 1))


def test_replay_cursor_refuses_a_head_behind_what_it_delivered() -> None:
    # A daemon whose ledger was restored from an older backup: new events could reuse seqs
    # the stream counts as seen, so it says so instead of skipping them.
    cursor = ReplayCursor(since=108)
    assert cursor.accept({"type": "heartbeat", "head": 108}) is None
    with pytest.raises(LedgerBehind) as behind:
        cursor.accept({"type": "heartbeat", "head": 102})
    assert (behind.value.head, behind.value.cursor) == (102, 108)
    assert "since=102" in str(behind.value)


def test_replay_cursor_takes_the_live_head_from_a_heartbeat() -> None:
    cursor = ReplayCursor(since=None)
    assert cursor.accept({"type": "heartbeat", "head": 41}) is None
    assert cursor.last_seq == 41 and cursor.head == 41
    assert cursor.accept(event(41)) is None
    assert cursor.accept(event(42)) == event(42)
    assert cursor.accept({"type": "something-new"}) is None
    with pytest.raises(ProtocolError):
        cursor.accept({"type": "event", "seq": "7"})


def test_backoff_grows_with_jitter_and_resets() -> None:
    backoff = Backoff(base=0.1, cap=2.0, floor=0.01)
    delays = [backoff.next_delay() for _ in range(40)]
    assert all(0.01 <= d <= 2.0 for d in delays)
    assert max(delays[10:]) > 0.4  # the ceiling has grown to the cap
    assert len(set(delays)) > 30  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next_delay() <= 0.1


def test_cursor_file_round_trip_is_atomic(tmp_path: Path) -> None:
    cursor = CursorFile(tmp_path / "deep" / "cursor.json")
    assert cursor.load() is None
    cursor.save(7)
    cursor.save(12)
    assert cursor.load() == 12
    assert [p.name for p in cursor.path.parent.iterdir()] == ["cursor.json"]
    cursor.path.write_text("garbage")
    with pytest.raises(ProtocolError, match="unreadable"):
        cursor.load()


def _core(tmp_path: Path, **options: Any) -> tuple[CursorFile, StreamCore]:
    """A stream core of an unreachable daemon that saves its cursor under ``tmp_path``."""
    saved = CursorFile(tmp_path / "cursor.json")
    unset = dict.fromkeys(("session_id", "task_id", "topic", "give_up_after", "backoff"))
    core = StreamCore(
        **{
            "url": "http://127.0.0.1:9",
            "token": "t",
            "cursor_file": str(saved.path),
            "idle_timeout": 30.0,
            **unset,
            **options,
        }
    )
    return saved, core


def test_stream_core_decides_delivery_saving_and_retries(tmp_path: Path) -> None:
    saved, core = _core(
        tmp_path,
        since=5,
        session_id="s1",
        give_up_after=60.0,
        backoff=Backoff(base=0.01, cap=0.02, floor=0.0),
    )
    assert core.target() == "ws://127.0.0.1:9/ws?since=5&session_id=s1&batch=1"
    assert core.connected() is False and core.connected() is True and core.connects == 2
    assert core.received(json.dumps(event(5))) is None  # replayed again: dropped
    assert core.received(json.dumps(event(6))) == event(6)
    assert saved.load() is None  # saved only once the application asks for more
    core.save()
    assert saved.load() == 6 and "since=6" in core.target()
    assert not core.is_idle()
    assert core.receive_timeout(None) == 30.0
    assert core.receive_timeout(time.monotonic() - 1) is None
    # Refusals a retry cannot fix end the stream; the rest are retried.
    assert core.refused(503, b"") is None
    assert isinstance(core.refused(401, b""), AuthenticationError)
    assert core.closed_for_good(None) is None
    assert core.closed_for_good(Close(4008, "resume from 6")) is None
    assert core.closed_for_good(Close(1001, "going away")) is None
    ended = core.closed_for_good(Close(4404, "not yours"))
    assert ended is not None and ended.fatal and "4404 not yours" in str(ended)
    delay, expires = core.retry_delay(time.monotonic(), "refused", None)
    assert 0 <= delay <= 0.02 and not expires
    delay, expires = core.retry_delay(time.monotonic(), "refused", time.monotonic())
    assert delay == 0 and expires
    with pytest.raises(DaemonUnavailable, match="refused"):
        core.retry_delay(time.monotonic() - 61, "refused", None)


def test_stream_core_hands_out_a_batch_one_event_at_a_time(tmp_path: Path) -> None:
    saved, core = _core(tmp_path, since=3)
    # A replay page overlapping what was delivered (2, 3) and repeating an event (5).
    batch = {"type": "events", "events": [event(2), event(3), event(4), event(5), event(5)]}
    assert core.received(json.dumps(batch)) == event(4)
    # The cursor follows what was delivered, not what was received.
    assert core.cursor.last_seq == 4 and "since=4" in core.target()
    core.save()
    assert saved.load() == 4
    assert core.pending() == event(5)
    assert core.pending() is None and core.cursor.last_seq == 5
    # The live event after the batch, and a replayed copy of it, in a one-event message.
    assert core.received(json.dumps(event(6))) == event(6)
    assert core.received(json.dumps({"type": "events", "events": [event(6)]})) is None
    with pytest.raises(ProtocolError, match="malformed batch"):
        core.received(json.dumps({"type": "events", "events": [1]}))
    with pytest.raises(ProtocolError, match="malformed event"):
        core.received(json.dumps({"type": "events", "events": [{"type": "event"}]}))


# -- against the daemon ------------------------------------------------------------------


@pytest.fixture
def own_daemon(sim: Simulator, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon this test may kill and restart without disturbing the module's daemon."""
    process = start_daemon(sim, tmp_path / "state")
    try:
        yield process
    finally:
        process.stop()


def ledger_seqs(globus: GlobusClient) -> list[int]:
    return [e["seq"] for e in globus.iter_history(session_id=globus.session_id)]


def assert_exactly_once_in_order(seen: list[int], ledger: list[int], at_least: int) -> None:
    """``seen`` is the ledger's sequence from its start, with no gap, duplicate or reorder."""
    assert len(seen) >= at_least
    assert seen == ledger[: len(seen)]


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def submit_and_finish(globus: GlobusClient, count: int, tag: str) -> None:
    subs = [
        globus.submit_transfer(SRC, "local", godata_items(f"/~/{tag}{i}/"), label=f"{tag}{i}")
        for i in range(count)
    ]
    for sub in subs:
        assert globus.task_wait(sub["task_id"], timeout=30 * UNIT)["status"] == "SUCCEEDED"


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_subscriber_sees_every_event_once_across_a_daemon_restart(
    own_daemon: DaemonProcess, user: Credentials, how: str
) -> None:
    globus = GlobusClient(own_daemon.url, own_daemon.token)
    globus.register_session(access_token=user.access_token, local_collection=DST)
    seen: list[dict[str, Any]] = []
    subscription = globus.subscribe(seen.append, since=0)
    submit_and_finish(globus, 3, "pre")
    wait_for(lambda: len(seen) >= len(ledger_seqs(globus)))

    # Events keep coming while the daemon dies: a producer thread submits meanwhile.
    producer_done = threading.Event()

    def produce() -> None:
        try:
            for i in range(6):
                try:
                    globus.submit_transfer(SRC, "local", godata_items(f"/~/mid{i}/"))
                except Exception:
                    time.sleep(0.1)  # the daemon is down or the session awaits re-registration
        finally:
            producer_done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.05)
    own_daemon.kill() if how == "kill" else own_daemon.stop()
    own_daemon.start()
    # The restarted daemon knows the session but lost its credential: the client hands the
    # remembered one over by itself (on reconnect and on the first CredentialMissing).
    producer.join(30)
    submit_and_finish(globus, 3, "post")
    for row in globus.list_tasks():
        globus.task_wait(row["task_id"], timeout=30 * UNIT)
    expected = ledger_seqs(globus)
    wait_for(lambda: len(seen) >= len(expected))
    time.sleep(0.3)  # a duplicate would arrive now
    subscription.stop()
    assert subscription.error is None
    assert subscription.connects >= 2
    # Late events may follow the snapshot (a submission the kill left pending is resubmitted
    # once the credential is back), so compare with the ledger as it is now.
    assert_exactly_once_in_order([e["seq"] for e in seen], ledger_seqs(globus), len(expected))
    assert {e["kind"] for e in seen} >= {"session_opened", "task_submitted", "task_state_changed"}
    globus.close()


def test_task_wait_rides_through_a_daemon_crash(
    own_daemon: DaemonProcess, user: Credentials, sim: Simulator
) -> None:
    globus = GlobusClient(own_daemon.url, own_daemon.token)
    globus.register_session(access_token=user.access_token, local_collection=DST)
    sub = globus.submit_transfer(SRC, "local", [dict(BIG[0], destination="/~/crash/")])
    result: dict[str, Any] = {}

    def wait() -> None:
        try:
            result["row"] = globus.task_wait(sub["task_id"], timeout=40 * UNIT)
        except Exception as exc:  # reported by the assertion below
            result["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    own_daemon.kill()
    own_daemon.start()
    time.sleep(0.5)
    sim.finish_task(sub["task_id"])  # it ends while the daemon was away from it
    waiter.join(45)
    assert "error" not in result, result
    assert result["row"]["status"] == "SUCCEEDED"
    assert result["row"]["files_transferred"] == 1
    globus.close()


def test_slow_client_closed_with_4008_resumes_without_loss(
    sim: Simulator, tmp_path: Path, user: Credentials
) -> None:
    process = start_daemon(sim, tmp_path / "state", RADICAL_ORBIT_WS_QUEUE_SIZE="1")
    try:
        globus = GlobusClient(process.url, process.token)
        globus.register_session(access_token=user.access_token, local_collection=DST)
        seen: list[int] = []
        subscription = globus.subscribe(lambda e: seen.append(e["seq"]), since=0)
        subs = [
            globus.submit_transfer(SRC, "local", [dict(BIG[0], destination=f"/~/big{i}/")])
            for i in range(6)
        ]
        time.sleep(0.5)
        sim.finish_all()  # one poller sweep sees six tasks end: a burst over the queue of 1
        for sub in subs:
            globus.task_wait(sub["task_id"], timeout=30 * UNIT)
        expected = ledger_seqs(globus)
        wait_for(lambda: len(seen) >= len(expected))
        time.sleep(0.3)
        subscription.stop()
        assert subscription.error is None
        assert subscription.connects >= 2, "the daemon never closed the slow client"
        assert_exactly_once_in_order(seen, ledger_seqs(globus), len(expected))
        globus.close()
    finally:
        process.stop()


def test_events_iterator_with_cursor_file_continues_after_a_restart(
    globus: GlobusClient, tmp_path: Path
) -> None:
    submit_and_finish(globus, 2, "cur")
    expected = ledger_seqs(globus)
    cursor = tmp_path / "cursor.json"
    first: list[int] = []
    with globus.events(since=0, cursor_file=str(cursor)) as events:
        for ev in events:
            first.append(ev["seq"])
            if len(first) == 3:
                break  # leaving the with block records seq 3 as handled
    # A new "process": the cursor file says where the last one stopped.
    rest: list[int] = []
    with globus.events(since=0, cursor_file=str(cursor)) as stream:
        while len(first) + len(rest) < len(expected):
            more = stream.get(timeout=10 * UNIT)
            assert more is not None
            rest.append(more["seq"])
    assert first + rest == expected
    assert CursorFile(cursor).load() == expected[-1]


def test_cursor_moves_only_past_events_the_application_finished(
    globus: GlobusClient, tmp_path: Path
) -> None:
    """An event handed out but not finished (no next request, no clean close) comes again."""
    submit_and_finish(globus, 1, "unfinished")
    cursor = tmp_path / "cursor.json"
    stream = globus.events(since=0, cursor_file=str(cursor))
    one, two = stream.get(timeout=5 * UNIT), stream.get(timeout=5 * UNIT)
    assert one is not None and two is not None
    stream.close(save=False)  # as if the process died while handling "two"
    with globus.events(cursor_file=str(cursor)) as again:
        replayed = again.get(timeout=5 * UNIT)
    assert replayed is not None and replayed["seq"] == two["seq"]


def test_stream_filters_by_task_and_topic(globus: GlobusClient) -> None:
    submit_and_finish(globus, 2, "filt")
    tasks = globus.list_tasks()
    target = tasks[0]["task_id"]
    with globus.events(since=0, task_id=target) as stream:
        got = [stream.get(timeout=5 * UNIT) for _ in range(2)]
    assert all(e is not None and e["task_id"] == target for e in got)
    with globus.events(since=0, topic="session") as stream:
        opened = stream.get(timeout=5 * UNIT)
    assert opened is not None and opened["kind"] == "session_opened"


def test_calls_after_a_daemon_restart_hand_the_credential_over_again(
    own_daemon: DaemonProcess, user: Credentials
) -> None:
    keeps = GlobusClient(own_daemon.url, own_daemon.token)
    forgets = GlobusClient(own_daemon.url, own_daemon.token, remember_credential=False)
    keeps.register_session(access_token=user.access_token, local_collection=DST)
    forgets.register_session(access_token=user.access_token, local_collection=DST)
    assert user.access_token not in repr(keeps._credential)
    own_daemon.kill()
    own_daemon.start()
    assert keeps.ls("local", "/~/")["DATA_TYPE"] == "file_list"
    with pytest.raises(AuthenticationError) as lost:
        forgets.ls("local", "/~/")
    assert lost.value.code == "CredentialMissing"
    assert "register" in lost.value.message
    keeps.close()
    forgets.close()


def test_a_near_limit_submit_reaches_the_stream_as_one_event(globus: GlobusClient) -> None:
    # Just under the daemon's per-submit budget of 2 MiB of paths, in 2-byte characters:
    # spelt as 6-byte \u escapes, the submit_requested message is about 3x that, beyond
    # the 4 MiB the client once accepted.
    path = "/big-" + "\u00e9" * 4000
    items = [{"source": path, "destination": path + "/", "recursive": False}] * 130
    body = json.dumps({"source": SRC, "destination": DST, "items": items}, ensure_ascii=False)
    assert 2_000_000 < len(body.encode()) < 4 * 2**20
    try:
        globus.submit_transfer(SRC, DST, items, label="near-limit")
    except RequestError as refused:  # Globus may refuse the paths; the request is recorded
        assert refused.status != 413, refused.message
    with globus.events(since=0, topic="task") as stream:
        got = stream.get(timeout=30 * UNIT)
    assert got is not None and got["kind"] == "submit_requested"
    request = got["data"]["request"]
    assert request["label"] == "near-limit"
    assert [item["source"] for item in request["items"]] == [path] * 130
    assert len(json.dumps(got, separators=(",", ":"))) > 2**22
