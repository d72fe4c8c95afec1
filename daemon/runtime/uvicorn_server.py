"""The uvicorn server the daemon and the bridge run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["Server", "server_config"]


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's settings for ``app``: ``options`` (the server's own) over what both servers
    want. The process starts and stops itself (no lifespan events), sets up logging and
    logs what it needs itself (no log config, no access log). WebSocket messages go out
    uncompressed: compressing each one for each of a thousand clients costs CPU and a
    zlib context (~100 kB) per connection for little gain."""
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        ws_per_message_deflate=False,
        **options,
    )


class Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process's main owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
