-- Pre-aggregated period statistics (storage/hourly.py says what each metric counts):
-- counts by UTC hour, and the same counts summed by day, week and 4 weeks, so a period
-- of any length is read from a few dozen blocks instead of a scan of its history.
-- Each (metric, key) is named once in stats_keys; the counts refer to it by id, so a
-- read groups by two numbers, not by text.
CREATE TABLE stats_keys (
    id INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    key TEXT NOT NULL,
    UNIQUE (metric, key)
);

-- `hour` is the block's first hour in hours since 1970-01-01T00:00Z; `hours` its length
-- (1, 24, 168 or 672); `value` a histogram's bucket (the value to 2 significant digits,
-- printf('%.1e')), 0 for a plain count; `ok` the heals of `n` that succeeded.
CREATE TABLE stats_hourly (
    hours INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    value REAL NOT NULL,
    n INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    PRIMARY KEY (hours, hour, key_id, value)
) WITHOUT ROWID;

-- The backfill: what the writers would have counted, from the rows already stored,
-- by hour first. An hour is strftime('%s') of the time cut to its hour, over 3600:
-- exact, before 1970 too.
CREATE TEMP TABLE stats_backfill (hour, metric, key, value, n, ok);

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'state', state, 0.0, COUNT(*), 0
FROM incidents GROUP BY 1, 3;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'alert', alert_name, 0.0, COUNT(*), 0
FROM incidents GROUP BY 1, 3;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'resolve_s', '',
       CAST(printf('%.1e', max(0.0, (julianday(updated_at) - julianday(created_at)) * 86400.0))
            AS REAL),
       COUNT(*), 0
FROM incidents WHERE state = 'resolved' GROUP BY 1, 4;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(i.created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'approved', '', 0.0, COUNT(*), 0
FROM (SELECT DISTINCT incident_id FROM approvals WHERE decision = 'approve') AS a
JOIN incidents AS i ON i.id = a.incident_id
GROUP BY 1;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(i.created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'approved_resolved', '', 0.0, COUNT(*), 0
FROM (SELECT DISTINCT incident_id FROM approvals WHERE decision = 'approve') AS a
JOIN incidents AS i ON i.id = a.incident_id
WHERE i.state = 'resolved'
GROUP BY 1;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(i.created_at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'approve_s', '',
       CAST(printf('%.1e', max(0.0, (julianday(a.first) - julianday(i.created_at)) * 86400.0))
            AS REAL),
       COUNT(*), 0
FROM (SELECT incident_id, MIN(at) AS first FROM approvals WHERE decision = 'approve'
      GROUP BY incident_id) AS a
JOIN incidents AS i ON i.id = a.incident_id
GROUP BY 1, 4;

INSERT INTO stats_backfill
SELECT CAST(strftime('%s', substr(at, 1, 13) || ':00:00') AS INTEGER) / 3600,
       'heal', playbook_id, CAST(printf('%.1e', seconds) AS REAL), COUNT(*), SUM(success)
FROM outcomes WHERE heal = 1 GROUP BY 1, 3, 4;

INSERT INTO stats_keys (metric, key) SELECT DISTINCT metric, key FROM stats_backfill;

-- Every block length, each block aligned to its length (% floors here, before 1970 too).
INSERT INTO stats_hourly (hours, hour, key_id, value, n, ok)
SELECT s.hours, b.hour - ((b.hour % s.hours) + s.hours) % s.hours, k.id, b.value,
       SUM(b.n), SUM(b.ok)
FROM stats_backfill AS b
JOIN stats_keys AS k ON k.metric = b.metric AND k.key = b.key
JOIN (SELECT 1 AS hours UNION ALL SELECT 24 UNION ALL SELECT 168 UNION ALL SELECT 672) AS s
GROUP BY 1, 2, 3, 4;

DROP TABLE stats_backfill;
