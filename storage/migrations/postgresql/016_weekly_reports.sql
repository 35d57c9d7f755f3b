-- One row per report period, claimed before anything is posted: the claim and the
-- report's outbox rows commit together, so a period is posted once, across restarts.
CREATE TABLE weekly_reports (
    period_end TEXT PRIMARY KEY,
    period_start TEXT NOT NULL,
    channel TEXT NOT NULL,
    message_id BIGINT NOT NULL REFERENCES outbox (id),
    claimed_at TEXT NOT NULL
);
CREATE INDEX playbook_tiers_by_time ON playbook_tiers (changed_at);
