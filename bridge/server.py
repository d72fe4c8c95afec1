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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

# The endpoint daemon's sd_notify client: the same protocol, one implementation.
from ..daemon.runtime.sdnotify import SystemdNotifier, watchdog_loop
from .app import Bridge, create_app
from .config import BridgeConfig
from .errors import ConfigError
from .registry import Registry

__all__ = ["serve", "status_text"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: :func:`serve` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted sockets (see the daemon's).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def _uvicorn_config(app: Any, config: BridgeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        # Endpoint link frames carry whole relayed bodies (4 MiB, base64) and events.
        ws_max_size=16 << 20,
        ws_per_message_deflate=False,
        ws_ping_interval=10.0,
        ws_ping_timeout=20.0,
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
    )


def status_text(bridge: Bridge) -> str:
    links = bridge.links.all()
    streams = sum(link.in_flight for link in links)
    return f"{len(links)} endpoints online, {streams} requests and streams in flight"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


async def _status_loop(notifier: SystemdNotifier, bridge: Bridge) -> None:
    while True:
        notifier.status(status_text(bridge))
        await asyncio.sleep(5)


async def serve(config: BridgeConfig) -> int:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    notifier = SystemdNotifier()
    bridge = Bridge(config, Registry(config.state_dir))
    sock = _bind(config.host, config.port)
    server = _Server(_uvicorn_config(create_app(bridge), config))
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
    _write_json(info_file, {"url": url, "pid": os.getpid()})
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
