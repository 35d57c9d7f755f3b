-- The durable Slack outbox: every write to Slack is stored here first and
-- delivered by the bot's worker, each channel's rows in id order. Rows are
-- kept after delivery (sent) or refusal (dropped), for the record.

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    incident_id INTEGER REFERENCES incidents (id),
    user_id TEXT,
    payload TEXT NOT NULL,
    coalesce_key TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT,
    slack_ts TEXT
);

-- Each channel's head (its lowest pending id) and the pending count, without
-- reading delivered rows, however many there are.
CREATE INDEX outbox_pending_by_channel ON outbox (channel, id) WHERE state = 'pending';

-- Finding the pending row a new write coalesces into.
CREATE INDEX outbox_pending_by_key ON outbox (coalesce_key, id)
WHERE state = 'pending' AND coalesce_key IS NOT NULL;
