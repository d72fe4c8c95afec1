-- Every projection the daemon reads at run time is kept by the fold in the same transaction
-- as the events, so that no run-time path re-reads the history from seq 0. All three are
-- filled from the events by the rebuild that follows any migration of a non-empty ledger.

-- Commit time of the last event that recorded Globus's view of the task (its submit, a state
-- change, progress): where the poller's catch-up starts after a gap.
ALTER TABLE tasks ADD COLUMN observed_time REAL NOT NULL DEFAULT 0;

-- Sessions as their events left them; the daemon recreates the open ones at start-up.
CREATE TABLE sessions (
    session_id       TEXT    PRIMARY KEY,
    owner            TEXT,
    local_collection TEXT,
    auth             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    opened_seq       INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    policy           TEXT                   -- JSON: its TroublePolicy, or NULL
);
CREATE INDEX sessions_open ON sessions (session_id) WHERE state = 'open';

-- The last cancel of each task; 'pending' from cancel_requested until its cancel_result, so
-- that a cancel interrupted by a crash or a Globus fault is sent again.
CREATE TABLE cancels (
    task_id       TEXT    PRIMARY KEY,
    owner         TEXT,
    session_id    TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'answered')),
    code          TEXT,
    requested_seq INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL
);
CREATE INDEX cancels_pending ON cancels (session_id, requested_seq) WHERE state = 'pending';
