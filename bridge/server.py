"""``orbit-globus-bridge serve``: bind, serve (TLS when configured), notify systemd, stop.

Startup order: state folder -> socket bound -> serving -> ``bridge.json`` -> READY=1.
Shutdown on SIGTERM/SIGINT: STOPPING=1, stop accepting, close every link and stream (links
reconnect to the next bridge process by themselves, clients resume from their cursors).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from typing import Any

import uvicorn

# The endpoint daemon's socket, state file, uvicorn server and sd_notify client: one
# implementation of each.
from ..daemon.runtime.address import bind_tcp
from ..daemon.runtime.private_files import write_private
from ..daemon.runtime.sdnotify import SystemdNotifier, watchdog_loop
from ..daemon.runtime.uvicorn_server import Server, server_config
from .app import Bridge, create_app
from .config import BridgeConfig
from .errors import ConfigError
from .registry import Registry

__all__ = ["serve", "status_text"]

log = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    try:
        return bind_tcp(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _uvicorn_config(app: Any, config: BridgeConfig) -> uvicorn.Config:
    return server_config(
        app,
        ws="websockets-sansio",
        timeout_graceful_shutdown=5,
        # Endpoint link frames carry whole relayed bodies (4 MiB, base64) and events.
        ws_max_size=16 << 20,
        ws_ping_interval=10.0,
        ws_ping_timeout=20.0,
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
    )


def status_text(bridge: Bridge) -> str:
    links = bridge.links.all()
    streams = sum(link.in_flight for link in links)
    return f"{len(links)} endpoints online, {streams} requests and streams in flight"


async def _status_loop(notifier: SystemdNotifier, bridge: Bridge) -> None:
    while True:
        notifier.status(status_text(bridge))
        await asyncio.sleep(5)


async def serve(config: BridgeConfig) -> int:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    notifier = SystemdNotifier()
    bridge = Bridge(config, Registry(config.state_dir))
    sock = _bind(config.host, config.port)
    server = Server(_uvicorn_config(create_app(bridge), config))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.005)
    if serving.done():
        serving.result()
        return 1
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"{'https' if config.tls else 'http'}://{host}:{port}"
    info_file = config.state_dir / "bridge.json"
    write_private(info_file, json.dumps({"url": url, "pid": os.getpid()}))
    notifier.ready(status=status_text(bridge))
    log.info("listening on %s (state %s)", url, config.state_dir)
    helpers = [
        asyncio.create_task(watchdog_loop(notifier), name="watchdog"),
        asyncio.create_task(_status_loop(notifier, bridge), name="status"),
    ]
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down")
        notifier.stopping()
        for link in bridge.links.all():
            bridge.links.detach(link)
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
    finally:
        for task in (*helpers, stopped):
            task.cancel()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(info_file.read_text()).get("pid") == os.getpid():
                info_file.unlink()
        notifier.close()
    return 0
