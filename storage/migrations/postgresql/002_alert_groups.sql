-- Alert intake with dedupe: alerts of one group share one active incident.
-- `incidents.fingerprint` stays the incident key and now holds the group.
-- An incident counts its alerts and the members still firing, and knows when
-- its alerts were first and last seen; `incident_alerts` tracks each member
-- alert (by its own fingerprint) with its latest status.

ALTER TABLE incidents ADD COLUMN alert_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN firing_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN first_seen TEXT;
ALTER TABLE incidents ADD COLUMN last_seen TEXT;

-- Alerts gain their own identity, group, source times and link, and may have
-- no incident (a resolved alert while nothing of its group is active). The new
-- columns sit between `text` and `channel`, as in SQLite, so the table is
-- rebuilt as SQLite's is; rows written by 001 take their incident's
-- fingerprint as both fingerprint and group, which is what 001 computed them
-- from. The rebuilt table's constraints get the names PostgreSQL gives a table
-- created as `alerts`.
CREATE TABLE alerts_v2 (
    id BIGINT PRIMARY KEY,
    incident_id BIGINT REFERENCES incidents (id),
    source TEXT NOT NULL,
    source_key TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    text TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    link TEXT,
    fingerprint TEXT NOT NULL,
    group_key TEXT NOT NULL,
    channel TEXT,
    reporter TEXT,
    received_at TEXT NOT NULL,
    UNIQUE (source, source_key)
);

INSERT INTO alerts_v2 (id, incident_id, source, source_key, name, status, severity, labels,
    annotations, text, fingerprint, group_key, channel, reporter, received_at)
SELECT a.id, a.incident_id, a.source, a.source_key, a.name, a.status, a.severity, a.labels,
    a.annotations, a.text, COALESCE(i.fingerprint, ''), COALESCE(i.fingerprint, ''), a.channel,
    a.reporter, a.received_at
FROM alerts AS a
LEFT JOIN incidents AS i ON i.id = a.incident_id;

DROP TABLE alerts;

ALTER TABLE alerts_v2 RENAME TO alerts;
ALTER TABLE alerts RENAME CONSTRAINT alerts_v2_pkey TO alerts_pkey;
ALTER TABLE alerts RENAME CONSTRAINT alerts_v2_incident_id_fkey TO alerts_incident_id_fkey;
ALTER TABLE alerts RENAME CONSTRAINT alerts_v2_source_source_key_key
    TO alerts_source_source_key_key;

CREATE INDEX alerts_by_incident ON alerts (incident_id, id);

CREATE TABLE incident_alerts (
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);

-- 001 stored exactly one alert per incident, so each is its incident's only member.
INSERT INTO incident_alerts (incident_id, fingerprint, status, first_seen, last_seen, count)
SELECT incident_id, fingerprint, status, received_at, received_at, 1
FROM alerts
WHERE incident_id IS NOT NULL;

UPDATE incidents SET
    alert_count = (SELECT COUNT(*) FROM alerts AS a WHERE a.incident_id = incidents.id),
    firing_count = (
        SELECT COUNT(*) FROM incident_alerts AS m
        WHERE m.incident_id = incidents.id AND m.status = 'firing'
    ),
    first_seen = COALESCE(
        (SELECT MIN(a.received_at) FROM alerts AS a WHERE a.incident_id = incidents.id),
        created_at
    ),
    last_seen = COALESCE(
        (SELECT MAX(a.received_at) FROM alerts AS a WHERE a.incident_id = incidents.id),
        created_at
    );

-- 001 opened an incident per alert, so a database may hold several active
-- incidents of one group. The newest stays the group's active incident (it
-- is the one 001's active_incident returned); older ones keep their state,
-- cards and history but leave the group: their key becomes `<group>#<id>`.
UPDATE incidents SET fingerprint = fingerprint || '#' || id
WHERE state NOT IN ('auto_resolved', 'expired', 'rejected', 'resolved', 'rolled_back')
  AND id < (
    SELECT MAX(n.id) FROM incidents AS n
    WHERE n.fingerprint = incidents.fingerprint
      AND n.state NOT IN ('auto_resolved', 'expired', 'rejected', 'resolved', 'rolled_back')
  );

-- At most one active incident per group, guaranteed by the database; also how
-- intake finds that incident. The state list is the states that release their
-- group (storage.rows.RELEASING_STATES, from IncidentState.holds_group; a test
-- keeps them equal): changing it needs a migration that recreates this index.
CREATE UNIQUE INDEX incidents_active_group ON incidents (fingerprint)
WHERE state NOT IN ('auto_resolved', 'expired', 'rejected', 'resolved', 'rolled_back');
