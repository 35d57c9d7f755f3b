-- Slack deliveries GRACE must act on (an alert posted in a channel, a click, a
-- form, a command) are committed here before Slack's request is answered, and
-- handled after the answer. One that was not handled when GRACE died is
-- handled at its next start; a delivery Slack sends again finds its key here.
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    delivery_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at TEXT NOT NULL,
    handled_at TEXT
);

CREATE INDEX inbox_unhandled ON inbox (id) WHERE handled_at IS NULL;
