-- History queries answered from indexes, so that their cost follows the page asked for, not
-- the length of the history. The daemon always filters by owner (the token's), so owner
-- comes first. Commit times never go backwards as seqs grow (the writer stamps each commit
-- with max(now, the newest time in the file)), so a time range is read as a seq range.

-- tasks: by label (exact, or a glob's literal prefix) and by status, newest first; the
-- poller's open tasks of one session; the first task at or after a time.
CREATE INDEX tasks_by_owner_label ON tasks (owner, label, created_seq);
CREATE INDEX tasks_by_owner_status ON tasks (owner, status, created_seq);
CREATE INDEX tasks_by_session_status ON tasks (session_id, status, created_seq);
CREATE INDEX tasks_by_request_time ON tasks (request_time, created_seq);

-- events: the first event at or after a time; the data fields the history route filters on
-- (the same expressions as the queries', which is how SQLite matches them to the index).
CREATE INDEX events_by_time ON events (time, seq);
CREATE INDEX events_by_owner_status ON events (owner, json_extract(data, '$.status'), seq);
CREATE INDEX events_by_owner_label ON events (owner, json_extract(data, '$.label'), seq);
