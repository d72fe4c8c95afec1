"""A daemon that dies in the middle of a WebSocket handshake must not end an event stream.

Found by the end-to-end state machine: a subscription reconnecting while the daemon was
killed got ``ConnectionClosedError`` out of websockets' ``connect()`` (raised while the
handshake request was being sent on a connection the peer had already closed), and the
subscription thread ended for good. A listening socket that closes every connection at
once stands in for the dying daemon: the stream must keep retrying until ``give_up_after``
and then say ``DaemonUnavailable``, for the blocking and the asyncio streams alike.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from radical.orbit import AsyncEventStream, DaemonUnavailable, EventStream
from radical.orbit.client.stream import Backoff
from timing import UNIT

ATTEMPTS_WANTED = 60


class ClosingServer:
    """Accepts TCP connections and closes each one before answering the handshake."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.shutdown(socket.SHUT_WR)
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    s = ClosingServer()
    try:
        yield s
    finally:
        s.close()


def stream_options(server: ClosingServer) -> dict[str, Any]:
    """A stream of the closing server that retries fast and gives up after a second."""
    return {
        "url": f"http://127.0.0.1:{server.port}",
        "token": "t",
        "since": 0,
        "give_up_after": 1.0,
        "backoff": Backoff(base=0.005, cap=0.01, floor=0.005),
    }


def test_blocking_stream_survives_handshakes_cut_short(server: ClosingServer) -> None:
    stream = EventStream(**stream_options(server))
    with pytest.raises(DaemonUnavailable):
        stream.get(timeout=10 * UNIT)
    stream.close(save=False)
    # Enough attempts that some were cut while sending the request (about a third are).
    assert server.accepted >= ATTEMPTS_WANTED


async def test_async_stream_survives_handshakes_cut_short(server: ClosingServer) -> None:
    stream = AsyncEventStream(**stream_options(server))
    with pytest.raises(DaemonUnavailable):
        await asyncio.wait_for(stream.get(timeout=10 * UNIT), 15)
    await stream.aclose(save=False)
    assert server.accepted >= ATTEMPTS_WANTED
