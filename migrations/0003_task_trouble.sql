-- A task's trouble, as Globus reports it and as the poller derives it (filled from the
-- events by the rebuild that follows every migration of a ledger that has events).
ALTER TABLE tasks ADD COLUMN is_ok INTEGER;                        -- NULL once finished
ALTER TABLE tasks ADD COLUMN is_paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN faults INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN error TEXT;                           -- JSON: newest error event
ALTER TABLE tasks ADD COLUMN needs_attention TEXT;                 -- erroring/paused/...
ALTER TABLE tasks ADD COLUMN attention_since REAL;
ALTER TABLE tasks ADD COLUMN progress_time REAL NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN policy TEXT;                          -- JSON: TroublePolicy
ALTER TABLE tasks ADD COLUMN attention_message TEXT;
