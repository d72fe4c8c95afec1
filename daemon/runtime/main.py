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
import dataclasses
import fcntl
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from ...ledger.errors import LedgerError
from ...ledger.retention import prune_file
from ...protocol import parse_time_text
from ..api.auth import TokenStore, credential_hash, parse_bearer
from ..api.bridge_link import start_link
from ..api.connections import ConnectionGuard, DenyingWebSocketProtocol, guarded_protocol
from ..api.routes import create_app
from ..api.websocket import Connections
from ..errors import ConfigError, DaemonError, LedgerUnusable
from ..service.endpoint import EndpointService
from ..service.store import Store
from .address import listen
from .config import OPTION_NAMES, Config, load_config
from .housekeeping import retention_loop
from .ledger_check import SeqMark, check_ledger
from .logs import announce, configure_logging, get_logger
from .memory import collect_cycles, freeze_startup_objects, limit_malloc_arenas
from .private_files import write_private
from .resources import ResourceErrorLog, connection_budget, raise_nofile_limit
from .sdnotify import SystemdNotifier, status_line, watchdog_loop
from .uvicorn_server import Server, server_config

__all__ = ["main", "serve"]

log = get_logger(__name__)


async def _status_loop(notifier: SystemdNotifier, endpoint: EndpointService) -> None:
    while True:
        sessions, active, head = await endpoint.status_counts()
        notifier.status(status_line(sessions=sessions, active_tasks=active, head_seq=head))
        await asyncio.sleep(5)


def _make_private(state_dir: Path, *files: Path) -> None:
    """Mode 0700 for the state folder and 0600 for the files in it that exist.

    The umask covers what this process creates; an existing folder (made by hand, or by
    an older version) and files SQLite created before (-wal and -shm follow the database
    file's mode only when they are made) are tightened here at every start.
    """
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)


def _state_files(config: Config) -> list[Path]:
    ledger = config.ledger_path
    names = ("token", "tokens.json", "endpoint.json", "daemon.lock")
    return [
        ledger,
        ledger.with_name(ledger.name + "-wal"),
        ledger.with_name(ledger.name + "-shm"),
        *(config.state_dir / name for name in names),
    ]


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


# A request body gets this many times the header timeout (a 4 MiB body on a slow link).
BODY_TIMEOUT_FACTOR = 6
# Connections asyncio accepts per turn of the event loop (its backlog argument): small, so
# a flood cannot take many descriptors before the guard sees them, nor push a fresh
# client's connection out of the untrusted pool before its first bytes are read.
_ACCEPT_BATCH = 128
# The kernel's queue of connections waiting for accept: deep, so a flood fills it less
# easily and a client's SYN is not dropped (a dropped SYN costs the client a 1 s retry).
_LISTEN_QUEUE = 4096


def _authorizer(tokens: TokenStore) -> Any:
    def authorized(header: bytes) -> bool:
        try:
            tokens.verify(parse_bearer(header.decode("latin-1")))
        except DaemonError:
            return False
        return True

    return authorized


def _uvicorn_config(app: Any, *, config: Config, tokens: TokenStore, nofile: int) -> uvicorn.Config:
    # Descriptors asyncio may have accepted before the guard admits them (two turns).
    connections = connection_budget(
        wanted=config.max_connections, nofile=nofile - 2 * _ACCEPT_BATCH
    )
    guard = ConnectionGuard(max_connections=connections, max_untrusted=config.max_untrusted)
    return server_config(
        app,
        http=guarded_protocol(
            guard=guard,
            authorized=_authorizer(tokens),
            header_timeout=config.header_timeout,
            body_timeout=config.header_timeout * BODY_TIMEOUT_FACTOR,
        ),
        # Everything open (HTTP and WebSocket) beyond the guard's cap answers 503.
        limit_concurrency=connections + 64,
        backlog=_ACCEPT_BATCH,
        ws=DenyingWebSocketProtocol,
        timeout_graceful_shutdown=10,
        ws_max_size=1 << 20,
        h11_max_incomplete_event_size=64 * 1024,
    )


async def _open_ledger(config: Config, mark: SeqMark) -> Store:
    """Check the ledger, open it above the high-water mark, and keep the mark current."""
    path = config.ledger_path
    own = await asyncio.to_thread(check_ledger, path, high_water=mark.value)
    try:
        store = await Store.open(path, min_seq=mark.value)
    except (LedgerError, sqlite3.DatabaseError) as exc:
        raise LedgerUnusable(
            f"the ledger {path} cannot be opened: {exc}. If it was written by a newer "
            "orbit-globus, run that version (or restore the backup taken before the "
            "upgrade); otherwise restore it from a backup (docs/operations.md, section 6)"
        ) from None
    if own < mark.value:
        log.warning(
            "the ledger is older than this state folder (restored from a backup?): new "
            "events continue after the seqs clients may already hold",
            ledger_high_water=own,
            next_seq=mark.value + 1,
        )
    mark.open(await store.head())
    store.attach(mark)
    return store


