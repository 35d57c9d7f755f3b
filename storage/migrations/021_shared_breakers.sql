-- Circuit breakers shared by every GRACE on this database (engine/resilience.py): one
-- row a circuit while its breaker is open, none once a trial call closed it. `retry_at`
-- is the wall-clock instant a trial call may be made; the replica that claims the trial
-- moves it on (compare-and-set), so the others keep refusing while the trial runs.
CREATE TABLE breakers (
    circuit TEXT PRIMARY KEY,
    opened_at TEXT NOT NULL,
    retry_at TEXT NOT NULL,
    cause TEXT NOT NULL
);
