-- What a snapshot remembers beyond its file (a previous log level, a previous
-- desired capacity), and the targets GRACE must not touch until a person
-- clears them: a failed rollback or a crash mid-run left them in an unknown state.
ALTER TABLE snapshots ADD COLUMN state TEXT NOT NULL DEFAULT '{}';

CREATE TABLE target_holds (
    id INTEGER PRIMARY KEY,
    target_executor TEXT NOT NULL,
    target_name TEXT NOT NULL,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    reason TEXT NOT NULL,
    held_at TEXT NOT NULL,
    cleared_by TEXT,
    cleared_at TEXT
);

CREATE INDEX target_holds_active ON target_holds (target_executor, target_name)
    WHERE cleared_at IS NULL;
