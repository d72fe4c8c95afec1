"""Connections and schema migrations (synchronous; run in the writer's thread at open).

The schema version is SQLite's ``PRAGMA user_version``: it lives in the database header and
changes inside the transaction, so it rolls back with a failed migration. All missing
migrations run in one ``BEGIN IMMEDIATE`` transaction, statement by statement (never
``executescript``, which would commit on its own), followed by a rebuild of the projections
when the database already held events. Either the whole upgrade commits or none of it does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..migrations import Migration
from .errors import MigrationFailed, SchemaTooNew

__all__ = ["CONNECT_OPTIONS", "READER_PRAGMAS", "connect", "migrate", "split_statements"]

# How long a connection waits for another process's lock before failing (ms). Our own readers
# never lock in WAL mode; this only matters when two processes open the same file.
BUSY_TIMEOUT_MS = 10_000
# Largest part of the file each reader connection maps into memory (virtual address space).
# The pages read through the map count in the daemon's RSS (RssFile): with 256 MiB, a
# replay of a large ledger grew RSS by the ledger's size. Events are appended, so recent
# ones (what clients replay) lie past a small window anyway.
READER_MMAP_BYTES = 32 * 2**20
# sqlite3.connect options of every connection: autocommit mode (transactions are explicit).
CONNECT_OPTIONS: dict[str, Any] = {
    "isolation_level": None,
    "check_same_thread": False,
    "cached_statements": 64,
}
READER_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA query_only = ON",
    # Readers map the database file instead of copying each page with a read() call: about
    # 10% less CPU per replayed event. Pages still in the WAL are read as before; the
    # mapped pages read count in RSS (see READER_MMAP_BYTES).
    f"PRAGMA mmap_size = {READER_MMAP_BYTES}",
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are always explicit."""
    conn: sqlite3.Connection = sqlite3.connect(path, **CONNECT_OPTIONS)
    if readonly:
        for pragma in READER_PRAGMAS:
            conn.execute(pragma)
    else:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers see the last commit and never block the writer, nor it them.
        # synchronous=FULL: in WAL mode the log is fsynced at every COMMIT, so a commit that
        # returned survives a power loss, not only a process crash (NORMAL would not).
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def split_statements(sql: str) -> list[str]:
    """The SQL statements of a script, trigger bodies kept whole."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    rest = "\n".join(
        line for line in buffer.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if rest:
        statements.append(buffer.strip())
    return statements


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    *,
    path: Path,
    migrations: Sequence[Migration],
    rebuild: Callable[[sqlite3.Connection], None],
) -> int:
    """Bring the database to the newest version; returns the version found before."""
    latest = len(migrations)
    found = schema_version(conn)
    if found > latest:
        raise SchemaTooNew(path=str(path), found=found, supported=latest)
    if found == latest:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our first look and taking the lock.
        found = schema_version(conn)
        if found > latest:
            raise SchemaTooNew(path=str(path), found=found, supported=latest)
        for migration in migrations[found:]:
            try:
                for statement in split_statements(migration.sql):
                    conn.execute(statement)
            except sqlite3.Error as exc:
                raise MigrationFailed(
                    path=str(path), version=migration.version, name=migration.name, reason=str(exc)
                ) from exc
            # PRAGMA cannot take parameters; the version is our own int.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        if found > 0:
            # Projections are derived data: a schema change to them is filled from the events.
            rebuild(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