async def serve(config: Config) -> int:
    nofile = raise_nofile_limit()
    asyncio.get_running_loop().set_exception_handler(ResourceErrorLog())
    # Everything the daemon creates is private to its uid (the ledger's -wal and -shm
    # included, which SQLite creates with 0644 under the common umask 022).
    os.umask(0o077)
    _make_private(config.state_dir, *_state_files(config))
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
    mark = SeqMark(config.state_dir)
    try:
        store = await _open_ledger(config, mark)
    except BaseException:
        sock.close()
        os.close(lock)
        raise
    _make_private(config.state_dir, *_state_files(config))
    endpoint = EndpointService(config, store=store, tokens=tokens)
    endpoint_file = config.state_dir / "endpoint.json"
    try:
        await endpoint.start()
        return await _run(config, endpoint, sock, notifier, endpoint_file, nofile=nofile)
    finally:
        await endpoint.close()
        await store.close()
        mark.close()
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
    *,
    nofile: int,
) -> int:
    connections = Connections()
    app = create_app(endpoint, connections)
    server = Server(_uvicorn_config(app, config=config, tokens=endpoint.tokens, nofile=nofile))
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
    # asyncio listened with the accept batch as queue length; listen() again only deepens
    # the kernel's queue (Linux allows it on a listening socket).
    sock.listen(_LISTEN_QUEUE)
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{port}"
    write_private(endpoint_file, json.dumps({"url": url, "name": config.name, "pid": os.getpid()}))
    # Before READY: a bridge_url without an enrollment token is a configuration error.
    link = start_link(config, endpoint, app, os.environ)
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
        open_files_limit=nofile,
    )
    helpers = [
        asyncio.create_task(watchdog_loop(notifier), name="watchdog"),
        asyncio.create_task(_status_loop(notifier, endpoint), name="status"),
        asyncio.create_task(collect_cycles(), name="gc"),
        asyncio.create_task(_watch_tokens(endpoint, connections), name="tokens"),
    ]
    if link is not None:
        helpers.append(link)
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


# Seconds between looks at tokens.json: a deleted token's WebSockets close within this.
TOKEN_WATCH_INTERVAL = 0.5


async def _watch_tokens(endpoint: EndpointService, connections: Connections) -> None:
    """Close the WebSockets of deleted tokens at once (``token delete`` is another process;
    under systemd it cannot even signal this one, so the file is watched)."""
    while True:
        await asyncio.sleep(TOKEN_WATCH_INTERVAL)
        revoked = endpoint.tokens.reload_if_changed()
        if revoked:
            closed = await connections.close_owned_by(revoked)
            log.warning("client tokens revoked", websockets_closed=closed)


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
    delete = token_sub.add_parser(
        "delete",
        help="revoke a named client token (a running daemon closes its connections)",
        argument_default=argparse.SUPPRESS,
    )
    delete.add_argument("name")
    delete.add_argument("--state-dir")
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
        return parse_time_text(text)
    except ValueError:
        raise ConfigError(
            f"--before {text!r}: give an ISO 8601 date or time (2026-01-31, 2026-01-31T12:00,"
            " local unless it carries an offset) or Unix seconds"
        ) from None


def _prune(config: Config, *, before: str, vacuum: bool) -> int:
    if not config.ledger_path.exists():
        raise ConfigError(f"no ledger at {config.ledger_path}; give --state-dir")
    result = prune_file(config.ledger_path, before=_when(before), vacuum=vacuum)
    print(json.dumps(dataclasses.asdict(result)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {key: value for key, value in vars(args).items() if key in OPTION_NAMES}
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
            elif args.action == "delete":
                tokens.delete(args.name)
                print(f"token {args.name!r} deleted", file=sys.stderr)
            else:
                tokens.ensure()
                print("\n".join(tokens.names()))
            return 0
        configure_logging(level=config.log_level)
        limit_malloc_arenas()  # before the ledger and executor threads exist
        return asyncio.run(serve(config))
    except DaemonError as exc:
        announce(exc.message, level="error", status=exc.exit_status)
        return exc.exit_status
