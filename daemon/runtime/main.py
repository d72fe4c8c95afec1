"""``orbit-globus-endpoint``: run the daemon (``serve``) or manage its tokens (``token``).

Startup order: state folder and tokens -> ledger -> sessions and event hub -> socket bound
and serving -> ``endpoint.json`` -> READY. Shutdown on SIGTERM/SIGINT: STOPPING, refuse new
WebSockets and close open ones with 1001 "going away", stop accepting HTTP and let running
requests finish (their ledger appends commit), stop poller/submitter, close the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn

from ...ledger.retention import prune_file
from ..api.auth import TokenStore, credential_hash
from ..api.routes import create_app
from ..api.websocket import Connections
from ..errors import ConfigError, DaemonError
from ..service.endpoint import EndpointService
from ..service.store import Store
from .address import listen
from .config import Config, load_config
from .housekeeping import retention_loop
from .logs import announce, configure_logging, get_logger
from .memory import collect_cycles, freeze_startup_objects, limit_malloc_arenas
from .sdnotify import SystemdNotifier, status_line, watchdog_loop

__all__ = ["main", "serve"]

log = get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: our main owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


async def _status_loop(notifier: SystemdNotifier, endpoint: EndpointService) -> None:
    while True:
        sessions, active, head = await endpoint.status_counts()
        notifier.status(status_line(sessions=sessions, active_tasks=active, head_seq=head))
        await asyncio.sleep(5)


def _lock_state_dir(state_dir: Path) -> int:
    """Hold an exclusive lock on the state folder for the life of the process.

    Two daemons on one ledger would poll and resubmit twice; the kernel drops the lock when
    the process ends, even by SIGKILL, so a crash never leaves a stale lock behind.
    """
    fd = os.open(state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DaemonError(
            f"another daemon (pid {holder}) uses the state folder {state_dir}; stop it or "
            "give this one another --state-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        ws="websockets-sansio",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        ws_max_size=1 << 20,
        # Messages are small JSON; compressing each one for each of a thousand clients
        # costs CPU and a zlib context (~100 kB) per connection for little gain.
        ws_per_message_deflate=False,
        h11_max_incomplete_event_size=64 * 1024,
    )


async def serve(config: Config) -> int:
    notifier = SystemdNotifier()
    tokens = TokenStore(config.state_dir, default_hash=credential_hash(os.environ))
    if tokens.ensure():
        announce(f"client token written to {tokens.token_path}", path=str(tokens.token_path))
    lock = _lock_state_dir(config.state_dir)
    # Bind before opening the ledger: a taken port fails fast, with nothing to undo.
    listening = listen(
        host=config.host,
        configured=config.port,
        state_dir=config.state_dir,
        fallback=config.port_fallback,
    )
    if listening.moved_from is not None:
        log.warning(
            "port taken, listening on another",
            taken=listening.moved_from,
            port=listening.port,
            endpoint_file=str(config.state_dir / "endpoint.json"),
        )
    sock = listening.sock
    store = await Store.open(config.ledger_path)
    endpoint = EndpointService(config, store=store, tokens=tokens)
    endpoint_file = config.state_dir / "endpoint.json"
    try:
        await endpoint.start()
        return await _run(config, endpoint, sock, notifier, endpoint_file)
    finally:
        await endpoint.close()
        await store.close()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(endpoint_file.read_text()).get("pid") == os.getpid():
                endpoint_file.unlink()
        notifier.close()
        os.close(lock)
        log.info("stopped")


async def _run(
    config: Config,
    endpoint: EndpointService,
    sock: socket.socket,
    notifier: SystemdNotifier,
    endpoint_file: Path,
) -> int:
    connections = Connections()
    server = _Server(_uvicorn_config(create_app(endpoint, connections)))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    # uvicorn offers no "started" event to await; poll its flag briefly.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if serving.done():
        serving.result()
        return 1
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}"
    _write_json(endpoint_file, {"url": url, "name": config.name, "pid": os.getpid()})
    sessions, active, head = await endpoint.status_counts()
    frozen = freeze_startup_objects()
    notifier.ready(status=status_line(sessions=sessions, active_tasks=active, head_seq=head))
    log.info(
        "listening",
        url=url,
        name=config.name,
        state_dir=str(config.state_dir),
        poll_interval=config.poll_interval,
        local_collection=endpoint.default_local,
        frozen_objects=frozen,
    )
    helpers = [
        asyncio.create_task(watchdog_loop(notifier), name="watchdog"),
        asyncio.create_task(_status_loop(notifier, endpoint), name="status"),
        asyncio.create_task(collect_cycles(), name="gc"),
    ]
    if config.retention_days is not None:
        helpers.append(
            asyncio.create_task(
                retention_loop(endpoint, days=config.retention_days), name="retention"
            )
        )
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, serving}, return_when=asyncio.FIRST_COMPLETED)

    log.info("shutting down")
    notifier.stopping()
    await connections.close_all()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await serving
    for task in (*helpers, stopped):
        task.cancel()
    return 0


def _parser() -> argparse.ArgumentParser:
    # SUPPRESS everywhere: an option given before the subcommand must not be reset to a
    # default by the subcommand's parser (argparse applies sub-parser defaults last).
    parser = argparse.ArgumentParser(
        argument_default=argparse.SUPPRESS,
        prog="orbit-globus-endpoint",
        description="Endpoint daemon orchestrating Globus transfers.",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser(
        "serve", help="run the daemon (the default)", argument_default=argparse.SUPPRESS
    )
    for p in (parser, run):
        p.add_argument("--state-dir", help="state folder (ledger, tokens, endpoint.json)")
        p.add_argument("--host", help="bind address (default 127.0.0.1)")
        p.add_argument(
            "--port",
            type=int,
            help="port (default: the one this state folder's daemon bound before, else any"
            " free one; 0: any free port at every start)",
        )
        p.add_argument("--name", help="endpoint name (default: the host name)")
        p.add_argument("--poll-interval", type=float, help="seconds between sweeps (default 10)")
        p.add_argument("--local-collection", help='collection UUID that "local" means')
        p.add_argument("--config", help="TOML configuration file")
        p.add_argument("--log-level", help="debug, info, warning, error")
    token = sub.add_parser("token", help="manage client tokens", argument_default=argparse.SUPPRESS)
    token_sub = token.add_subparsers(dest="action", required=True)
    add = token_sub.add_parser(
        "add", help="create a named client token and print it", argument_default=argparse.SUPPRESS
    )
    add.add_argument("name")
    add.add_argument("--state-dir")
    add.add_argument("--quiet", action="store_true", help="print only the token")
    lst = token_sub.add_parser("list", help="list token names", argument_default=argparse.SUPPRESS)
    lst.add_argument("--state-dir")
    prune = sub.add_parser(
        "prune",
        help="delete the events of tasks finished before DATE (each task keeps its row)",
        argument_default=argparse.SUPPRESS,
    )
    prune.add_argument(
        "--before",
        required=True,
        metavar="DATE",
        help="ISO 8601 date or time (local unless it carries an offset) or Unix seconds",
    )
    prune.add_argument("--state-dir")
    prune.add_argument("--config")
    prune.add_argument(
        "--vacuum",
        action="store_true",
        help="then shrink the file (rewrites it; best with the daemon stopped)",
    )
    return parser


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--before {text!r}: give an ISO 8601 date or time (2026-01-31, 2026-01-31T12:00,"
            " local unless it carries an offset) or Unix seconds"
        ) from None
    return (value.astimezone() if value.tzinfo is None else value).timestamp()


def _prune(config: Config, *, before: str, vacuum: bool) -> int:
    if not config.ledger_path.exists():
        raise ConfigError(f"no ledger at {config.ledger_path}; give --state-dir")
    result = prune_file(config.ledger_path, before=_when(before), vacuum=vacuum)
    print(
        json.dumps(
            {
                "tasks": result.tasks,
                "failed_submits": result.failed_submits,
                "events": result.events,
                "pruned_through": result.pruned_through,
            }
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {
        key: getattr(args, key, None)
        for key in (
            "state_dir",
            "host",
            "port",
            "name",
            "poll_interval",
            "local_collection",
            "log_level",
        )
    }
    try:
        config = load_config(
            flags=flags,
            config_file=Path(args.config) if getattr(args, "config", None) else None,
        )
        if getattr(args, "command", None) == "prune":
            return _prune(config, before=args.before, vacuum=getattr(args, "vacuum", False))
        if getattr(args, "command", None) == "token":
            tokens = TokenStore(config.state_dir)
            if args.action == "add":
                value = tokens.add(args.name)
                if not getattr(args, "quiet", False):
                    print(
                        f"token {args.name!r} (shown once; give it to the client):", file=sys.stderr
                    )
                print(value)
            else:
                tokens.ensure()
                print("\n".join(tokens.names()))
            return 0
        configure_logging(level=config.log_level)
        limit_malloc_arenas()  # before the ledger and executor threads exist
        return asyncio.run(serve(config))
    except DaemonError as exc:
        announce(exc.message, level="error", status=2)
        return 2
