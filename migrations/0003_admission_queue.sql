-- The admission queue: a submission may also be 'queued' (Globus refused it for a limit; the
-- daemon sends it when capacity frees) or 'cancelled' (removed from the queue, never sent).
-- SQLite cannot change a CHECK constraint in place: the table is made again; the projection
-- rebuild that follows every migration of a non-empty ledger fills it from the events.
CREATE TABLE submissions_v3 (
    submission_id TEXT    PRIMARY KEY,
    owner         TEXT,
    session_id    TEXT,
    type          TEXT    NOT NULL,
    request       TEXT    NOT NULL,         -- JSON of the typed request
    state         TEXT    NOT NULL
        CHECK (state IN ('pending', 'queued', 'submitted', 'failed', 'cancelled')),
    task_id       TEXT,
    code          TEXT,
    message       TEXT,
    request_time  REAL    NOT NULL,
    requested_seq INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL
);
INSERT INTO submissions_v3 SELECT * FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_v3 RENAME TO submissions;
CREATE INDEX submissions_open ON submissions (session_id, requested_seq)
    WHERE state IN ('pending', 'queued');
