"""The commands of ``orbit-globus``: one function per command, and what they share.

Each ``cmd_*`` takes the :class:`Context` (parsed options, output streams, clients made on
first use) and returns the process exit code; :mod:`.cli` parses the command line and maps
exceptions to exit codes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..protocol import OPEN_STATUSES, TROUBLE_FIELDS, parse_time_text
from .bridge import BridgeClient
from .calls import history_page
from .errors import NoSessionError, OrbitError, TaskNeedsAttention, TaskWaitTimeout
from .globus import GlobusClient, patiently
from .items import BatchError, delete_paths, split_collection_path, transfer_items
from .output import query
from .render import ProgressBoard, record, table
from .trouble import policy_body, trouble_text

__all__ = [
    "ENV_SESSION",
    "EXIT_AUTH",
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
    "cmd_session_list",
    "cmd_session_register",
    "cmd_session_unregister",
    "cmd_task_cancel",
    "cmd_task_event_list",
    "cmd_task_generate_submission_id",
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
EXIT_AUTH = 6
# Not 6: that is authentication or consent, which a script must tell apart.
EXIT_NEEDS_ATTENTION = 7
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_TASK_FAILED: "a task ended FAILED",
    EXIT_USAGE: "usage or configuration error",
    EXIT_REQUEST_FAILED: "the daemon refused the request or Globus failed behind it",
    EXIT_UNREACHABLE: "the daemon is unreachable",
    EXIT_TIMEOUT: "timed out waiting; the task is still running",
    EXIT_AUTH: "authentication or consent: a daemon token, Globus credential or consent is"
    " missing, expired or refused",
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
    *TROUBLE_FIELDS,
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
        """JSON output: ``-F json`` (or jsonl), or implied by ``--jmespath``."""
        return self.args.format in ("json", "jsonl") or bool(self.args.jmespath)

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
            elif client.session_id is not None and (creds := credentials(self.args)):
                # A daemon that restarted lost the session's credential: the client hands
                # this one over when the daemon says so (and after its stream reconnects).
                client.keep_credential(**creds)
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
            f"registered session {answer['session_id']}; reuse it with:"
            f" export {ENV_SESSION}={answer['session_id']}",
            file=self.err,
        )

    def emit(self, document: Any, text: str | Callable[[], str]) -> None:
        if self.json:
            if self.args.jmespath:
                document = query(self.args.jmespath, document)
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
        session_id=ctx.args.session,
        policy=_policy(ctx.args),
    )
    ctx.emit(
        answer,
        lambda: (
            f"{record(answer, ['session_id', 'local_collection'])}\n\n"
            f"export {ENV_SESSION}={answer['session_id']}"
        ),
    )
    return EXIT_OK


SESSION_COLUMNS = [
    ("session_id", "Session ID"),
    ("credential", "Credential"),
    ("auth", "Auth"),
    ("local_collection", "Local Collection"),
    ("active", "Active"),
    ("inactive", "Inactive"),
    ("succeeded", "Succeeded"),
    ("failed", "Failed"),
]


def cmd_session_list(ctx: Context) -> int:
    sessions = ctx.globus(need_session=False).list_sessions()
    rows = [
        {**s, **{status.lower(): n for status, n in (s.get("tasks") or {}).items()}}
        for s in sessions
    ]
    ctx.emit({"sessions": sessions}, lambda: table(rows, SESSION_COLUMNS))
    return EXIT_OK


def cmd_session_unregister(ctx: Context) -> int:
    client = ctx.globus(need_session=False)
    if ctx.args.session_id:
        client.session_id = ctx.args.session_id
    if client.session_id is None:
        raise UsageError(f"which session? pass SID, --session SID or set {ENV_SESSION}")
    answer = client.unregister_session()
    ctx.emit(answer, lambda: f"session {answer.get('session_id')} closed")
    return EXIT_OK


def _submitted(ctx: Context, answer: dict[str, Any]) -> int:
    if not ctx.args.wait:
        ctx.emit(answer, lambda: record(answer, ["task_id", "submission_id", "status"]))
        return EXIT_OK
    # With --wait the answer that counts is the final task: JSON prints only that row (a
    # script reads one document); text shows the submit first, then the row.
    if not ctx.json:
        print(record(answer, ["task_id", "submission_id", "status"]) + "\n", file=ctx.out)
    # A QUEUED submit has no task id yet: waiting on its submission id waits through the
    # daemon's admission queue.
    return _wait(ctx, answer.get("task_id") or answer["submission_id"])


def _batch_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(source).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the batch file {source}: {exc.strerror}") from None


def transfer_request(args: argparse.Namespace) -> tuple[str, str, list[dict[str, Any]]]:
    """Source, destination and items of ``transfer``: ``SRC DST SRC_PATH DST_PATH``,
    ``SRC:SRC_PATH DST:DST_PATH``, ``--item`` and ``--batch`` lines, in that order."""
    source, source_path = split_collection_path(args.source)
    destination, dest_path = split_collection_path(args.destination)
    if source_path is not None or dest_path is not None:
        if source_path is None or dest_path is None or args.source_path is not None:
            raise UsageError(
                "give SRC:PATH DST:PATH, or SRC DST SRC_PATH DST_PATH, not a mix of the two"
            )
    elif args.source_path is not None:
        if args.dest_path is None:
            raise UsageError("give both SOURCE_PATH and DEST_PATH, or use --item or --batch")
        source_path, dest_path = args.source_path, args.dest_path
    items: list[dict[str, Any]] = []
    if source_path is not None and dest_path is not None:
        items.append({"source": source_path, "destination": dest_path, "recursive": args.recursive})
    for src, dst in args.item or []:
        items.append({"source": src, "destination": dst, "recursive": args.recursive})
    if args.batch is not None:
        try:
            items += transfer_items(_batch_lines(args.batch), recursive=args.recursive)
        except BatchError as exc:
            raise UsageError(str(exc)) from None
    if not items:
        raise UsageError(
            "nothing to transfer: give SRC:PATH DST:PATH, SOURCE_PATH DEST_PATH, --item SRC DST"
            " or --batch FILE"
        )
    return source, destination, items


def cmd_transfer(ctx: Context) -> int:
    args = ctx.args
    source, destination, items = transfer_request(args)
    answer = ctx.globus().submit_transfer(
        source,
        destination,
        items,
        label=args.label,
        sync_level=args.sync_level,
        verify_checksum=args.verify_checksum,
        preserve_timestamp=args.preserve_timestamp,
        policy=_policy(args),
        submission_id=args.submission_id,
    )
    return _submitted(ctx, answer)


def cmd_delete(ctx: Context) -> int:
    args = ctx.args
    collection, path = split_collection_path(args.collection)
    paths = ([path] if path else []) + list(args.paths)
    if args.batch is not None:
        try:
            paths += delete_paths(_batch_lines(args.batch))
        except BatchError as exc:
            raise UsageError(str(exc)) from None
    if not paths:
        raise UsageError("nothing to delete: give COLLECTION PATH..., COLLECTION:PATH or --batch")
    answer = ctx.globus().delete(
        collection, paths, args.recursive, args.label, submission_id=args.submission_id
    )
    return _submitted(ctx, answer)


def cmd_task_generate_submission_id(ctx: Context) -> int:
    value = ctx.globus().generate_submission_id()
    ctx.emit({"value": value}, value)
    return EXIT_OK


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


def _wait(ctx: Context, task_id: str) -> int:
    args = ctx.args
    # A daemon restarting right now is waited for too, within the same timeout.
    client = patiently(time.monotonic() + args.timeout, ctx.globus)
    try:
        row = client.task_wait(
            task_id,
            timeout=args.timeout,
            polling_interval=args.polling_interval,
            stop_on_attention=args.stop_on_attention,
        )
    except TaskWaitTimeout as exc:
        print(f"orbit-globus: {exc}", file=ctx.err)
        return EXIT_TIMEOUT
    ctx.emit(row, lambda: _task_text(row))
    return EXIT_TASK_FAILED if row.get("status") == "FAILED" else EXIT_OK


def _wait_label(ctx: Context, label: str) -> int:
    """Wait for every task of the session whose label matches (a glob), one deadline."""
    args = ctx.args
    deadline = time.monotonic() + args.timeout
    client = patiently(deadline, ctx.globus)
    page = client.history(label=label, limit=1000, view="tasks", session_id=client.session_id)
    tasks = page.get("tasks") or []
    if not tasks:
        raise UsageError(f"no task of session {client.session_id} has a label matching {label!r}")
    rows: list[dict[str, Any]] = []
    late: list[str] = []
    troubled: list[str] = []
    for task in tasks:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            rows.append(
                client.task_wait(
                    task["task_id"],
                    timeout=remaining,
                    polling_interval=args.polling_interval,
                    stop_on_attention=args.stop_on_attention,
                )
            )
        except TaskNeedsAttention as exc:
            rows.append(exc.task)
            troubled.append(task["task_id"])
        except TaskWaitTimeout as exc:
            rows.append(exc.task or task)
            late.append(task["task_id"])
    ctx.emit({"tasks": rows}, lambda: table(rows, TASK_COLUMNS))
    if troubled:
        print(f"orbit-globus: {len(troubled)} task(s) need attention", file=ctx.err)
        return EXIT_NEEDS_ATTENTION
    if late:
        print(
            f"orbit-globus: {len(late)} task(s) still running after {args.timeout:g} s",
            file=ctx.err,
        )
        return EXIT_TIMEOUT
    return EXIT_TASK_FAILED if any(r.get("status") == "FAILED" for r in rows) else EXIT_OK


def cmd_task_wait(ctx: Context) -> int:
    args = ctx.args
    if (args.task_id is None) == (args.label is None):
        raise UsageError("give a TASK_ID or --label LABEL (a glob such as 'run-*'), not both")
    return _wait(ctx, args.task_id) if args.label is None else _wait_label(ctx, args.label)


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


def parse_time(text: str | None, option: str) -> float | None:
    """A command-line time: ISO 8601 (local time unless it carries an offset) or Unix
    seconds. The same meaning for every ``--since``/``--until``."""
    if text is None:
        return None
    try:
        return parse_time_text(text)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a time: give ISO 8601 such as 2026-11-29T14:30 (local"
            " time unless it carries an offset such as +00:00) or Unix seconds"
        ) from None


EXPORT_EVENT_COLUMNS = [
    "seq",
    "time",
    "kind",
    "session_id",
    "task_id",
    "status",
    "label",
    "bytes_transferred",
    "files_transferred",
    "data",
]


def _history_pages(ctx: Context, client: GlobusClient) -> Iterator[list[dict[str, Any]]]:
    """Every page of the asked range, events (by seq) or tasks (by offset), until the end."""
    args = ctx.args
    since = parse_time(args.since, "--since")
    until = parse_time(args.until, "--until")
    session_id = args.session or os.environ.get(ENV_SESSION) or None
    after, offset = args.after, 0
    while True:
        page = client.history(
            args.task,
            args.status,
            args.label,
            since,
            until,
            1000,
            view=args.view,
            after=after,
            offset=offset if args.view == "tasks" else None,
            session_id=session_id,
        )
        if args.view == "tasks":
            rows = page.get("tasks") or []
            yield rows
            if len(rows) < 1000:
                return
            offset += len(rows)
        else:
            rows, after = history_page(page)
            yield rows
            if after is None:
                return


def _export(ctx: Context, client: GlobusClient) -> int:
    """``history -F jsonl|csv``: the whole range, page by page, one line per record."""
    writer = csv.writer(ctx.out, lineterminator="\n") if ctx.args.format == "csv" else None
    columns = TASK_FIELDS if ctx.args.view == "tasks" else EXPORT_EVENT_COLUMNS
    if writer is not None:
        writer.writerow(columns)
    for rows in _history_pages(ctx, client):
        for row in rows:
            if writer is None:
                print(json.dumps(row, sort_keys=True, separators=(",", ":")), file=ctx.out)
                continue
            flat = dict(row)
            if ctx.args.view != "tasks":
                data = row.get("data") or {}
                flat.update({k: data.get(k) for k in ("status", "label")})
                flat.update({k: data.get(k) for k in ("bytes_transferred", "files_transferred")})
                flat["data"] = json.dumps(data, sort_keys=True, separators=(",", ":"))
            if isinstance(flat.get("fatal_error"), dict):
                flat["fatal_error"] = json.dumps(flat["fatal_error"], sort_keys=True)
            writer.writerow(["" if flat.get(c) is None else flat[c] for c in columns])
        ctx.out.flush()
    return EXIT_OK


def cmd_history(ctx: Context) -> int:
    args = ctx.args
    client = ctx.globus(need_session=False)
    if args.format in ("jsonl", "csv"):
        return _export(ctx, client)
    page = client.history(
        args.task,
        args.status,
        args.label,
        parse_time(args.since, "--since"),
        parse_time(args.until, "--until"),
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
    session_id = None if args.all_sessions else client.session_id
    page = client.history(task_id=args.task, limit=1000, after=last_seq or 0, session_id=session_id)
    if page.get("next_after") is not None:
        return True
    if any(e.get("topic") == "transfer_status" for e in page.get("events") or []):
        return True
    if args.task or args.all_sessions:
        return False
    # Tasks that started before the stream's first seq show up only when they change.
    return any(client.list_tasks(1, status=status) for status in OPEN_STATUSES)


def _after_time(client: GlobusClient, since: float | None, *, all_sessions: bool) -> int | None:
    """The seq to resume after so that the stream starts with the first event committed at
    or after ``since``; None (the live head) when there is none yet."""
    session_id = None if all_sessions else client.session_id
    first = client.history(since=since, limit=1, session_id=session_id).get("events") or []
    return int(first[0]["seq"]) - 1 if first else None


def _resync(ctx: Context, client: GlobusClient, board: ProgressBoard, pruned: int) -> None:
    """The stream started behind events retention deleted: take those tasks' final state
    from their rows instead (they all finished, or their events would still be there)."""
    print(
        f"orbit-globus: events up to seq {pruned} were pruned by the daemon's retention;"
        " showing the tasks they were about from their final rows",
        file=ctx.err,
    )
    session_id = None if ctx.args.all_sessions else client.session_id
    rows = client.history(task_id=ctx.args.task, view="tasks", limit=1000, session_id=session_id)
    for row in rows.get("tasks") or []:
        if row.get("last_seq", 0) > pruned:
            continue  # its events are still there: the stream delivers them
        task = board.apply({"topic": "transfer_status", "task_id": row["task_id"], "data": row})
        if ctx.json:
            print(json.dumps({"type": "task", **row}, sort_keys=True), file=ctx.out)
        elif task is not None:
            print(board.line(task), file=ctx.out, flush=True)


# Seconds a quiet watch waits before it looks again whether anything is left to wait for.
_IDLE_CHECK = 1.0


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
    after = args.after
    if args.since is not None:
        # A time, as everywhere: the stream starts after the last event before it.
        since = parse_time(args.since, "--since")
        after = _after_time(client, since, all_sessions=args.all_sessions)
    stream = client.events(
        after,
        task_id=args.task,
        topic=None if args.all_topics else "transfer_status",
        cursor_file=args.cursor_file,
        all_sessions=args.all_sessions,
    )
    resynced = False
    connects = 1
    if client.session_id is not None and not args.all_sessions:
        # Say at once when nobody follows the session's tasks (a credential to hand over
        # is handed over), instead of watching for changes that will never come.
        client.ensure_followed()
    with stream:
        quiet_since = time.monotonic()
        while True:
            wait = _IDLE_CHECK
            if args.timeout is not None:
                wait = min(wait, max(0.0, quiet_since + args.timeout - time.monotonic()))
            event = stream.get(timeout=wait)
            if stream.connects > connects and client.session_id is not None:
                connects = stream.connects  # reconnected: the daemon may have restarted
                if not args.all_sessions:
                    patiently(time.monotonic() + 30.0, client.ensure_followed)
            if stream.pruned_through is not None and not resynced:
                resynced = True
                _resync(ctx, client, board, stream.pruned_through)
            if event is None:
                if args.timeout is not None and time.monotonic() >= quiet_since + args.timeout:
                    print("orbit-globus: watch timed out", file=ctx.err)
                    return EXIT_TIMEOUT
                # Nothing seen and nothing left to finish (every task ended before the
                # stream's start): --until-done has nothing to wait for.
                if (
                    args.until_done
                    and (not board.tasks or board.all_done())
                    and stream.last_seq is not None
                    and not _more_to_come(ctx, client, stream.last_seq)
                ):
                    failed = failed or any(t.status == "FAILED" for t in board.tasks.values())
                    return EXIT_TASK_FAILED if failed else EXIT_OK
                continue
            quiet_since = time.monotonic()
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
