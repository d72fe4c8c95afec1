"""task_list filters, ordering and paging, as pure functions over task documents.

Filter syntax (one or more ``filter`` query parameters, each ``key:v1,v2/key2:v``):

- ``task_id``, ``status``, ``type``: any of the comma-separated values (case-insensitive for
  status and type);
- ``label``: ``=text`` or ``text`` exact, ``!text`` anything else, ``~pat`` case-insensitive
  match where ``*`` stands for any run of characters, ``!~pat`` its negation;
- ``request_time``, ``completion_time``: ``start,end`` inclusive, either end may be empty;
  times as ``YYYY-MM-DD HH:MM:SS`` (UTC) or ISO 8601.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, bad_request

__all__ = [
    "PAGE_CAP",
    "Predicate",
    "order_tasks",
    "page_window",
    "parse_filters",
    "parse_orderby",
    "parse_time",
    "task_id_candidates",
]

PAGE_CAP = 1000
Predicate = Callable[[dict[str, Any]], bool]
_ORDER_FIELDS = frozenset(
    {
        "request_time",
        "completion_time",
        "label",
        "status",
        "type",
        "task_id",
        "deadline",
        "nice_status",
        "bytes_transferred",
        "files_transferred",
        "owner_id",
    }
)


def parse_time(text: str) -> datetime:
    """Parse a filter time; naive times are UTC."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            "InvalidFilter", f"{text!r} is not a time; use 'YYYY-MM-DD HH:MM:SS' (UTC)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _label_predicate(spec: str) -> Predicate:
    negate = spec.startswith("!")
    body = spec[1:] if negate else spec
    if body.startswith("~"):
        regex = re.compile(
            ".*".join(re.escape(part) for part in body[1:].split("*")), re.IGNORECASE | re.DOTALL
        )

        def match(doc: dict[str, Any]) -> bool:
            label = doc.get("label")
            return label is not None and regex.fullmatch(label) is not None
    else:
        exact = body[1:] if body.startswith("=") else body

        def match(doc: dict[str, Any]) -> bool:
            return bool(doc.get("label") == exact)

    if negate:
        return lambda doc: not match(doc)
    return match


def _range_predicate(key: str, spec: str) -> Predicate:
    if "," not in spec:
        raise bad_request(
            "InvalidFilter", f"filter {key} needs 'start,end' (either may be empty), not {spec!r}"
        )
    start_text, end_text = spec.split(",", 1)
    start = parse_time(start_text) if start_text.strip() else None
    end = parse_time(end_text) if end_text.strip() else None

    def match(doc: dict[str, Any]) -> bool:
        value = doc.get(key)
        if value is None:
            return False
        when = parse_time(value)
        return (start is None or when >= start) and (end is None or when <= end)

    return match


def _one_clause(clause: str) -> Predicate:
    key, sep, spec = clause.partition(":")
    key = key.strip()
    if not sep or not key:
        raise bad_request("InvalidFilter", f"filter clause {clause!r} must look like 'key:value'")
    if key in ("task_id", "status", "type"):
        values = {v.strip() for v in spec.split(",") if v.strip()}
        if key != "task_id":
            values = {v.upper() for v in values}
            return lambda doc: str(doc.get(key, "")).upper() in values
        return lambda doc: doc.get(key) in values
    if key == "label":
        return _label_predicate(spec)
    if key in ("request_time", "completion_time"):
        return _range_predicate(key, spec)
    raise bad_request(
        "InvalidFilter",
        f"unknown filter key {key!r}; use task_id, status, type, label, request_time or "
        "completion_time",
    )


def parse_filters(filters: Iterable[str]) -> list[Predicate]:
    """All clauses of all ``filter`` parameters; a task must match every clause."""
    preds: list[Predicate] = []
    for text in filters:
        for clause in text.split("/"):
            if clause.strip():
                preds.append(_one_clause(clause))
    return preds


def task_id_candidates(filters: Iterable[str]) -> set[str] | None:
    """The task ids a set of filters allows at most (None: any); lets task_list skip the rest."""
    allowed: set[str] | None = None
    for text in filters:
        for clause in text.split("/"):
            key, sep, spec = clause.partition(":")
            if sep and key.strip() == "task_id":
                ids = {v.strip() for v in spec.split(",") if v.strip()}
                allowed = ids if allowed is None else allowed & ids
    return allowed


def parse_orderby(text: str | None) -> list[tuple[str, bool]]:
    """``"field [ASC|DESC], ..."`` -> [(field, descending)]; default request_time DESC."""
    if not text:
        return [("request_time", True)]
    out = []
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        name = words[0]
        direction = words[1].upper() if len(words) > 1 else "ASC"
        if name not in _ORDER_FIELDS or direction not in ("ASC", "DESC") or len(words) > 2:
            raise bad_request(
                "InvalidOrderBy",
                f"cannot order by {part.strip()!r}; use one of {sorted(_ORDER_FIELDS)} "
                "followed by ASC or DESC",
            )
        out.append((name, direction == "DESC"))
    return out or [("request_time", True)]


def order_tasks(
    docs: Sequence[dict[str, Any]], orderby: list[tuple[str, bool]]
) -> list[dict[str, Any]]:
    """Stable sort by each key in turn; None sorts first ascending, last descending."""
    result = list(docs)
    for name, descending in reversed(orderby):
        present = [d for d in result if d.get(name) is not None]
        missing = [d for d in result if d.get(name) is None]
        present.sort(key=lambda d, n=name: d[n], reverse=descending)  # type: ignore[misc]
        result = present + missing if descending else missing + present
    return result


def page_window(
    limit: str | None, offset: str | None, *, default_limit: int, cap: int = PAGE_CAP
) -> tuple[int, int]:
    """Validate limit/offset: at most ``cap`` per page and ``cap`` results in total."""
    try:
        lim = int(limit) if limit not in (None, "") else default_limit
        off = int(offset) if offset not in (None, "") else 0
    except ValueError:
        raise bad_request("InvalidPaging", "limit and offset must be integers") from None
    if lim < 1 or lim > cap:
        raise bad_request("InvalidPaging", f"limit must be between 1 and {cap}, not {lim}")
    if off < 0:
        raise bad_request("InvalidPaging", f"offset must not be negative, not {off}")
    if off + lim > cap:
        raise _too_far(off, lim, cap)
    return lim, off


def _too_far(off: int, lim: int, cap: int) -> ApiError:
    return bad_request(
        "InvalidPaging",
        f"offset + limit must not exceed {cap} (got {off} + {lim}); narrow the query with "
        "filters instead",
    )
