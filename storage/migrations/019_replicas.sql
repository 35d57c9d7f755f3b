-- Several GRACEs (replicas) on one database. Each beats here every few seconds;
-- one whose last beat is older than the liveness TTL is dead, and the runs it
-- recorded as its own (incidents.run_by) are taken over: ended `interrupted`.
CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
-- Named leases: work any replica could do, done by one at a time (the scheduler's
-- ticks). Claimed and renewed by compare-and-set on holder and expires_at.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
-- The replica running an incident's plan, set by the move into approved, executing
-- or verifying; NULL on runs recorded before replicas.
ALTER TABLE incidents ADD COLUMN run_by TEXT;
