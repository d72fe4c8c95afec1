"""``orbit-globus``: the command-line client of the orbit endpoint daemon.

Exit codes (:data:`EXIT_CODES`): 0 success; 1 a task ended FAILED; 2 usage or configuration
error; 3 the daemon refused the request (or Globus failed behind it); 4 the daemon is
unreachable; 5 a wait timed out with the task still running; 6 authentication or consent (a
daemon token, Globus credential or consent missing, expired or refused); 7 ``--stop-on-attention``
saw the task need attention (it is still running).

Globus credentials are read from the environment (``GLOBUS_ACCESS_TOKEN``, or
``GLOBUS_REFRESH_TOKEN`` + ``GLOBUS_CLIENT_ID``) or from files, never from the command line
where every user of the machine could read them in the process list.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from types import UnionType
from typing import Any, TextIO

from ..protocol import STATUSES
from .commands import (
    ENV_SESSION,
    EXIT_AUTH,
    EXIT_CODES,
    EXIT_NEEDS_ATTENTION,
    EXIT_REQUEST_FAILED,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Context,
    UsageError,
    cmd_delete,
    cmd_endpoint_search,
    cmd_endpoint_show,
    cmd_endpoints,
    cmd_history,
    cmd_ls,
    cmd_mkdir,
    cmd_rename,
    cmd_session_list,
    cmd_session_register,
    cmd_session_unregister,
    cmd_task_cancel,
    cmd_task_event_list,
    cmd_task_generate_submission_id,
    cmd_task_list,
    cmd_task_show,
    cmd_task_wait,
    cmd_transfer,
    cmd_ui,
    cmd_watch,
)
from .errors import (
    ArgumentError,
    AuthenticationError,
    ConfigurationError,
    ConsentRequiredError,
    DaemonUnavailable,
    OrbitError,
    RequestError,
    TaskFailed,
    TaskNeedsAttention,
    TaskWaitTimeout,
)

__all__ = ["EXIT_CODES", "build_parser", "exit_code", "main", "report_error"]


TIME_HELP = "ISO 8601 time (local unless it carries an offset) or Unix seconds"


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    parser.add_argument(
        "--polling-interval",
        type=float,
        default=10.0,
        help="seconds per wait request if the event stream is unavailable (default 10)",
    )
    parser.add_argument(
        "--stop-on-attention",
        action="store_true",
        help="stop (exit 7) as soon as the task needs attention: Globus retries an error, "
        "it is paused or INACTIVE, or it stalled",
    )


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trouble policy (the daemon cancels doomed tasks)")
    group.add_argument("--cancel-after-faults", type=int, metavar="N", help="after N faults")
    group.add_argument(
        "--cancel-after-minutes", type=float, metavar="T", help="after T minutes in trouble"
    )
    group.add_argument(
        "--cancel-on",
        action="append",
        metavar="CODE",
        help="at the first error with this Globus code (e.g. FILE_NOT_FOUND); repeatable",
    )


def _add_submission_id_option(parser: argparse.ArgumentParser) -> None:
    # As globus-cli's transfer/delete: the same id twice never submits twice.
    parser.add_argument(
        "--submission-id",
        metavar="ID",
        help="make the submit idempotent: a repeat with the same ID returns the first one's "
        "task (see 'task generate-submission-id')",
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
    parser.add_argument(
        "--session",
        default=default,
        help=f"session id (default: ${ENV_SESSION}); write --session=SID if it starts with -",
    )
    parser.add_argument(
        "-F",
        "--format",
        choices=("text", "json", "jsonl", "csv"),
        default="text" if default is None else default,
        help="text (times in ISO 8601 local time), json; history also jsonl and csv (the"
        " whole range, streamed)",
    )
    parser.add_argument(
        "--jmespath",
        "--jq",
        default=default,
        metavar="EXPR",
        help="print the JSON answer filtered by this JMESPath expression (implies -F json)",
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

    ssub = sub.add_group("session", help="register, list or unregister Globus sessions")
    p = ssub.add_parser(
        "register",
        help="hand a Globus credential (from the environment or files) to the daemon",
    )
    _add_policy_options(p)
    p.set_defaults(func=cmd_session_register)
    p = ssub.add_parser(
        "list", help="your sessions: credential state (ok, missing, expired) and task counts"
    )
    p.set_defaults(func=cmd_session_list)
    p = ssub.add_parser("unregister", help="end a session")
    p.add_argument("session_id", nargs="?")
    p.set_defaults(func=cmd_session_unregister)

    p = sub.add_parser(
        "transfer",
        help="submit a transfer",
        description="Submit a transfer: SRC:PATH DST:PATH, or SRC DST SRC_PATH DST_PATH, plus"
        " any --item pairs and --batch lines.",
    )
    p.add_argument("source", help="source collection UUID or 'local', optionally SRC:PATH")
    p.add_argument("destination", help="destination collection UUID or 'local', or DST:PATH")
    p.add_argument("source_path", nargs="?")
    p.add_argument("dest_path", nargs="?")
    p.add_argument("--item", nargs=2, action="append", metavar=("SRC", "DST"))
    p.add_argument(
        "--batch",
        metavar="FILE",
        help="read more items from FILE ('-': standard input), one 'SOURCE_PATH DEST_PATH"
        " [--recursive]' per line, '#' comments",
    )
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--label")
    p.add_argument("--sync-level", choices=("exists", "size", "mtime", "checksum"))
    p.add_argument(
        "--verify-checksum",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="verify each file's checksum after it is copied (default: on, as globus-cli)",
    )
    p.add_argument("--preserve-timestamp", action="store_true", default=None)
    _add_submission_id_option(p)
    p.add_argument("--wait", action="store_true", help="wait for the task to finish")
    _add_policy_options(p)
    _add_wait_options(p)
    p.set_defaults(func=cmd_transfer)

    p = sub.add_parser("delete", help="submit a delete")
    p.add_argument("collection", help="collection UUID or 'local', optionally COLLECTION:PATH")
    p.add_argument("paths", nargs="*")
    p.add_argument(
        "--batch", metavar="FILE", help="read more paths from FILE ('-': stdin), one per line"
    )
    p.add_argument("-r", "--recursive", action="store_true")
    p.add_argument("--label")
    _add_submission_id_option(p)
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
    p.add_argument("--status", choices=STATUSES)
    p.set_defaults(func=cmd_task_list)
    p = tsub.add_parser(
        "wait", help="wait until the task (or every task of --label) ends; exit 1 if one FAILED"
    )
    p.add_argument("task_id", nargs="?")
    p.add_argument("--label", help="every task of the session whose label matches (a glob)")
    _add_wait_options(p)
    p.set_defaults(func=cmd_task_wait)
    p = tsub.add_parser("event-list", help="Globus's own events of a task (newest first)")
    p.add_argument("task_id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=cmd_task_event_list)
    p = tsub.add_parser("cancel", help="cancel a task (or a queued submit, by submission id)")
    p.add_argument("task_id")
    p.set_defaults(func=cmd_task_cancel)
    p = tsub.add_parser(
        "generate-submission-id",
        help="print a new submission id for transfer/delete --submission-id",
    )
    p.set_defaults(func=cmd_task_generate_submission_id)

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
    p = esub.add_parser("search", help="collections whose name or description matches TEXT")
    p.add_argument("filter_text", nargs="?")
    p.add_argument("--limit", type=int, default=25)
    p.set_defaults(func=cmd_endpoint_search)
    p = esub.add_parser("show", help="one collection's document")
    p.add_argument("collection")
    p.set_defaults(func=cmd_endpoint_show)

    p = sub.add_parser("history", help="past events or tasks from the daemon's ledger")
    p.add_argument("--task", help="only this task")
    p.add_argument("--status")
    p.add_argument("--label")
    p.add_argument("--since", metavar="TIME", help=TIME_HELP + " (from, inclusive)")
    p.add_argument("--until", metavar="TIME", help=TIME_HELP + " (until, exclusive)")
    p.add_argument("--after", type=int, metavar="SEQ", help="events after this seq (next page)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--view", choices=("events", "tasks"), default="events")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("ui", help="open the daemon's web dashboard, signed in (one-time link)")
    p.add_argument("--no-browser", action="store_true", help="only print the link")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("watch", help="live progress of the session's tasks")
    p.add_argument("--task", help="only this task")
    p.add_argument(
        "--since", metavar="TIME", help=TIME_HELP + ": replay from the first event at or after it"
    )
    p.add_argument("--after", type=int, metavar="SEQ", help="replay from after this seq")
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
    except KeyboardInterrupt:
        code = 130
    except OrbitError as exc:
        code = exit_code(exc)
        report_error(exc, code, err=err, as_json=ctx.json)
    finally:
        ctx.close()
    return code


# The first matching class decides. RequestError comes before the usage errors: a 400 answer
# is a BadRequestError, also a ValueError.
_EXIT_CODE_OF: tuple[tuple[type[Exception] | UnionType, int], ...] = (
    (DaemonUnavailable, EXIT_UNREACHABLE),
    (AuthenticationError, EXIT_AUTH),
    (RequestError, EXIT_REQUEST_FAILED),
    (TaskFailed, EXIT_TASK_FAILED),
    (TaskWaitTimeout, EXIT_TIMEOUT),
    (TaskNeedsAttention, EXIT_NEEDS_ATTENTION),
    (UsageError | ConfigurationError | ArgumentError, EXIT_USAGE),
)


def exit_code(exc: OrbitError) -> int:
    """The exit code for an error that ended a command (see EXIT_CODES)."""
    return next(
        (code for kind, code in _EXIT_CODE_OF if isinstance(exc, kind)), EXIT_REQUEST_FAILED
    )


# Errors that carry the task's row.
TASK_ERRORS = (TaskFailed, TaskWaitTimeout, TaskNeedsAttention)


def report_error(exc: OrbitError, code: int, *, err: TextIO, as_json: bool) -> None:
    """One line on stderr: text, or under ``-F json`` one JSON object a script can parse."""
    if not as_json:
        print(f"orbit-globus: {exc}", file=err)
        return
    document: dict[str, Any] = {
        "error": getattr(exc, "code", None) or type(exc).__name__,
        "message": getattr(exc, "message", None) or str(exc),
        "exit_code": code,
    }
    if isinstance(exc, RequestError):
        document["status"] = exc.status
    if isinstance(exc, ConsentRequiredError):
        document["required_scopes"] = exc.required_scopes
    task = getattr(exc, "task", None) if isinstance(exc, TASK_ERRORS) else None
    if task is not None:
        document["task"] = task
    print(json.dumps(document, sort_keys=True), file=err)
