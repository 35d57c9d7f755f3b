-- GRACE-wide switches, one row each (today: the kill switch, name 'pause').
-- Kept in the database so a restart never silently lifts a pause.
CREATE TABLE controls (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL
);
