"""SQL of the ledger: row mapping, batch writes, projection rebuild and reads (synchronous).

Writes take a ``sqlite3.Connection`` and run in the writer thread; reads are a
:class:`Query` and the mapping of its rows, run by the asyncio shell in :mod:`.ledger` on its
``aiosqlite`` read connections.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from ..protocol import compact_json
from .codec import spec_of
from .envelopes import ENVELOPE_SQL
from .errors import LedgerError, ProjectionRebuildError
from .events import (
    DeleteRequest,
    FatalError,
    StoredEvent,
    SubmitRequested,
    TaskError,
    TransferRequest,
    TroublePolicy,
    decode_event,
)
from .fold import CancelRow, Projections, SessionRow, SubmissionRow, TaskRow, step

__all__ = [
    "ENVELOPE_COLUMNS",
    "RAW_EVENT_COLUMNS",
    "TASK_COLUMNS",
    "Query",
    "RawEvent",
    "bounded_rows",
    "cancel_rows",
    "envelope_texts",
    "events_query",
    "insert_events",
    "insert_tasks",
    "load_cancels",
    "load_sessions",
    "load_submissions",
    "load_tasks",
    "open_sessions_query",
    "pending_cancels_query",
    "raise_sequence",
    "raw_events",
    "rebuild",
    "retained_rows",
    "sequence_high_water",
    "session_rows",
    "snapshot_queries",
    "stored_events",
    "submission_rows",
    "submissions_query",
    "task_query",
    "task_rows",
    "tasks_query",
    "update_tasks",
    "upsert_cancels",
    "upsert_sessions",
    "upsert_submissions",
]

TASK_COLUMNS = (
    "task_id, submission_id, owner, session_id, type, status, nice_status, label, source, "
    "destination, bytes_transferred, files_transferred, fatal_error, request_time, "
    "completion_time, created_seq, last_seq, is_ok, is_paused, faults, error, needs_attention, "
    "attention_since, progress_time, policy, attention_message, observed_time"
)
_TASK_WIDTH = 27
SUBMISSION_COLUMNS = (
    "submission_id, owner, session_id, type, state, task_id, code, message, "
    "request_time, requested_seq, last_seq"
)
SESSION_COLUMNS = "session_id, owner, local_collection, auth, state, opened_seq, last_seq, policy"
CANCEL_COLUMNS = "task_id, owner, session_id, state, code, requested_seq, last_seq"
_LOADS = json.loads
# Host parameters per statement stay under SQLite's default limit (32766 since 3.32).
_IN_CHUNK = 500


# Strict JSON in the ledger file: NaN and Infinity are not JSON (RFC 8259).
_ENCODE = compact_json(allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON (no NaN/Infinity), as every JSON column of the ledger is written."""
    return _ENCODE(value)


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
        row.observed_time,
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
        observed_time=values[26],
    )


def _policy(text: str) -> TroublePolicy:
    return TroublePolicy(**spec_of(TroublePolicy).decode_kwargs(_LOADS(text)))


def _submission_tuple(row: SubmissionRow) -> tuple[Any, ...]:
    return (
        row.submission_id,
        row.owner,
        row.session_id,
        row.type,
        row.state,
        row.task_id,
        row.code,
        row.message,
        row.request_time,
        row.requested_seq,
        row.last_seq,
    )


def _decode_request(kind: str, event_data: str | None) -> TransferRequest | DeleteRequest | None:
    """The request held by a submit_requested event's data (None if the event is gone)."""
    if event_data is None:
        return None
    cls: type[TransferRequest] | type[DeleteRequest] = (
        TransferRequest if kind == "TRANSFER" else DeleteRequest
    )
    return cls(**spec_of(cls).decode_kwargs(_LOADS(event_data)["request"]))


