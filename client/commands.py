"""The commands of ``orbit-globus``: one function per command, and what they share.

Each ``cmd_*`` takes the :class:`Context` (parsed options, output streams, clients made on
first use) and returns the process exit code; :mod:`.cli` parses the command line and maps
exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from .bridge import BridgeClient
from .errors import NoSessionError, OrbitError, TaskNeedsAttention, TaskWaitTimeout
from .globus import GlobusClient
from .render import ProgressBoard, record, table
from .trouble import policy_body, trouble_text

__all__ = [
    "ENV_SESSION",
    "EXIT_CODES",
    "EXIT_NEEDS_ATTENTION",
    "EXIT_OK",
    "EXIT_REQUEST_FAILED",
    "EXIT_TASK_FAILED",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Context",
    "UsageError",
    "cmd_delete",
    "cmd_endpoint_search",
    "cmd_endpoint_show",
    "cmd_endpoints",
    "cmd_history",
    "cmd_ls",
    "cmd_mkdir",
    "cmd_rename",
    "cmd_session_register",
    "cmd_session_unregister",
    "cmd_task_cancel",
    "cmd_task_event_list",
    "cmd_task_list",
    "cmd_task_show",
    "cmd_task_wait",
    "cmd_transfer",
    "cmd_ui",
    "cmd_watch",
    "credentials",
]

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_REQUEST_FAILED = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_NEEDS_ATTENTION = 6
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_TASK_FAILED: "the task ended FAILED",
    EXIT_USAGE: "usage or configuration error",
    EXIT_REQUEST_FAILED: "the daemon answered the request with an error",
    EXIT_UNREACHABLE: "the daemon is unreachable",
    EXIT_TIMEOUT: "timed out waiting; the task is still running",
    EXIT_NEEDS_ATTENTION: "the task needs attention (--stop-on-attention); it is still running",
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
    "is_ok",
    "is_paused",
    "faults",
    "error",
    "needs_attention",
    "attention_message",
    "policy",
    "request_time",
    "completion_time",
    "last_seq",
]
TASK_EVENT_COLUMNS = [
    ("time", "Time"),
    ("code", "Code"),
    ("is_error", "Error"),
    ("description", "Description"),
    ("details", "Details"),
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
        answer = client.register_session(
            creds.get("access_token"),
            creds.get("refresh_token"),
            creds.get("client_id"),
            self.args.local_collection,
        )
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


def _policy(args: argparse.Namespace) -> dict[str, Any] | None:
    return policy_body(
        max_faults=getattr(args, "cancel_after_faults", None),
        max_trouble_minutes=getattr(args, "cancel_after_minutes", None),
        fatal_codes=getattr(args, "cancel_on", None) or (),
    )


def cmd_endpoints(ctx: Context) -> int:
    endpoints = ctx.bridge().describe_endpoints()
    columns = [
        ("name", "Name"),
        ("version", "Version"),
        ("plugins", "Plugins"),
        ("local_collection", "Local Collection"),
    ]
    if any("online" in e for e in endpoints):  # a bridge says which endpoints are connected
        columns.insert(1, ("online", "Online"))
    ctx.emit({"endpoints": endpoints}, lambda: table(endpoints, columns))
    return EXIT_OK


def cmd_ui(ctx: Context) -> int:
    """Open the dashboard signed in: the link's nonce works once, within a minute."""
    url = ctx.bridge().dashboard_link()
    print(f"dashboard: {url}", file=ctx.out)
    if not ctx.args.no_browser and not webbrowser.open(url):
        print("no browser could be started here: open the link above", file=ctx.err)
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
        creds.get("access_token"),
        creds.get("refresh_token"),
        creds.get("client_id"),
        ctx.args.local_collection,
        sid=ctx.args.session,
        policy=_policy(ctx.args),
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
        policy=_policy(args),
    )
    return _submitted(ctx, answer)


def cmd_delete(ctx: Context) -> int:
    args = ctx.args
    answer = ctx.globus().delete(args.collection, args.paths, args.recursive, args.label)
    return _submitted(ctx, answer)


def _task_text(row: dict[str, Any]) -> str:
    text = record(row, TASK_FIELDS)
    trouble = trouble_text(row)
    return f"{text}\n\n{trouble}" if trouble else text


def cmd_task_show(ctx: Context) -> int:
    row = ctx.globus().get_task(ctx.args.task_id)
    ctx.emit(row, lambda: _task_text(row))
    return EXIT_OK


def cmd_task_event_list(ctx: Context) -> int:
    args = ctx.args
    found = ctx.globus().task_event_list(args.task_id, args.limit, offset=args.offset)
    ctx.emit({"events": found}, lambda: table(found, TASK_EVENT_COLUMNS))
    return EXIT_OK


def cmd_task_list(ctx: Context) -> int:
    rows = ctx.globus().list_tasks(ctx.args.limit, offset=ctx.args.offset, status=ctx.args.status)
    ctx.emit({"tasks": rows}, lambda: table(rows, TASK_COLUMNS))
    return EXIT_OK


def _wait(ctx: Context, task_id: str, *, quiet_json: bool = False) -> int:
    args = ctx.args
    try:
        row = ctx.globus().task_wait(
            task_id,
            timeout=args.timeout,
            polling_interval=args.polling_interval,
            stop_on_attention=args.stop_on_attention,
        )
    except TaskNeedsAttention as exc:
        print(f"orbit-globus: {exc}", file=ctx.err)
        return EXIT_NEEDS_ATTENTION
    except TaskWaitTimeout as exc:
        print(f"orbit-globus: {exc}", file=ctx.err)
        return EXIT_TIMEOUT
    if not (quiet_json and ctx.json):
        ctx.emit(row, lambda: _task_text(row))
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
