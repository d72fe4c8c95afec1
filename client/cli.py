"""``orbit-globus``: the command-line client of the orbit endpoint daemon.

Exit codes (:data:`EXIT_CODES`): 0 success; 1 the task ended FAILED; 2 usage or
configuration error; 3 the daemon answered the request with an error; 4 the daemon is
unreachable; 5 a wait timed out with the task still running.

Globus credentials are read from the environment (``GLOBUS_ACCESS_TOKEN``, or
``GLOBUS_REFRESH_TOKEN`` + ``GLOBUS_CLIENT_ID``) or from files, never from the command line
where every user of the machine could read them in the process list.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .bridge import BridgeClient
from .errors import (
    ArgumentError,
    ConfigurationError,
    DaemonUnavailable,
    NoSessionError,
    OrbitError,
    RequestError,
    TaskFailed,
    TaskWaitTimeout,
)
from .globus import GlobusClient
from .render import ProgressBoard, record, table

__all__ = ["EXIT_CODES", "build_parser", "main"]

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_REQUEST_FAILED = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_TASK_FAILED: "the task ended FAILED",
    EXIT_USAGE: "usage or configuration error",
    EXIT_REQUEST_FAILED: "the daemon answered the request with an error",
    EXIT_UNREACHABLE: "the daemon is unreachable",
    EXIT_TIMEOUT: "timed out waiting; the task is still running",
}

ENV_SESSION = "RADICAL_ORBIT_SESSION"

TASK_COLUMNS = [
    ("task_id", "Task ID"),
    ("type", "Type"),
    ("status", "Status"),
    ("label", "Label"),
    ("bytes_transferred", "Bytes"),
    ("files_transferred", "Files"),
    ("request_time", "Requested"),
]
TASK_FIELDS = [
    "task_id",
    "session_id",
    "type",
    "status",
    "nice_status",
    "label",
    "source",
    "destination",
    "bytes_transferred",
    "files_transferred",
    "fatal_error",
    "request_time",
    "completion_time",
    "last_seq",
]
EVENT_COLUMNS = [
    ("seq", "Seq"),
    ("time", "Time"),
    ("kind", "Kind"),
    ("task_id", "Task ID"),
    ("status", "Status"),
]
LS_COLUMNS = [
    ("permissions", "Permissions"),
    ("user", "User"),
    ("size", "Size"),
    ("last_modified", "Last Modified"),
    ("type", "Type"),
    ("name", "Filename"),
]


class UsageError(OrbitError):
    """A command line that cannot run as given (exit code 2)."""


class Context:
    """What every command needs: parsed options, output streams, and lazily made clients."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._bridge: BridgeClient | None = None
        self._globus: GlobusClient | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.format == "json")

    def bridge(self) -> BridgeClient:
        if self._bridge is None:
            self._bridge = BridgeClient(self.args.url, self.args.token)
        return self._bridge

    def globus(self, *, need_session: bool = True) -> GlobusClient:
        """The plugin client, bound to --session / $RADICAL_ORBIT_SESSION (or a new session)."""
        if self._globus is None:
            bridge = self.bridge()
            name = self.args.endpoint or bridge.list_endpoints()[0]
            client = bridge.get_endpoint_client(name).get_plugin("globus")
            client.session_id = self.args.session or os.environ.get(ENV_SESSION) or None
            self._globus = client
            if need_session and client.session_id is None:
                self._register_from_environment(client)
        return self._globus

    def _register_from_environment(self, client: GlobusClient) -> None:
        creds = credentials(self.args)
        if not creds:
            raise NoSessionError(
                f"no session: pass --session SID or set {ENV_SESSION} (from 'orbit-globus"
                " session register'), or set GLOBUS_ACCESS_TOKEN (or GLOBUS_REFRESH_TOKEN and"
                " GLOBUS_CLIENT_ID) to register one for this command"
            )
        answer = client.register_session(**creds, local_collection=self.args.local_collection)
        print(
            f"registered session {answer['sid']}; reuse it with:"
            f" export {ENV_SESSION}={answer['sid']}",
            file=self.err,
        )

    def emit(self, document: Any, text: str | Callable[[], str]) -> None:
        if self.json:
            print(json.dumps(document, indent=2, sort_keys=True, default=str), file=self.out)
        else:
            print(text() if callable(text) else text, file=self.out)

    def close(self) -> None:
        if self._bridge is not None:
            self._bridge.close()


