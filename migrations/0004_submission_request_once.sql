-- A submission's request is stored once, in its submit_requested event (the row's
-- requested_seq), not copied into the submissions row as well: a 4 MB request cost 8 MB.
-- Readers that need the request (pending submissions, sent again after a restart) join
-- the event.
ALTER TABLE submissions DROP COLUMN request;
