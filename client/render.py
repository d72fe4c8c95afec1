"""Text output for the command line, without I/O: tables, sizes, and the progress board."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..protocol import is_terminal
from .trouble import trouble_text

__all__ = ["TIME_KEYS", "ProgressBoard", "ProgressRow", "human_bytes", "local_time", "table"]

# Fields holding Unix seconds: text output shows them as ISO 8601 local times.
TIME_KEYS = frozenset({"time", "request_time", "completion_time"})

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(count: float | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def local_time(value: float) -> str:
    """Unix seconds as ISO 8601 in the local time zone, to the second (with its offset)."""
    return datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")


def _cell(value: Any, key: str = "") -> str:
    if key in TIME_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
        return local_time(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items() if v is not None) or "-"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` is ``[(key, heading), ...]``."""
    cells = [[_cell(row.get(key), key) for key, _ in columns] for row in rows]
    headings = [heading for _, heading in columns]
    widths = [len(h) for h in headings]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    out = [
        " | ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip(),
        "-+-".join("-" * w for w in widths),
    ]
    out += [
        " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(out)


def record(document: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """One document as ``key: value`` lines (all keys, or the given ones in order)."""
    chosen = list(keys) if keys is not None else list(document)
    width = max((len(k) for k in chosen), default=0)
    return "\n".join(f"{k.ljust(width)} : {_cell(document.get(k), k)}" for k in chosen)


@dataclass
class ProgressRow:
    task_id: str
    label: str | None = None
    status: str = "?"
    nice_status: str | None = None
    bytes_transferred: int = 0
    files_transferred: int = 0
    bytes_total: int | None = None
    files_total: int | None = None
    first_seen: float = field(default_factory=time.monotonic)
    first_bytes: int = 0
    updated: float = field(default_factory=time.monotonic)
    # Trouble, as the notifications report it (see client/trouble.py).
    is_ok: bool | None = None
    is_paused: bool = False
    faults: int = 0
    error: dict[str, Any] | None = None
    needs_attention: str | None = None
    attention_message: str | None = None

    def trouble(self) -> str:
        return trouble_text(
            {
                "status": self.status,
                "nice_status": self.nice_status,
                "is_ok": self.is_ok,
                "is_paused": self.is_paused,
                "faults": self.faults,
                "error": self.error,
                "needs_attention": self.needs_attention,
                "attention_message": self.attention_message,
            }
        )

    @property
    def done(self) -> bool:
        return is_terminal(self.status)

    def rate(self) -> float | None:
        elapsed = self.updated - self.first_seen
        if elapsed <= 0.2:
            return None
        return (self.bytes_transferred - self.first_bytes) / elapsed


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ProgressBoard:
    """The latest state of each task seen on the stream, drawn as one progress line each.

    Globus reports bytes and files moved but no totals, so the bar is exact only when an
    event carries ``bytes_total``/``files_total``; otherwise it shows movement while ACTIVE
    and fills when the task SUCCEEDED.
    """

    def __init__(self, *, width: int = 24) -> None:
        self.tasks: dict[str, ProgressRow] = {}
        self.width = width
        self._tick = 0

    def apply(self, event: Mapping[str, Any]) -> ProgressRow | None:
        """Fold one stream event in; returns the task it changed (None if not a task event)."""
        if event.get("topic") != "transfer_status":
            return None
        data = event.get("data") or {}
        task_id = data.get("task_id") or event.get("task_id")
        if not isinstance(task_id, str):
            return None
        task = self.tasks.get(task_id)
        now = time.monotonic()
        if task is None:
            task = self.tasks[task_id] = ProgressRow(task_id=task_id, first_seen=now)
            task.first_bytes = _int(data.get("bytes_transferred")) or 0
        task.label = data.get("label") or task.label
        task.status = str(data.get("status") or task.status)
        task.nice_status = data.get("nice_status")
        task.bytes_transferred = _int(data.get("bytes_transferred")) or task.bytes_transferred
        task.files_transferred = _int(data.get("files_transferred")) or task.files_transferred
        task.bytes_total = _int(data.get("bytes_total")) or task.bytes_total
        task.files_total = _int(data.get("files_total")) or task.files_total
        task.is_ok = data.get("is_ok") if isinstance(data.get("is_ok"), bool) else None
        task.is_paused = data.get("is_paused") is True
        task.faults = _int(data.get("faults")) or task.faults
        if isinstance(data.get("error"), Mapping):
            task.error = dict(data["error"])
        attention = data.get("needs_attention")
        if attention is None or attention != task.needs_attention:
            task.attention_message = None
        task.needs_attention = attention if isinstance(attention, str) else None
        if isinstance(data.get("attention_message"), str):
            task.attention_message = data["attention_message"]
        task.updated = now
        return task

    def all_done(self) -> bool:
        return bool(self.tasks) and all(t.done for t in self.tasks.values())

    def _bar(self, task: ProgressRow) -> str:
        inner = self.width
        if task.bytes_total:
            filled = min(inner, int(inner * task.bytes_transferred / task.bytes_total))
            return "[" + "#" * filled + "." * (inner - filled) + "]"
        if task.status == "SUCCEEDED":
            return "[" + "#" * inner + "]"
        if task.status == "FAILED":
            return "[" + "x" * inner + "]"
        # No total known: a moving marker shows the task is alive without faking a fraction.
        pos = self._tick % inner
        return "[" + "." * pos + "<=>"[: inner - pos] + "." * max(0, inner - pos - 3) + "]"

    def line(self, task: ProgressRow) -> str:
        files = f"{task.files_transferred}"
        if task.files_total:
            files += f"/{task.files_total}"
        rate = task.rate()
        speed = f" {human_bytes(rate)}/s" if rate and not task.done else ""
        nice = f" ({task.nice_status})" if task.nice_status not in (None, "OK", "Queued") else ""
        label = f" {task.label}" if task.label else ""
        trouble = task.trouble() if not task.done else ""
        return (
            f"{task.task_id[:8]}{label} {task.status}{nice} {self._bar(task)} "
            f"{human_bytes(task.bytes_transferred)} {files} files{speed}"
            + (f" !! {trouble}" if trouble else "")
        )

    def lines(self) -> list[str]:
        self._tick += 1
        return [self.line(task) for task in self.tasks.values()]
