"""Structured logs: JSON when stderr is not a terminal, key=value on a terminal.

A redaction processor runs last before rendering: values under credential-like keys are
masked, and any live ``Secret`` value found inside a string is replaced, so a credential
cannot reach a log line even through an exception message.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import MutableMapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import structlog

from ..globus.credentials import Secret, known_secrets

__all__ = ["announce", "configure_logging", "get_logger", "redact"]

_SENSITIVE_KEYS = frozenset(
    {"access_token", "refresh_token", "token", "authorization", "password", "secret"}
)
_MASK = "***"


def _scrub(value: Any) -> Any:
    if isinstance(value, Secret):
        return _MASK
    if isinstance(value, str):
        for secret in known_secrets():
            if secret in value:
                value = value.replace(secret, _MASK)
        return value
    if isinstance(value, dict):
        return {
            k: _MASK if str(k).lower() in _SENSITIVE_KEYS else _scrub(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SENSITIVE_KEYS:
            event_dict[key] = _MASK
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    if json is None:
        json = not (stream or sys.stderr).isatty()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"])
    )
    # Every line, ours or a library's, gets the same time stamp, traceback and redaction.
    finish: list[Any] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *finish,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Third-party libraries (uvicorn, globus-sdk, websockets) log through the standard
    # library: render their records with the same format and the same redaction.
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                *finish,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for name in ("globus_sdk", "uvicorn", "uvicorn.error", "uvicorn.access", "websockets"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Everything else that would write plain text to stderr goes through the same lines:
    # warnings.warn(), and exceptions nobody caught in the main or any other thread.
    # (asyncio's "exception was never retrieved" reports use the "asyncio" logger already.)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    structlog.get_logger("radical.orbit").error("uncaught exception", exc_info=(kind, exc, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    assert args.exc_value is not None
    structlog.get_logger("radical.orbit").error(
        "uncaught exception in a thread",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def announce(message: str, *, level: str = "info", **fields: Any) -> None:
    """Tell the operator: plain ``orbit-globus-endpoint: message`` on a terminal, else one
    JSON line like every other (journald collects stderr; a plain line there could not be
    parsed with the others). Works before :func:`configure_logging` too."""
    if sys.stderr.isatty():
        print(f"orbit-globus-endpoint: {message}", file=sys.stderr, flush=True)
        return
    line = {"event": message, "level": level, **_scrub(fields)}
    line["timestamp"] = datetime.now(UTC).isoformat()
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