def _submission_row(
    values: Sequence[Any], request: TransferRequest | DeleteRequest | None = None
) -> SubmissionRow:
    return SubmissionRow(
        submission_id=values[0],
        owner=values[1],
        session_id=values[2],
        type=values[3],
        request=request,
        state=values[4],
        task_id=values[5],
        code=values[6],
        message=values[7],
        request_time=values[8],
        requested_seq=values[9],
        last_seq=values[10],
    )


def _session_tuple(row: SessionRow) -> tuple[Any, ...]:
    return (
        row.session_id,
        row.owner,
        row.local_collection,
        row.auth,
        row.state,
        row.opened_seq,
        row.last_seq,
        _record_json(row.policy),
    )


def _session_row(values: Sequence[Any]) -> SessionRow:
    policy = values[7]
    return SessionRow(
        session_id=values[0],
        owner=values[1],
        local_collection=values[2],
        auth=values[3],
        state=values[4],
        opened_seq=values[5],
        last_seq=values[6],
        policy=None if policy is None else _policy(policy),
    )


def _cancel_tuple(row: CancelRow) -> tuple[Any, ...]:
    return (
        row.task_id,
        row.owner,
        row.session_id,
        row.state,
        row.code,
        row.requested_seq,
        row.last_seq,
    )


# --- writes (writer thread, inside its transaction) ---------------------------------------


def sequence_high_water(conn: sqlite3.Connection) -> tuple[int, float]:
    """The highest seq ever handed out (deleted or not) and the newest event time."""
    high, last = conn.execute(
        "SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'events'), "
        "(SELECT time FROM events ORDER BY seq DESC LIMIT 1)"
    ).fetchone()
    return (int(high) if high is not None else 0), (float(last) if last is not None else 0.0)


