-- Promotions GRACE proposed (earned autonomy, engine/earned.py) and how an admin decided
-- them: the record each rests on, the channel it was asked in, who decided and when.
CREATE TABLE tier_proposals (
    id INTEGER PRIMARY KEY,
    playbook_id TEXT NOT NULL,
    from_tier INTEGER NOT NULL,
    to_tier INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    successes INTEGER NOT NULL,
    lower_bound REAL NOT NULL,
    median_seconds REAL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'accepted', 'dismissed')),
    proposed_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    decided_runs INTEGER
);

-- One open proposal a playbook: a burst of successes proposes once.
CREATE UNIQUE INDEX tier_proposals_open ON tier_proposals (playbook_id) WHERE state = 'open';
