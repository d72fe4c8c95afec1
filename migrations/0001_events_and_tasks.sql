-- The append-only event log and the tasks projection.
-- seq is AUTOINCREMENT so that a seq is never handed out twice, even after the newest events
-- are deleted: SQLite keeps the high-water mark in sqlite_sequence.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time       REAL    NOT NULL,            -- Unix seconds of the commit
    kind       TEXT    NOT NULL,
    owner      TEXT,
    session_id TEXT,
    task_id    TEXT,
    data       TEXT    NOT NULL             -- JSON object: the event's typed fields
);
CREATE INDEX events_by_session ON events (session_id, seq);
CREATE INDEX events_by_task ON events (task_id, seq);
CREATE INDEX events_by_owner ON events (owner, seq);

-- Events are facts: they may be pruned (DELETE) but never rewritten.
CREATE TRIGGER events_append_only BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'ledger events are append-only');
END;

CREATE TABLE tasks (
    task_id           TEXT    PRIMARY KEY,
    submission_id     TEXT    NOT NULL,
    owner             TEXT,
    session_id        TEXT,
    type              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    nice_status       TEXT,
    label             TEXT,
    source            TEXT,
    destination       TEXT,
    bytes_transferred INTEGER NOT NULL,
    files_transferred INTEGER NOT NULL,
    fatal_error       TEXT,                 -- JSON {"code","description"} or NULL
    request_time      REAL    NOT NULL,
    completion_time   REAL,
    created_seq       INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL
);
CREATE INDEX tasks_by_owner ON tasks (owner, created_seq);
CREATE INDEX tasks_by_session ON tasks (session_id, created_seq);
CREATE INDEX tasks_by_status ON tasks (status, created_seq);
CREATE INDEX tasks_by_created ON tasks (created_seq);
