-- The admission queue: a submission may also be 'queued' (Globus refused it for a limit; the
-- daemon sends it when capacity frees) or 'cancelled' (removed from the queue, never sent).
-- SQLite cannot change a CHECK constraint in place: the table is made again (without the
-- request column that 0004 dropped: the request lives in the submit_requested event); the
-- projection rebuild that follows every migration of a non-empty ledger fills it from the
-- events.
CREATE TABLE submissions_v5 (
    submission_id TEXT    PRIMARY KEY,
    owner         TEXT,
    session_id    TEXT,
    type          TEXT    NOT NULL,
    state         TEXT    NOT NULL
        CHECK (state IN ('pending', 'queued', 'submitted', 'failed', 'cancelled')),
    task_id       TEXT,
    code          TEXT,
    message       TEXT,
    request_time  REAL    NOT NULL,
    requested_seq INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL
);
INSERT INTO submissions_v5 (
    submission_id, owner, session_id, type, state, task_id, code, message,
    request_time, requested_seq, last_seq
)
SELECT submission_id, owner, session_id, type, state, task_id, code, message,
    request_time, requested_seq, last_seq
FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_v5 RENAME TO submissions;
CREATE INDEX submissions_open ON submissions (session_id, requested_seq)
    WHERE state IN ('pending', 'queued');