def raise_sequence(conn: sqlite3.Connection, floor: int) -> None:
    """Make the next seq handed out greater than ``floor`` (never lower the mark)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        updated = conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'", (floor,)
        ).rowcount
        if not updated:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)", (floor,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


R = TypeVar("R")


def _load_keyed(
    conn: sqlite3.Connection,
    keys: Iterable[str],
    table: str,
    columns: str,
    row: Callable[[Sequence[Any]], R],
) -> dict[str, R]:
    """The rows of ``table`` whose key (the first of ``columns``) is one of ``keys``, by key."""
    key = columns.split(",", 1)[0]
    wanted = list(set(keys))
    out: dict[str, R] = {}
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})"  # noqa: S608
        for values in conn.execute(sql, chunk):
            out[values[0]] = row(values)
    return out


def load_tasks(conn: sqlite3.Connection, task_ids: Iterable[str]) -> dict[str, TaskRow]:
    return _load_keyed(conn, task_ids, "tasks", TASK_COLUMNS, _task_row)


def load_submissions(
    conn: sqlite3.Connection, submission_ids: Iterable[str]
) -> dict[str, SubmissionRow]:
    return _load_keyed(conn, submission_ids, "submissions", SUBMISSION_COLUMNS, _submission_row)


def load_sessions(conn: sqlite3.Connection, session_ids: Iterable[str]) -> dict[str, SessionRow]:
    return _load_keyed(conn, session_ids, "sessions", SESSION_COLUMNS, _session_row)


def load_cancels(conn: sqlite3.Connection, task_ids: Iterable[str]) -> dict[str, CancelRow]:
    return _load_keyed(conn, task_ids, "cancels", CANCEL_COLUMNS, lambda v: CancelRow(*v))


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
    "UPDATE tasks SET {keys}nice_status = ?, bytes_transferred = ?, "
    "files_transferred = ?, fatal_error = ?, completion_time = ?, last_seq = ?, is_ok = ?, "
    "is_paused = ?, faults = ?, error = ?, needs_attention = ?, attention_since = ?, "
    "progress_time = ?, policy = ?, attention_message = ?, observed_time = ? WHERE task_id = ?"
)


def update_tasks(conn: sqlite3.Connection, rows: Sequence[TaskRow], *, keys: bool) -> None:
    """Write the mutable columns of existing rows. Cheaper than REPLACE: the key and the
    owner/session indexes stay untouched, and with ``keys=False`` (neither the status nor
    the label changed, the common case of progress) so do the status and label indexes:
    SQLite rewrites the entries of every index on a column the UPDATE sets."""
    if not rows:
        return
    sql = _UPDATE_TASK.format(keys="status = ?, label = ?, " if keys else "")
    conn.executemany(
        sql,
        [
            (
                *((r.status, r.label) if keys else ()),
                r.nice_status,
                r.bytes_transferred,
                r.files_transferred,
                _fatal_json(r.fatal_error),
                r.completion_time,
                r.last_seq,
                *_trouble_tuple(r),
                r.observed_time,
                r.task_id,
            )
            for r in rows
        ],
    )


def _replace_rows(
    conn: sqlite3.Connection, table: str, columns: str, values: Iterable[tuple[Any, ...]]
) -> None:
    """Write each tuple of ``values`` as the row of ``table`` with its key, new or not."""
    marks = ",".join("?" * (columns.count(",") + 1))
    sql = f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
    conn.executemany(sql, values)


def upsert_submissions(conn: sqlite3.Connection, rows: Iterable[SubmissionRow]) -> None:
    _replace_rows(conn, "submissions", SUBMISSION_COLUMNS, map(_submission_tuple, rows))


def upsert_sessions(conn: sqlite3.Connection, rows: Iterable[SessionRow]) -> None:
    _replace_rows(conn, "sessions", SESSION_COLUMNS, map(_session_tuple, rows))


def upsert_cancels(conn: sqlite3.Connection, rows: Iterable[CancelRow]) -> None:
    _replace_rows(conn, "cancels", CANCEL_COLUMNS, map(_cancel_tuple, rows))


_PROJECTION_TABLES = ("tasks", "submissions", "sessions", "cancels")


def retained_rows(
    conn: sqlite3.Connection,
) -> tuple[dict[str, TaskRow], dict[str, SubmissionRow]]:
    """The rows a projection rebuild must keep as they are: those whose creating event
    (``task_submitted``/``delete_submitted``, ``submit_requested``) a prune deleted."""
    task_ids = [
        r[0]
        for r in conn.execute(
            "SELECT task_id FROM tasks WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.seq = tasks.created_seq)"
        )
    ]
    submission_ids = [
        r[0]
        for r in conn.execute(
            "SELECT submission_id FROM submissions WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.seq = submissions.requested_seq)"
        )
    ]
    return load_tasks(conn, task_ids), load_submissions(conn, submission_ids)


def rebuild(conn: sqlite3.Connection) -> None:
    """Recompute every projection from the events (caller holds the transaction). Rows whose
    creating events retention pruned are kept as they are (see .retention)."""
    maps = Projections()
    maps.tasks, maps.submissions = retained_rows(conn)
    cursor = conn.execute(
        "SELECT seq, time, kind, owner, session_id, data FROM events ORDER BY seq"
    )
    while batch := cursor.fetchmany(2000):
        for seq, time, kind, owner, session_id, data in batch:
            try:
                event = decode_event(kind, owner=owner, session_id=session_id, data=_LOADS(data))
                step(maps, event, seq=seq, time=time)
                if isinstance(event, SubmitRequested):
                    # The request stays in its event; holding every one would cost MBs each.
                    row = maps.submissions[event.submission_id]
                    maps.submissions[event.submission_id] = dataclasses.replace(row, request=None)
            except LedgerError as exc:
                raise ProjectionRebuildError(
                    f"event {seq} ({kind}) cannot be folded: {exc}; were events deleted?"
                ) from exc
    for table in _PROJECTION_TABLES:
        conn.execute(f"DELETE FROM {table}")  # noqa: S608
    insert_tasks(conn, maps.tasks.values())
    upsert_submissions(conn, maps.submissions.values())
    upsert_sessions(conn, maps.sessions.values())
    upsert_cancels(conn, maps.cancels.values())


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A ``WHERE`` clause of the conditions whose value is not None, and its parameters.

    A list value stands for ``IN (?)``: the placeholder becomes one per element. A tuple
    holds the parameters of a clause with several placeholders, in order.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is None:
            continue
        if isinstance(value, list):
            clause = clause.replace("(?)", f"({','.join('?' * len(value))})")
            params.extend(value)
        elif isinstance(value, tuple):
            params.extend(value)
        else:
            params.append(value)
        clauses.append(clause)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


# --- reads: each is a query and the mapping of its rows ------------------------------------
#
# The asyncio shell runs the query on one of its read connections and maps the rows on the
# event loop; nothing here touches a connection, so the SQL can be read (and benchmarked)
# apart from how it is run.


class Query(NamedTuple):
    sql: str
    params: list[Any]


def task_query(task_id: str) -> Query:
    return Query(f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", [task_id])  # noqa: S608


# SQLite's largest integer: "no such row" for a seq bound, so that nothing matches.
_NO_SEQ = 2**63 - 1
_GLOB_SPECIAL = frozenset("*?[")


def glob_prefix(pattern: str) -> str:
    """The literal start of a GLOB pattern (all of it when it has no wildcard)."""
    for index, char in enumerate(pattern):
        if char in _GLOB_SPECIAL:
            return pattern[:index]
    return pattern


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (None: none)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _label_conditions(label: str | None) -> list[tuple[str, Any]]:
    """``label GLOB ?`` as conditions an index on label can answer: equality for a plain
    string, a range over the literal prefix (and the GLOB itself) for a pattern."""
    if label is None:
        return []
    prefix = glob_prefix(label)
    if prefix == label:
        return [("label = ?", label)]
    out: list[tuple[str, Any]] = [("label GLOB ?", label)]
    if prefix:
        out.append(("label >= ?", prefix))
        upper = _after_prefix(prefix)
        if upper is not None:
            out.append(("label < ?", upper))
    return out


# The first task (events: the first event) committed at or after a time, from the time index.
_FIRST_TASK_AT = (
    "(SELECT created_seq FROM tasks WHERE request_time >= ? "
    "ORDER BY request_time, created_seq LIMIT 1)"
)
_FIRST_EVENT_AT = "(SELECT seq FROM events WHERE time >= ? ORDER BY time, seq LIMIT 1)"


def tasks_query(
    *,
    owner: str | None,
    session_id: str | None,
    statuses: Sequence[str] | None,
    label: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    offset: int,
) -> Query:
    """Tasks matching every given filter, newest first. A time bound is also turned into a
    ``created_seq`` bound (request times never decrease as seqs grow), which the indexes
    ordered by ``created_seq`` can use; the time conditions stay, as the definition."""
    clause, params = _where(
        ("owner = ?", owner),
        ("session_id = ?", session_id),
        ("status IN (?)", None if statuses is None else list(statuses)),
        *_label_conditions(label),
        ("request_time >= ?", since),
        ("request_time < ?", until),
        (f"created_seq >= coalesce({_FIRST_TASK_AT}, {_NO_SEQ})", since),
        (f"created_seq < coalesce({_FIRST_TASK_AT}, {_NO_SEQ})", until),
    )
    sql = (
        f"SELECT {TASK_COLUMNS} FROM tasks {clause} "  # noqa: S608
        "ORDER BY created_seq DESC LIMIT ? OFFSET ?"
    )
    return Query(sql, [*params, limit, offset])


def task_rows(rows: Iterable[Sequence[Any]]) -> list[TaskRow]:
    return [_task_row(v) for v in rows]


def submissions_query(
    *,
    states: Sequence[str] | None = None,
    session_id: str | None = None,
    submission_id: str | None = None,
) -> Query:
    """Submissions (in ``states``, of a session, or one by id), oldest request first, each
    with the data of its submit_requested event (the request is stored once, there: see
    :func:`submission_rows`)."""
    clause, params = _where(
        ("s.state IN (?)", list(states) if states is not None else None),
        ("s.session_id = ?", session_id),
        ("s.submission_id = ?", submission_id),
    )
    columns = ", ".join(f"s.{c.strip()}" for c in SUBMISSION_COLUMNS.split(","))
    sql = (
        f"SELECT {columns}, e.data FROM submissions s "  # noqa: S608
        f"LEFT JOIN events e ON e.seq = s.requested_seq {clause} ORDER BY s.requested_seq"
    )
    return Query(sql, params)


def submission_rows(rows: Iterable[Sequence[Any]]) -> list[SubmissionRow]:
    """Rows of :func:`submissions_query`, with their requests."""
    return [_submission_row(v[:-1], _decode_request(v[3], v[-1])) for v in rows]


def open_sessions_query() -> Query:
    """Every session whose last event opened it, oldest first (from the partial index)."""
    sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'open' ORDER BY opened_seq"  # noqa: S608
    return Query(sql, [])


def session_rows(rows: Iterable[Sequence[Any]]) -> list[SessionRow]:
    return [_session_row(v) for v in rows]


def pending_cancels_query(*, session_id: str | None) -> Query:
    clause, params = _where(("state = ?", "pending"), ("session_id = ?", session_id))
    sql = f"SELECT {CANCEL_COLUMNS} FROM cancels {clause} ORDER BY requested_seq"  # noqa: S608
    return Query(sql, params)


def cancel_rows(rows: Iterable[Sequence[Any]]) -> list[CancelRow]:
    return [CancelRow(*v) for v in rows]


def events_query(
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
    columns: str = "seq, time, kind, owner, session_id, task_id, data",
) -> Query:
    """Events after ``after`` matching every given filter, in seq order; ``columns`` are
    what each row holds (:func:`stored_events` maps the default ones)."""
    time_from, time_until = times or (None, None)
    for field in data or {}:
        if not field.isidentifier():
            raise ValueError(f"data filter field {field!r} is not a field name")
    # One lower seq bound (the cursor, or the first event at ``time_from`` if later) and one
    # upper: SQLite walks an index range between two bounds, but checks a second bound on
    # the same side row by row.
    lower: tuple[str, Any] = ("seq > ?", after)
    if time_from is not None:
        lower = (f"seq > max(?, coalesce({_FIRST_EVENT_AT}, {_NO_SEQ}) - 1)", (after, time_from))
    clause, params = _where(
        lower,
        ("seq <= ?", until),
        (f"seq < coalesce({_FIRST_EVENT_AT}, {_NO_SEQ})", time_until),
        ("time >= ?", time_from),
        ("time < ?", time_until),
        *((f"json_extract(data, '$.{field}') = ?", value) for field, value in (data or {}).items()),
        ("owner = ?", owner),
        ("session_id = ?", session_id),
        ("task_id = ?", task_id),
        ("kind IN (?)", None if kinds is None else list(kinds)),
    )
    sql = f"SELECT {columns} FROM events {clause} ORDER BY seq LIMIT ?"  # noqa: S608
    params.append(limit)
    return Query(sql, params)


def bounded_rows(
    conn: sqlite3.Connection, query: Query, *, max_bytes: int | None, size_column: int
) -> tuple[list[Any], bool]:
    """The query's rows (run in a reader's thread), stopping after the row whose
    ``size_column`` (a text or its length) brings the page to ``max_bytes``: one row at
    least, however large, so a page of large events is never read into memory at once.
    Returns the rows and whether the byte bound cut the page short."""
    cursor = conn.execute(query.sql, query.params)
    if max_bytes is None:
        return cursor.fetchall(), False
    rows = []
    size = 0
    try:
        for row in cursor:
            rows.append(row)
            value = row[size_column]
            size += value if isinstance(value, int) else len(value) if value is not None else 0
            if size >= max_bytes:
                return rows, True
    finally:
        cursor.close()
    return rows, False


RawEvent = tuple[int, float, str, "str | None", "str | None", "str | None", str]
# The columns :func:`raw_events` maps: each event's data as the JSON text stored, checked by
# SQLite's json_valid (outside the GIL), never decoded.
RAW_EVENT_COLUMNS = "seq, time, kind, owner, session_id, task_id, data, json_valid(data)"


def raw_events(rows: Sequence[Sequence[Any]]) -> list[RawEvent]:
    """Rows of ``events_query(columns=RAW_EVENT_COLUMNS)``; malformed rows skipped."""
    out: list[RawEvent] = []
    for row in rows:
        if row[7] and isinstance(row[6], str) and row[6].startswith("{"):
            out.append(tuple(row[:7]))
        else:
            _skip_malformed(row[0], row[2], row[6])
    return out


# The columns :func:`envelope_texts` maps: each event's envelope built by SQLite (NULL for a
# row whose data is not a JSON object, which the envelope expression cannot read), its
# data's length (for the page's byte bound) and its kind (for the log of a skipped row).
ENVELOPE_COLUMNS = (
    "seq, CASE WHEN json_valid(data) AND substr(data, 1, 1) = '{' "
    f"THEN {ENVELOPE_SQL} END, length(data), kind"
)


def envelope_texts(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str]]:
    """Rows of ``events_query(columns=ENVELOPE_COLUMNS)`` as (seq, envelope text);
    malformed rows skipped."""
    out: list[tuple[int, str]] = []
    for seq, text, size, kind in rows:
        if text is None:
            _log.error(
                "ledger event %s (%s) has malformed data (%s chars); skipped", seq, kind, size
            )
        else:
            out.append((seq, text))
    return out


def stored_events(rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
    """Rows of :func:`events_query` as StoredEvents. A row whose data is not a JSON object
    (a damaged file, a hand edit) is logged and skipped, so one bad row never makes a whole
    page unreadable."""
    out: list[StoredEvent] = []
    # tuple.__new__ skips the named tuple's Python-level __new__: half the cost per row.
    new = tuple.__new__
    for (seq, time, kind, owner_, session_id, tid, text), decoded in zip(
        rows, _decode_datas(rows), strict=True
    ):
        if decoded is _MALFORMED:
            _skip_malformed(seq, kind, text)
            continue
        out.append(new(StoredEvent, (seq, time, kind, owner_, session_id, tid, decoded)))
    return out


_MALFORMED: Any = object()
_log = logging.getLogger(__name__)


def _decode_datas(rows: Sequence[Sequence[Any]]) -> list[Any]:
    # One json.loads per page instead of one per row: the per-call overhead is most of the
    # cost of decoding small objects, and every stored data is a JSON object we wrote.
    # A row that is not (a damaged file, a hand edit) falls back to one row at a time.
    try:
        datas = _LOADS("[" + ",".join([row[6] for row in rows]) + "]")
        if len(datas) == len(rows) and all(isinstance(d, dict) for d in datas):
            return list(datas)
    except (ValueError, TypeError):
        pass
    out: list[Any] = []
    for row in rows:
        try:
            value = _LOADS(row[6])
        except (ValueError, TypeError):
            value = _MALFORMED
        out.append(value if isinstance(value, dict) else _MALFORMED)
    return out


def _skip_malformed(seq: int, kind: str, text: object) -> None:
    _log.error(
        "ledger event %s (%s) has malformed data (%s); skipped",
        seq,
        kind,
        f"{type(text).__name__} of {len(text) if isinstance(text, str | bytes) else '?'}",
    )


def snapshot_queries() -> dict[str, Query]:
    """Every projection row by table, in key order (to compare a rebuild with the live
    tables)."""
    columns = {
        "tasks": (TASK_COLUMNS, "task_id"),
        "submissions": (SUBMISSION_COLUMNS, "submission_id"),
        "sessions": (SESSION_COLUMNS, "session_id"),
        "cancels": (CANCEL_COLUMNS, "task_id"),
    }
    return {
        table: Query(f"SELECT {cols} FROM {table} ORDER BY {key}", [])  # noqa: S608
        for table, (cols, key) in columns.items()
    }
