"""Refused WebSocket handshakes: a 401 each, one log line per source per interval.

Before, every handshake without a valid token logged uvicorn's "ASGI callable returned
without completing handshake." at ERROR: anyone who could reach the port could fill the
daemon's log.
"""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from radical.orbit.daemon.runtime.launcher import DaemonProcess


async def test_refused_handshakes_are_logged_once_per_source(daemon: DaemonProcess) -> None:
    before = daemon.log_path.read_text()
    for _ in range(20):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                daemon.ws_url, additional_headers={"Authorization": "Bearer wrong"}
            )
        assert refused.value.response.status_code == 401
    log = daemon.log_path.read_text()[len(before) :]
    assert "without completing handshake" not in log
    assert log.count("websocket handshake refused") == 1
