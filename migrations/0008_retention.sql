-- How far retention has pruned: every event a prune deleted had a seq <= pruned_through, so a
-- client whose cursor is below it may have missed events (of finished tasks) and resyncs from
-- the task rows. One row at most.
CREATE TABLE retention (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL,
    pruned_at      REAL    NOT NULL
);
