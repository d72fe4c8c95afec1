"""SQL of the ledger: row mapping, batch writes, projection rebuild and reads (synchronous).

Functions here take a ``sqlite3.Connection`` and are called from the writer thread (writes)
or from reader threads (reads); the asyncio shell in :mod:`.ledger` decides which.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from .codec import spec_of
from .errors import LedgerError, ProjectionRebuildError
from .events import (
    DeleteRequest,
    FatalError,
    StoredEvent,
    TaskError,
    TransferRequest,
    TroublePolicy,
    decode_event,
)
from .fold import SubmissionRow, TaskRow, step

__all__ = [
    "TASK_COLUMNS",
    "insert_events",
    "insert_tasks",
    "load_submissions",
    "load_tasks",
    "pending_submissions",
    "projection_snapshot",
    "read_events",
    "read_task",
    "read_tasks",
    "rebuild",
    "sequence_high_water",
    "update_tasks",
    "upsert_submissions",
]

TASK_COLUMNS = (
    "task_id, submission_id, owner, session_id, type, status, nice_status, label, source, "
    "destination, bytes_transferred, files_transferred, fatal_error, request_time, "
    "completion_time, created_seq, last_seq, is_ok, is_paused, faults, error, needs_attention, "
    "attention_since, progress_time, policy, attention_message"
)
_TASK_WIDTH = 26
SUBMISSION_COLUMNS = (
    "submission_id, owner, session_id, type, request, state, task_id, code, message, "
    "request_time, requested_seq, last_seq"
)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_LOADS = json.loads
# Host parameters per statement stay under SQLite's default limit (32766 since 3.32).
_IN_CHUNK = 500


def _refuse(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# JSONEncoder.encode builds a new C encoder at every call; one built here once encodes in
# about half the time. No circular-reference markers: every value is a fresh tree of
# validated fields (see codec.py), so it cannot contain itself.
_C_ENCODE = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, False)
)


def dumps(value: Any) -> str:
    """Compact JSON (no NaN/Infinity), as ``_ENCODER.encode`` would write it."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


def _fatal_json(fatal: FatalError | None) -> str | None:
    return None if fatal is None else dumps({"code": fatal.code, "description": fatal.description})


def _record_json(value: TaskError | TroublePolicy | None) -> str | None:
    return None if value is None else dumps(spec_of(type(value)).encode(value))


def _task_tuple(row: TaskRow) -> tuple[Any, ...]:
    fatal = _fatal_json(row.fatal_error)
    return (
        row.task_id,
        row.submission_id,
        row.owner,
        row.session_id,
        row.type,
        row.status,
        row.nice_status,
        row.label,
        row.source,
        row.destination,
        row.bytes_transferred,
        row.files_transferred,
        fatal,
        row.request_time,
        row.completion_time,
        row.created_seq,
        row.last_seq,
        *_trouble_tuple(row),
    )


def _trouble_tuple(row: TaskRow) -> tuple[Any, ...]:
    return (
        row.is_ok,
        row.is_paused,
        row.faults,
        _record_json(row.error),
        row.needs_attention,
        row.attention_since,
        row.progress_time,
        _record_json(row.policy),
        row.attention_message,
    )


def _task_row(values: Sequence[Any]) -> TaskRow:
    fatal = values[12]
    return TaskRow(
        task_id=values[0],
        submission_id=values[1],
        owner=values[2],
        session_id=values[3],
        type=values[4],
        status=values[5],
        nice_status=values[6],
        label=values[7],
        source=values[8],
        destination=values[9],
        bytes_transferred=values[10],
        files_transferred=values[11],
        fatal_error=None if fatal is None else FatalError(**_LOADS(fatal)),
        request_time=values[13],
        completion_time=values[14],
        created_seq=values[15],
        last_seq=values[16],
        is_ok=None if values[17] is None else bool(values[17]),
        is_paused=bool(values[18]),
        faults=values[19],
        error=None if values[20] is None else TaskError(**_LOADS(values[20])),
        needs_attention=values[21],
        attention_since=values[22],
        progress_time=values[23],
        policy=None if values[24] is None else _policy(values[24]),
        attention_message=values[25],
    )


def _policy(text: str) -> TroublePolicy:
    return TroublePolicy(**spec_of(TroublePolicy).decode_kwargs(_LOADS(text)))


