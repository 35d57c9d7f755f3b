-- Slack writes exactly once. A row is marked 'sending' (committed) before its
-- Slack call; one still 'sending' when GRACE meets it again (after a crash, a
-- timeout, a lost answer, a 5xx) may be in Slack already, and is looked up
-- there before it is posted again. Rows now queue in lanes: a channel's lane
-- for what everyone reads there, a person's own lane ('@' and their user id)
-- for the ephemeral answers only they see, so a burst of answers to clicks
-- never waits in, or holds up, an incident's story. SQLite cannot change a
-- CHECK constraint in place: the table is rebuilt with its rows and ids.

CREATE TABLE outbox_v10 (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    lane TEXT NOT NULL,
    kind TEXT NOT NULL,
    incident_id INTEGER REFERENCES incidents (id),
    user_id TEXT,
    payload TEXT NOT NULL,
    coalesce_key TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT,
    slack_ts TEXT
);

INSERT INTO outbox_v10 (
    id, channel, lane, kind, incident_id, user_id, payload, coalesce_key, state, attempts,
    not_before, created_at, sent_at, last_error, slack_ts
)
SELECT
    id, channel,
    CASE WHEN kind = 'ephemeral' THEN '@' || COALESCE(user_id, '') ELSE channel END,
    kind, incident_id, user_id, payload, coalesce_key, state, attempts,
    not_before, created_at, sent_at, last_error, slack_ts
FROM outbox;

DROP TABLE outbox;

ALTER TABLE outbox_v10 RENAME TO outbox;

-- Each lane's head (its lowest unsettled id) and the unsettled count, without
-- reading delivered rows, however many there are.
CREATE INDEX outbox_unsettled_by_lane ON outbox (lane, id)
WHERE state IN ('pending', 'sending');

-- Finding the pending row a new write coalesces into.
CREATE INDEX outbox_pending_by_key ON outbox (coalesce_key, id)
WHERE state = 'pending' AND coalesce_key IS NOT NULL;
