"""Fixtures for the systemd tests: a real NOTIFY_SOCKET listener."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdnotify_listener import NotifyListener

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_SUN_PATH_MAX = 107


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    path = tmp_path / "notify.sock"
    if len(str(path)) > _SUN_PATH_MAX:
        # pytest's tmp_path grows with the test name; keep a short path instead.
        with tempfile.TemporaryDirectory(prefix="sdn-") as short:
            sock = NotifyListener(path=Path(short) / "notify.sock")
            yield sock
            sock.close()
        return
    sock = NotifyListener(path=path)
    yield sock
    sock.close()
