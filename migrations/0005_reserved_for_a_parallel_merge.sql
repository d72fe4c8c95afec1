-- Placeholder: version 5 belongs to a branch merged in parallel (its own 0005_*.sql).
-- Migration numbers have no gaps, so this keeps 0007_retention.sql loadable on its own;
-- delete this file when that branch's 0005 is merged in (a duplicate version fails at load).
SELECT 1;