def _submission_tuple(row: SubmissionRow) -> tuple[Any, ...]:
    request = dumps(spec_of(type(row.request)).encode(row.request))
    return (
        row.submission_id,
        row.owner,
        row.session_id,
        row.type,
        request,
        row.state,
        row.task_id,
        row.code,
        row.message,
        row.request_time,
        row.requested_seq,
        row.last_seq,
    )


def _submission_row(values: Sequence[Any]) -> SubmissionRow:
    cls: type[TransferRequest] | type[DeleteRequest] = (
        TransferRequest if values[3] == "TRANSFER" else DeleteRequest
    )
    request = cls(**spec_of(cls).decode_kwargs(_LOADS(values[4])))
    return SubmissionRow(
        submission_id=values[0],
        owner=values[1],
        session_id=values[2],
        type=values[3],
        request=request,
        state=values[5],
        task_id=values[6],
        code=values[7],
        message=values[8],
        request_time=values[9],
        requested_seq=values[10],
        last_seq=values[11],
    )


# --- writes (writer thread, inside its transaction) ---------------------------------------


def sequence_high_water(conn: sqlite3.Connection) -> tuple[int, float]:
    """The highest seq ever handed out (deleted or not) and the newest event time."""
    high, last = conn.execute(
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events'), "
        "(SELECT time FROM events ORDER BY seq DESC LIMIT 1)"
    ).fetchone()
    return (int(high) if high is not None else 0), (float(last) if last is not None else 0.0)


def _chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


def load_tasks(conn: sqlite3.Connection, task_ids: Iterable[str]) -> dict[str, TaskRow]:
    keys = list(set(task_ids))
    out: dict[str, TaskRow] = {}
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id IN ({marks})"  # noqa: S608
        for values in conn.execute(sql, chunk):
            out[values[0]] = _task_row(values)
    return out


def load_submissions(
    conn: sqlite3.Connection, submission_ids: Iterable[str]
) -> dict[str, SubmissionRow]:
    keys = list(set(submission_ids))
    out: dict[str, SubmissionRow] = {}
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        sql = (
            f"SELECT {SUBMISSION_COLUMNS} FROM submissions "  # noqa: S608
            f"WHERE submission_id IN ({marks})"
        )
        for values in conn.execute(sql, chunk):
            out[values[0]] = _submission_row(values)
    return out


