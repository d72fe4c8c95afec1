"""sd_notify over a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import structlog
from sdnotify_listener import NotifyListener

from radical.orbit.daemon.runtime.sdnotify import SystemdNotifier, status_line, watchdog_loop
from timing import UNIT


def test_messages_arrive_in_order_with_our_pid(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.address})
    assert notifier.enabled
    assert notifier.ready(status=status_line(sessions=0, active_tasks=3, head_seq=42))
    assert notifier.status(status_line(sessions=2, active_tasks=1, head_seq=57))
    assert notifier.watchdog_ping()
    assert notifier.reloading()
    assert notifier.extend_timeout(seconds=90)
    assert notifier.stopping()
    notifier.close()

    got = listener.drain(timeout=0.5 * UNIT)
    assert [m.fields for m in got[:3]] == [
        {"READY": "1", "STATUS": "0 sessions, 3 active tasks, ledger head 42"},
        {"STATUS": "2 sessions, 1 active tasks, ledger head 57"},
        {"WATCHDOG": "1"},
    ]
    assert got[3].keys == ["RELOADING", "MONOTONIC_USEC"]
    assert got[3].fields["RELOADING"] == "1"
    assert int(got[3].fields["MONOTONIC_USEC"]) > 0
    assert got[4].fields == {"EXTEND_TIMEOUT_USEC": "90000000"}
    assert got[5].fields == {"STOPPING": "1"}
    assert len(got) == 6
    assert {m.pid for m in got} == {os.getpid()}


def test_unchanged_status_is_sent_once(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.address})
    first = status_line(sessions=1, active_tasks=0, head_seq=7)
    second = status_line(sessions=1, active_tasks=1, head_seq=8)
    notifier.ready(status=first)
    for text in (first, first, second, second, first):
        assert notifier.status(text)
    got = [m.fields.get("STATUS") for m in listener.drain(timeout=0.3 * UNIT)]
    assert got == [first, second, first]


def test_abstract_namespace_address() -> None:
    name = f"orbit-sdnotify-test-{uuid.uuid4().hex}"
    sock = NotifyListener(abstract=name)
    try:
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        message = sock.recv(timeout=2 * UNIT)
        assert message is not None
        assert message.fields == {"READY": "1"}
    finally:
        sock.close()


def test_status_cannot_inject_assignments(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.address})
    notifier.status("all good\nREADY=1\nMAINPID=1")
    message = listener.recv(timeout=2 * UNIT)
    assert message is not None
    assert message.fields == {"STATUS": "all good READY=1 MAINPID=1"}


def test_inert_without_notify_socket(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(environ={"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog_ping()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None
    assert listener.recv(timeout=0.2 * UNIT) is None


@pytest.mark.parametrize("address", ["", "relative/path.sock", "vsock:2:1234"])
def test_unusable_addresses_turn_notifications_off(address: str) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": address})
    assert not notifier.enabled
    assert not notifier.ready()


def test_send_failure_is_logged_once_not_raised(tmp_path: Path) -> None:
    gone = tmp_path / "gone.sock"
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(gone)})
    assert notifier.enabled
    with structlog.testing.capture_logs() as logs:
        assert notifier.ready() is False
        assert notifier.watchdog_ping() is False
        # The manager comes back: the next send works and says so.
        sock = NotifyListener(path=gone)
        try:
            assert notifier.status("back") is True
            assert sock.recv(timeout=2 * UNIT) is not None
        finally:
            sock.close()
    events = [(entry["log_level"], entry["event"]) for entry in logs]
    assert events == [
        ("warning", "sd_notify send failed"),
        ("info", "sd_notify send works again"),
    ]
    assert logs[0]["message"] == "READY"
    assert "FileNotFoundError" in logs[0]["error"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(
    listener: NotifyListener, environ: dict[str, str], expected: float | None
) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.address, **environ}, pid=4242)
    assert notifier.watchdog_interval() == expected


def test_watchdog_interval_defaults_to_this_process(listener: NotifyListener) -> None:
    env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "3000000"}
    mine = SystemdNotifier(environ={**env, "WATCHDOG_PID": str(os.getpid())})
    other = SystemdNotifier(environ={**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert mine.watchdog_interval() == 1.5
    assert other.watchdog_interval() is None


async def test_watchdog_loop_pings_at_half_the_period(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(
        environ={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
    )
    task = asyncio.create_task(watchdog_loop(notifier))
    await asyncio.sleep(0.45)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pings = [m for m in listener.drain(timeout=0.1 * UNIT) if m.fields == {"WATCHDOG": "1"}]
    # Pings at 0, 0.1, 0.2, 0.3, 0.4 s; a loaded machine shifts them by one either way.
    # (A wrong unit in the interval would give 0-1 or dozens.)
    assert 2 <= len(pings) <= 6


async def test_watchdog_loop_returns_when_watchdog_off(listener: NotifyListener) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": listener.address})
    await asyncio.wait_for(watchdog_loop(notifier), timeout=1 * UNIT)
    assert listener.recv(timeout=0.1 * UNIT) is None


# A small asyncio program: pings run, then a callback blocks the loop with time.sleep.
_BLOCKED_LOOP = textwrap.dedent(
    """
    import asyncio, time
    from radical.orbit.daemon.runtime.sdnotify import SystemdNotifier, watchdog_loop

    async def main():
        notifier = SystemdNotifier()
        dog = asyncio.create_task(watchdog_loop(notifier))
        await asyncio.sleep(0.5)
        notifier.status("blocking")
        time.sleep(1.5)          # the bug we guard against: blocking call on the loop
        notifier.status("unblocked")
        await asyncio.sleep(0.5)
        notifier.stopping()
        dog.cancel()

    asyncio.run(main())
    """
)


def test_blocked_event_loop_stops_watchdog_pings(listener: NotifyListener) -> None:
    env = listener.environ(WATCHDOG_USEC="100000")  # ping every 50 ms
    # Read while the program runs: a message's time is when the listener got it.
    with subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_LOOP], env=env, stderr=subprocess.PIPE
    ) as proc:
        try:
            listener.wait_for("STOPPING", timeout=30 * UNIT)
        finally:
            _, stderr = proc.communicate(timeout=30 * UNIT)
    assert proc.returncode == 0, stderr.decode()
    got = listener.received
    assert got[-1].fields == {"STOPPING": "1"}
    kinds = ["PING" if m.fields == {"WATCHDOG": "1"} else m.fields.get("STATUS") for m in got]
    blocked, unblocked = kinds.index("blocking"), kinds.index("unblocked")
    assert unblocked == blocked + 1, f"pings while the loop was blocked: {kinds}"
    assert kinds[:blocked].count("PING") >= 3
    assert "PING" in kinds[unblocked:]
    # The gap between the last ping before and the first after spans the whole block.
    before = max(m.time for m in got[:blocked] if m.fields == {"WATCHDOG": "1"})
    after = min(m.time for m in got[unblocked:] if m.fields == {"WATCHDOG": "1"})
    # (1.5 s blocked; the margin absorbs the listener being scheduled late.)
    assert after - before >= 1.0
    assert {m.pid for m in got} == {got[0].pid} != {os.getpid()}
