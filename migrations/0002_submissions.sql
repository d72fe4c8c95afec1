-- Submissions, keyed by submission_id, so that a submit recorded before a crash and never
-- answered (state 'pending') is found again at start-up. Filled from the events by the
-- projection rebuild that runs after any migration of a non-empty ledger.
CREATE TABLE submissions (
    submission_id TEXT    PRIMARY KEY,
    owner         TEXT,
    session_id    TEXT,
    type          TEXT    NOT NULL,
    request       TEXT    NOT NULL,         -- JSON of the typed request
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'submitted', 'failed')),
    task_id       TEXT,
    code          TEXT,
    message       TEXT,
    request_time  REAL    NOT NULL,
    requested_seq INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL
);
CREATE INDEX submissions_pending ON submissions (session_id, requested_seq)
    WHERE state = 'pending';