def insert_events(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows are ``(seq, time, kind, owner, session_id, task_id, data_json)``."""
    conn.executemany(
        "INSERT INTO events (seq, time, kind, owner, session_id, task_id, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def insert_tasks(conn: sqlite3.Connection, rows: Iterable[TaskRow]) -> None:
    conn.executemany(
        f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({','.join('?' * _TASK_WIDTH)})",  # noqa: S608
        [_task_tuple(r) for r in rows],
    )


_UPDATE_TASK = (
    "UPDATE tasks SET {status}nice_status = ?, label = ?, bytes_transferred = ?, "
    "files_transferred = ?, fatal_error = ?, completion_time = ?, last_seq = ?, is_ok = ?, "
    "is_paused = ?, faults = ?, error = ?, needs_attention = ?, attention_since = ?, "
    "progress_time = ?, policy = ?, attention_message = ? WHERE task_id = ?"
)


def update_tasks(conn: sqlite3.Connection, rows: Sequence[TaskRow], *, status: bool) -> None:
    """Write the mutable columns of existing rows. Cheaper than REPLACE: the key and the
    owner/session indexes stay untouched, and with ``status=False`` (the rows' status did
    not change, the common case of progress) so does the status index."""
    if not rows:
        return
    sql = _UPDATE_TASK.format(status="status = ?, " if status else "")
    conn.executemany(
        sql,
        [
            (
                *((r.status,) if status else ()),
                r.nice_status,
                r.label,
                r.bytes_transferred,
                r.files_transferred,
                _fatal_json(r.fatal_error),
                r.completion_time,
                r.last_seq,
                *_trouble_tuple(r),
                r.task_id,
            )
            for r in rows
        ],
    )


def upsert_submissions(conn: sqlite3.Connection, rows: Iterable[SubmissionRow]) -> None:
    conn.executemany(
        f"INSERT OR REPLACE INTO submissions ({SUBMISSION_COLUMNS}) "  # noqa: S608
        f"VALUES ({','.join('?' * 12)})",
        [_submission_tuple(r) for r in rows],
    )


def rebuild(conn: sqlite3.Connection) -> None:
    """Recompute tasks and submissions from the events (caller holds the transaction)."""
    tasks: dict[str, TaskRow] = {}
    submissions: dict[str, SubmissionRow] = {}
    cursor = conn.execute(
        "SELECT seq, time, kind, owner, session_id, data FROM events ORDER BY seq"
    )
    while batch := cursor.fetchmany(2000):
        for seq, time, kind, owner, session_id, data in batch:
            try:
                event = decode_event(kind, owner=owner, session_id=session_id, data=_LOADS(data))
                step(tasks, submissions, event, seq=seq, time=time)
            except LedgerError as exc:
                raise ProjectionRebuildError(
                    f"event {seq} ({kind}) cannot be folded: {exc}; were events deleted?"
                ) from exc
    conn.execute("DELETE FROM tasks")
    conn.execute("DELETE FROM submissions")
    insert_tasks(conn, tasks.values())
    upsert_submissions(conn, submissions.values())


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause of the conditions whose value is not None, and its parameters.

    A sequence value stands for ``IN (?)``: the placeholder becomes one per element.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            clause = clause.replace("(?)", f"({','.join('?' * len(value))})")
            params.extend(value)
        else:
            params.append(value)
        clauses.append(clause)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


# --- reads (reader threads) ---------------------------------------------------------------


def read_task(conn: sqlite3.Connection, task_id: str) -> TaskRow | None:
    values = conn.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?",  # noqa: S608
        (task_id,),
    ).fetchone()
    return None if values is None else _task_row(values)


def read_tasks(
    conn: sqlite3.Connection,
    *,
    owner: str | None,
    session_id: str | None,
    statuses: Sequence[str] | None,
    label: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    offset: int,
) -> list[TaskRow]:
    clause, params = _where(
        ("owner = ?", owner),
        ("session_id = ?", session_id),
        ("status IN (?)", statuses),
        ("label GLOB ?", label),
        ("request_time >= ?", since),
        ("request_time < ?", until),
    )
    sql = (
        f"SELECT {TASK_COLUMNS} FROM tasks {clause} "  # noqa: S608
        "ORDER BY created_seq DESC LIMIT ? OFFSET ?"
    )
    return [_task_row(v) for v in conn.execute(sql, [*params, limit, offset])]


def pending_submissions(conn: sqlite3.Connection, *, session_id: str | None) -> list[SubmissionRow]:
    clause, params = _where(("state = ?", "pending"), ("session_id = ?", session_id))
    sql = f"SELECT {SUBMISSION_COLUMNS} FROM submissions {clause} ORDER BY requested_seq"  # noqa: S608
    return [_submission_row(v) for v in conn.execute(sql, params)]


def read_events(
    conn: sqlite3.Connection,
    *,
    after: int,
    until: int | None,
    owner: str | None,
    session_id: str | None,
    task_id: str | None,
    kinds: Sequence[str] | None,
    limit: int,
    times: tuple[float | None, float | None] | None = None,
    data: Mapping[str, str] | None = None,
) -> list[StoredEvent]:
    time_from, time_until = times or (None, None)
    for field in data or {}:
        if not field.isidentifier():
            raise ValueError(f"data filter field {field!r} is not a field name")
    clause, params = _where(
        ("seq > ?", after),
        ("seq <= ?", until),
        ("time >= ?", time_from),
        ("time < ?", time_until),
        *((f"json_extract(data, '$.{field}') = ?", value) for field, value in (data or {}).items()),
        ("owner = ?", owner),
        ("session_id = ?", session_id),
        ("task_id = ?", task_id),
        ("kind IN (?)", kinds),
    )
    sql = (
        "SELECT seq, time, kind, owner, session_id, task_id, data FROM events "  # noqa: S608
        f"{clause} ORDER BY seq LIMIT ?"
    )
    params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    # One json.loads per page instead of one per row: the per-call overhead is most of the
    # cost of decoding small objects, and every stored data is a JSON object we wrote.
    datas = _LOADS("[" + ",".join([row[6] for row in rows]) + "]")
    # tuple.__new__ skips the named tuple's Python-level __new__: half the cost per row.
    new = tuple.__new__
    return [
        new(StoredEvent, (seq, time, kind, owner_, sid, tid, data))
        for (seq, time, kind, owner_, sid, tid, _), data in zip(rows, datas, strict=True)
    ]


def projection_snapshot(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
    """Every projection row in key order (for comparing a rebuild with the live tables)."""
    tasks = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks ORDER BY task_id").fetchall()  # noqa: S608
    subs = conn.execute(
        f"SELECT {SUBMISSION_COLUMNS} FROM submissions ORDER BY submission_id"  # noqa: S608
    ).fetchall()
    return tasks, subs
