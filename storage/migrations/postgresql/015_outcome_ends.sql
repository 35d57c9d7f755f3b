-- Ends where no heal ran to completion (rejected, expired, needs a human, interrupted)
-- get an outcome row too; `heal` says whether the row is a heal a playbook's record
-- counts (resolved, rolled back, safe hold).
ALTER TABLE outcomes ADD COLUMN heal BIGINT NOT NULL DEFAULT 1;
