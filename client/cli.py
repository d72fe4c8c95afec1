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
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ..protocol import STATUSES
from .commands import (
    ENV_SESSION,
    EXIT_CODES,
    EXIT_REQUEST_FAILED,
    EXIT_TASK_FAILED,
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
    cmd_session_register,
    cmd_session_unregister,
    cmd_task_cancel,
    cmd_task_event_list,
    cmd_task_list,
    cmd_task_show,
    cmd_task_wait,
    cmd_transfer,
    cmd_ui,
    cmd_watch,
)
from .errors import (
    ArgumentError,
    ConfigurationError,
    DaemonUnavailable,
    OrbitError,
    RequestError,
    TaskFailed,
)

__all__ = ["EXIT_CODES", "build_parser", "main"]


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
        help="stop (exit 6) as soon as the task needs attention: Globus retries an error, "
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
    _add_policy_options(p)
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
    _add_policy_options(p)
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
    p.add_argument("--status", choices=STATUSES)
    p.set_defaults(func=cmd_task_list)
    p = tsub.add_parser("wait", help="wait until the task ends (exit 1 if it FAILED)")
    p.add_argument("task_id")
    _add_wait_options(p)
    p.set_defaults(func=cmd_task_wait)
    p = tsub.add_parser("event-list", help="Globus's own events of a task (newest first)")
    p.add_argument("task_id")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.set_defaults(func=cmd_task_event_list)
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

    p = sub.add_parser("ui", help="open the daemon's web dashboard, signed in (one-time link)")
    p.add_argument("--no-browser", action="store_true", help="only print the link")
    p.set_defaults(func=cmd_ui)

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
