-- Storms people can read. A lane (a channel) no longer sends strictly in id
-- order: it sends the most urgent of its streams' heads. A stream keeps its
-- own order: an incident's card and then its thread, in the order they were
-- told; the card's updates; a rollup's writes; each person's answers. The
-- priority puts cards that need someone, rollups and notices first, then
-- other cards, then thread chatter, most severe first within each.
ALTER TABLE outbox ADD COLUMN stream TEXT NOT NULL DEFAULT '';

ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 10;

-- Rows queued before this migration keep the order they were queued in.
UPDATE outbox SET stream = lane WHERE state IN ('pending', 'sending');

CREATE INDEX outbox_unsettled_by_stream ON outbox (stream, id)
WHERE state IN ('pending', 'sending');

-- When cards would wait too long behind a channel's queued writes, the
-- incidents of that channel are shown as lines of one message, updated in place.
CREATE TABLE rollups (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    ts TEXT,
    opened_at TEXT NOT NULL,
    last_added_at TEXT NOT NULL
);

CREATE INDEX rollups_by_channel ON rollups (channel, id);

-- The rollup an incident is shown in, instead of (or before) a card of its own.
ALTER TABLE incidents ADD COLUMN rollup_id INTEGER REFERENCES rollups (id);

CREATE INDEX incidents_by_rollup ON incidents (rollup_id, id) WHERE rollup_id IS NOT NULL;

-- Whether an incident's card was ever queued: asked on every word GRACE says
-- about an incident shown in a rollup, so it must not read the whole outbox.
CREATE INDEX outbox_cards ON outbox (incident_id) WHERE kind = 'post_card';
