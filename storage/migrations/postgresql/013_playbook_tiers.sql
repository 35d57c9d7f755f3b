-- A playbook's tier as changed from its catalog tier (earned autonomy): kept across restarts.
CREATE TABLE playbook_tiers (
    playbook_id TEXT PRIMARY KEY,
    tier BIGINT NOT NULL,
    base_tier BIGINT NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