def _read_secret(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def credentials(args: argparse.Namespace) -> dict[str, str]:
    """Globus credentials from --*-token-file options, else the environment; {} if none."""
    access = _read_secret(getattr(args, "access_token_file", None)) or os.environ.get(
        "GLOBUS_ACCESS_TOKEN"
    )
    refresh = _read_secret(getattr(args, "refresh_token_file", None)) or os.environ.get(
        "GLOBUS_REFRESH_TOKEN"
    )
    client_id = getattr(args, "client_id", None) or os.environ.get("GLOBUS_CLIENT_ID")
    if refresh and client_id:
        return {"refresh_token": refresh, "client_id": client_id}
    if access:
        return {"access_token": access}
    if refresh:
        raise UsageError("a refresh token needs a client id: set GLOBUS_CLIENT_ID or --client-id")
    return {}


# Commands


def cmd_endpoints(ctx: Context) -> int:
    endpoints = ctx.bridge().describe_endpoints()
    columns = [
        ("name", "Name"),
        ("version", "Version"),
        ("plugins", "Plugins"),
        ("local_collection", "Local Collection"),
    ]
    ctx.emit({"endpoints": endpoints}, lambda: table(endpoints, columns))
    return EXIT_OK


def cmd_session_register(ctx: Context) -> int:
    creds = credentials(ctx.args)
    if not creds:
        raise UsageError(
            "no Globus credential: set GLOBUS_ACCESS_TOKEN (or GLOBUS_REFRESH_TOKEN and"
            " GLOBUS_CLIENT_ID), or pass --access-token-file / --refresh-token-file"
        )
    client = ctx.globus(need_session=False)
    answer = client.register_session(
        **creds, local_collection=ctx.args.local_collection, sid=ctx.args.session
    )
    ctx.emit(
        answer,
        lambda: (
            f"{record(answer, ['sid', 'local_collection'])}\n\nexport {ENV_SESSION}={answer['sid']}"
        ),
    )
    return EXIT_OK


def cmd_session_unregister(ctx: Context) -> int:
    client = ctx.globus(need_session=False)
    if ctx.args.sid:
        client.session_id = ctx.args.sid
    if client.session_id is None:
        raise UsageError(f"which session? pass SID, --session SID or set {ENV_SESSION}")
    answer = client.unregister_session()
    ctx.emit(answer, lambda: f"session {answer.get('sid')} closed")
    return EXIT_OK


def _submitted(ctx: Context, answer: dict[str, Any]) -> int:
    ctx.emit(answer, lambda: record(answer, ["task_id", "submission_id", "status"]))
    if ctx.args.wait:
        return _wait(ctx, answer["task_id"], quiet_json=True)
    return EXIT_OK


def cmd_transfer(ctx: Context) -> int:
    args = ctx.args
    items: list[dict[str, Any]] = []
    if args.source_path is not None:
        if args.dest_path is None:
            raise UsageError("give both SOURCE_PATH and DEST_PATH, or use --item")
        items.append(
            {"source": args.source_path, "destination": args.dest_path, "recursive": args.recursive}
        )
    for src, dst in args.item or []:
        items.append({"source": src, "destination": dst, "recursive": args.recursive})
    if not items:
        raise UsageError("nothing to transfer: give SOURCE_PATH DEST_PATH or --item SRC DST")
    answer = ctx.globus().submit_transfer(
        args.source,
        args.destination,
        items,
        label=args.label,
        sync_level=args.sync_level,
        verify_checksum=args.verify_checksum,
        preserve_timestamp=args.preserve_timestamp,
    )
    return _submitted(ctx, answer)


def cmd_delete(ctx: Context) -> int:
    args = ctx.args
    answer = ctx.globus().delete(args.collection, args.paths, args.recursive, args.label)
    return _submitted(ctx, answer)


def cmd_task_show(ctx: Context) -> int:
    row = ctx.globus().get_task(ctx.args.task_id)
    ctx.emit(row, lambda: record(row, TASK_FIELDS))
    return EXIT_OK


def cmd_task_list(ctx: Context) -> int:
    rows = ctx.globus().list_tasks(ctx.args.limit, offset=ctx.args.offset, status=ctx.args.status)
    ctx.emit({"tasks": rows}, lambda: table(rows, TASK_COLUMNS))
    return EXIT_OK


def _wait(ctx: Context, task_id: str, *, quiet_json: bool = False) -> int:
    args = ctx.args
    try:
        row = ctx.globus().task_wait(
            task_id, timeout=args.timeout, polling_interval=args.polling_interval
        )
    except TaskWaitTimeout as exc:
        print(f"orbit-globus: {exc}", file=ctx.err)
        return EXIT_TIMEOUT
    if not (quiet_json and ctx.json):
        ctx.emit(row, lambda: record(row, TASK_FIELDS))
    return EXIT_TASK_FAILED if row.get("status") == "FAILED" else EXIT_OK


def cmd_task_wait(ctx: Context) -> int:
    return _wait(ctx, ctx.args.task_id)


def cmd_task_cancel(ctx: Context) -> int:
    answer = ctx.globus().cancel_task(ctx.args.task_id)
    ctx.emit(answer, lambda: f"{answer.get('code')}: {answer.get('message')}")
    return EXIT_OK


def cmd_ls(ctx: Context) -> int:
    listing = ctx.globus().ls(ctx.args.collection, ctx.args.path)
    entries = listing.get("DATA") or []

    def text() -> str:
        if ctx.args.long:
            return table(entries, LS_COLUMNS)
        return "\n".join(e["name"] + ("/" if e.get("type") == "dir" else "") for e in entries)

    ctx.emit(listing, text)
    return EXIT_OK


def cmd_mkdir(ctx: Context) -> int:
    answer = ctx.globus().mkdir(ctx.args.collection, ctx.args.path)
    ctx.emit(answer, lambda: f"{answer.get('code')}: {answer.get('message')}")
    return EXIT_OK


def cmd_rename(ctx: Context) -> int:
    answer = ctx.globus().rename(ctx.args.collection, ctx.args.oldpath, ctx.args.newpath)
    ctx.emit(answer, lambda: f"{answer.get('code')}: {answer.get('message')}")
    return EXIT_OK


def cmd_endpoint_search(ctx: Context) -> int:
    found = ctx.globus().endpoint_search(ctx.args.filter_text, ctx.args.limit)
    columns = [("id", "ID"), ("owner_string", "Owner"), ("display_name", "Display Name")]
    ctx.emit({"endpoints": found}, lambda: table(found, columns))
    return EXIT_OK


def cmd_endpoint_show(ctx: Context) -> int:
    document = ctx.globus().get_endpoint(ctx.args.collection)
    keys = [k for k in ("id", "display_name", "owner_string", "entity_type") if k in document]
    ctx.emit(document, lambda: record(document, keys or None))
    return EXIT_OK


def cmd_history(ctx: Context) -> int:
    args = ctx.args
    client = ctx.globus(need_session=False)
    page = client.history(
        args.task,
        args.status,
        args.label,
        args.since,
        args.until,
        args.limit,
        view=args.view,
        after=args.after,
        session_id=args.session or os.environ.get(ENV_SESSION) or None,
    )
    if args.view == "tasks":
        rows = page.get("tasks") or []
        ctx.emit(page, lambda: table(rows, TASK_COLUMNS))
        return EXIT_OK
    events = page.get("events") or []
    flat = [{**e, "status": (e.get("data") or {}).get("status")} for e in events]

    def text() -> str:
        out = table(flat, EVENT_COLUMNS)
        if page.get("next_after") is not None:
            out += f"\n(more: --after {page['next_after']})"
        return out

    ctx.emit(page, text)
    return EXIT_OK


def _more_to_come(ctx: Context, client: GlobusClient, last_seq: int | None) -> bool:
    """Whether the watched scope has task notifications or unfinished tasks not shown yet.

    Asked only when every task seen so far has ended, so that a replay which has not reached
    the newer tasks yet does not end ``--until-done`` early.
    """
    args = ctx.args
    sid = None if args.all_sessions else client.session_id
    page = client.history(task_id=args.task, limit=1000, after=last_seq or 0, session_id=sid)
    if page.get("next_after") is not None:
        return True
    if any(e.get("topic") == "transfer_status" for e in page.get("events") or []):
        return True
    if args.task or args.all_sessions:
        return False
    # Tasks that started before the stream's first seq show up only when they change.
    return any(client.list_tasks(1, status=status) for status in ("ACTIVE", "INACTIVE"))


def cmd_watch(ctx: Context) -> int:
    args = ctx.args
    client = ctx.globus(need_session=False)
    if client.session_id is None and not args.all_sessions:
        raise UsageError(
            f"watch which session? pass --session SID, set {ENV_SESSION}, or --all-sessions"
        )
    board = ProgressBoard()
    live = ctx.out.isatty() and not ctx.json
    drawn = 0
    failed = False
    stream = client.events(
        args.since,
        task_id=args.task,
        topic=None if args.all_topics else "transfer_status",
        cursor_file=args.cursor_file,
        all_sessions=args.all_sessions,
    )
    with stream:
        while True:
            event = stream.get(timeout=args.timeout)
            if event is None:
                print("orbit-globus: watch timed out", file=ctx.err)
                return EXIT_TIMEOUT
            task = board.apply(event)
            if ctx.json:
                print(json.dumps(event, sort_keys=True), file=ctx.out, flush=True)
            elif live:
                lines = board.lines()
                # Redraw the block in place: up to its first line, then rewrite every line.
                if drawn:
                    ctx.out.write(f"\x1b[{drawn}F")
                ctx.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
                ctx.out.flush()
                drawn = len(lines)
            elif task is not None:
                print(board.line(task), file=ctx.out, flush=True)
            else:
                print(f"{event.get('seq')} {event.get('kind')} {event.get('data')}", file=ctx.out)
            if task is not None and task.status == "FAILED":
                failed = True
            done = args.until_done and board.all_done()
            if done and not _more_to_come(ctx, client, stream.last_seq):
                return EXIT_TASK_FAILED if failed else EXIT_OK


# Parser


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    parser.add_argument(
        "--polling-interval",
        type=float,
        default=10.0,
        help="seconds per wait request if the event stream is unavailable (default 10)",
    )


def _add_common_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """Options accepted before and after the command; ``default`` SUPPRESS on subcommands so
    that a value given before the command is not overwritten by the subcommand's default."""
    parser.add_argument(
        "--url",
        default=default,
        help="daemon URL (default: $RADICAL_ORBIT_URL, then the local daemon)",
    )
    parser.add_argument(
        "--token",
        default=default,
        help="daemon token (default: $RADICAL_ORBIT_TOKEN, $RADICAL_ORBIT_TOKEN_FILE, the"
        " daemon's own token file)",
    )
    parser.add_argument("--endpoint", default=default, help="endpoint (default: the first)")
    parser.add_argument("--session", default=default, help=f"session id (default: ${ENV_SESSION})")
    parser.add_argument(
        "-F", "--format", choices=("text", "json"), default="text" if default is None else default
    )
    parser.add_argument(
        "--local-collection", default=default, help="local collection UUID for a new session"
    )
    parser.add_argument(
        "--access-token-file", default=default, help="file holding a Globus access token"
    )
    parser.add_argument(
        "--refresh-token-file", default=default, help="file holding a Globus refresh token"
    )
    parser.add_argument(
        "--client-id", default=default, help="Globus native app client id (with a refresh token)"
    )


class _SubParsers:
    """add_parser() that gives every command the common options."""

    def __init__(self, action: Any) -> None:
        self._action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        _add_common_options(parser, default=argparse.SUPPRESS)
        return parser

    def add_group(self, name: str, **kwargs: Any) -> _SubParsers:
        parser = self._action.add_parser(name, **kwargs)
        dest = f"{name}_command"
        return _SubParsers(parser.add_subparsers(dest=dest, required=True, metavar="ACTION"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orbit-globus",
        description="Client of the orbit endpoint daemon (Globus transfers).",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
    )
    _add_common_options(parser, default=None)
    sub = _SubParsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    p = sub.add_parser("endpoints", help="list the daemon's endpoints")
    p.set_defaults(func=cmd_endpoints)

    ssub = sub.add_group("session", help="register or unregister a Globus session")
    p = ssub.add_parser(
        "register",
        help="hand a Globus credential (from the environment or files) to the daemon",
    )
    p.set_defaults(func=cmd_session_register)
    p = ssub.add_parser("unregister", help="end a session")
    p.add_argument("sid", nargs="?")
    p.set_defaults(func=cmd_session_unregister)

    p = sub.add_parser("transfer", help="submit a transfer")
    p.add_argument("source", help="source collection UUID or 'local'")
    p.add_argument("destination", help="destination collection UUID or 'local'")
    p.add_argument("source_path", nargs="?")
    p.add_argument("dest_path", nargs="?")
    p.add_argument("--item", nargs=2, action="append", metavar=("SRC", "DST"))
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--label")
    p.add_argument("--sync-level", choices=("exists", "size", "mtime", "checksum"))
    p.add_argument("--verify-checksum", action="store_true", default=None)
    p.add_argument("--preserve-timestamp", action="store_true", default=None)
    p.add_argument("--wait", action="store_true", help="wait for the task to finish")
    _add_wait_options(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("delete", help="submit a delete")
    p.add_argument("collection")
    p.add_argument("paths", nargs="+")
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--label")
    p.add_argument("--wait", action="store_true")
    _add_wait_options(p)
    p.set_defaults(func=cmd_delete)

    tsub = sub.add_group("task", help="show, list, wait for or cancel tasks")
    p = tsub.add_parser("show", help="one task")
    p.add_argument("task_id")
    p.set_defaults(func=cmd_task_show)
    p = tsub.add_parser("list", help="this session's tasks")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--status", choices=("ACTIVE", "INACTIVE", "SUCCEEDED", "FAILED"))
    p.set_defaults(func=cmd_task_list)
    p = tsub.add_parser("wait", help="wait until the task ends (exit 1 if it FAILED)")
    p.add_argument("task_id")
    _add_wait_options(p)
    p.set_defaults(func=cmd_task_wait)
    p = tsub.add_parser("cancel", help="cancel a task")
    p.add_argument("task_id")
    p.set_defaults(func=cmd_task_cancel)

    p = sub.add_parser("ls", help="list a folder of a collection")
    p.add_argument("collection")
    p.add_argument("path", nargs="?")
    p.add_argument("-l", "--long", action="store_true", help="table with sizes and times")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("mkdir", help="make a folder on a collection")
    p.add_argument("collection")
    p.add_argument("path")
    p.set_defaults(func=cmd_mkdir)

    p = sub.add_parser("rename", help="rename a file or folder on a collection")
    p.add_argument("collection")
    p.add_argument("oldpath")
    p.add_argument("newpath")
    p.set_defaults(func=cmd_rename)

    esub = sub.add_group("endpoint", help="search or show Globus collections")
    p = esub.add_parser("search")
    p.add_argument("filter_text", nargs="?")
    p.add_argument("--limit", type=int, default=25)
    p.set_defaults(func=cmd_endpoint_search)
    p = esub.add_parser("show")
    p.add_argument("collection")
    p.set_defaults(func=cmd_endpoint_show)

    p = sub.add_parser("history", help="past events or tasks from the daemon's ledger")
    p.add_argument("--task", help="only this task")
    p.add_argument("--status")
    p.add_argument("--label")
    p.add_argument("--since", help="ISO time")
    p.add_argument("--until", help="ISO time")
    p.add_argument("--after", type=int, help="events after this seq (next page)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--view", choices=("events", "tasks"), default="events")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("watch", help="live progress of the session's tasks")
    p.add_argument("--task", help="only this task")
    p.add_argument("--since", type=int, help="replay from after this seq")
    p.add_argument("--all-sessions", action="store_true")
    p.add_argument("--all-topics", action="store_true", help="also session and task events")
    p.add_argument("--cursor-file", help="resume from (and record to) this file")
    p.add_argument("--until-done", action="store_true", help="exit when every task seen ended")
    p.add_argument("--timeout", type=float, help="exit 5 if no event arrives for this long")
    p.set_defaults(func=cmd_watch)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command; returns the exit code (the console script exits with it)."""
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    ctx = Context(args, out, err)
    code: int
    try:
        code = args.func(ctx)
    except DaemonUnavailable as exc:
        print(f"orbit-globus: {exc}", file=err)
        code = EXIT_UNREACHABLE
    except RequestError as exc:
        # Before the usage errors: a 400 answer is a BadRequestError, also a ValueError.
        print(f"orbit-globus: {exc}", file=err)
        code = EXIT_REQUEST_FAILED
    except TaskFailed as exc:
        print(f"orbit-globus: {exc}", file=err)
        code = EXIT_TASK_FAILED
    except (UsageError, ConfigurationError, ArgumentError) as exc:
        print(f"orbit-globus: {exc}", file=err)
        code = EXIT_USAGE
    except OrbitError as exc:
        print(f"orbit-globus: {exc}", file=err)
        code = EXIT_REQUEST_FAILED
    except KeyboardInterrupt:
        code = 130
    finally:
        ctx.close()
    return code
