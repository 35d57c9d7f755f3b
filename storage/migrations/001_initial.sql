-- GRACE's first schema.
-- Times are ISO-8601 text in UTC with microseconds (so they sort as text);
-- JSON columns hold canonical JSON text; booleans are 0/1 integers.
-- Kept to SQL that PostgreSQL also accepts where that costs nothing.

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alert_name TEXT NOT NULL,
    channel TEXT,
    card_ts TEXT,
    diagnosis TEXT,
    plan TEXT,
    plan_hash TEXT,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);

CREATE INDEX incidents_by_state ON incidents (state, id);
CREATE INDEX incidents_by_fingerprint ON incidents (fingerprint, id);
CREATE INDEX incidents_by_card ON incidents (channel, card_ts);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    source TEXT NOT NULL,
    source_key TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    text TEXT NOT NULL,
    channel TEXT,
    reporter TEXT,
    received_at TEXT NOT NULL,
    UNIQUE (source, source_key)
);

CREATE INDEX alerts_by_incident ON alerts (incident_id, id);

CREATE TABLE approvals (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    user_id TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL,
    UNIQUE (incident_id, user_id)
);

-- Step results, in the order they ran.
CREATE TABLE actions (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    action TEXT NOT NULL,
    ok INTEGER NOT NULL,
    detail TEXT NOT NULL,
    seconds REAL NOT NULL,
    at TEXT NOT NULL
);

CREATE INDEX actions_by_incident ON actions (incident_id, id);

CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    target_executor TEXT NOT NULL,
    target_name TEXT NOT NULL,
    location TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    taken_at TEXT NOT NULL
);

CREATE INDEX snapshots_by_incident ON snapshots (incident_id, id);

CREATE TABLE verifications (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    checks TEXT NOT NULL,
    benchmarks TEXT NOT NULL,
    ok INTEGER NOT NULL,
    at TEXT NOT NULL
);

CREATE INDEX verifications_by_incident ON verifications (incident_id, id);

CREATE TABLE outcomes (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    playbook_id TEXT NOT NULL,
    success INTEGER NOT NULL,
    seconds REAL NOT NULL,
    final_state TEXT NOT NULL,
    at TEXT NOT NULL
);

CREATE INDEX outcomes_by_playbook ON outcomes (playbook_id, at, id);
CREATE INDEX outcomes_by_time ON outcomes (at);

-- Pre-aggregated, so Slack messages never scan outcomes for counts.
CREATE TABLE playbook_stats (
    playbook_id TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    successes INTEGER NOT NULL,
    total_seconds REAL NOT NULL,
    updated_at TEXT NOT NULL
);

-- Append-only and hash-chained: hash = sha256(prev_hash + canonical row).
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    incident_id INTEGER,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_log_by_incident ON audit_log (incident_id, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Delivery keys already handled (webhook retries, Slack retries, double clicks).
CREATE TABLE deliveries (
    delivery_key TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);

CREATE INDEX deliveries_by_time ON deliveries (received_at);
