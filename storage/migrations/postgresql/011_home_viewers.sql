-- App Home. One row a person who has opened GRACE's Home tab, so a change
-- republishes their Home and a restart still does: the App Home's channel
-- (the IM Slack names in app_home_opened; an answer to a click on the Home is
-- told there, on the Home itself), when they last opened it, and GRACE's last
-- answer to them there (shown until they open the Home again).
CREATE TABLE home_viewers (
    user_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    notice TEXT,
    notice_at TEXT
);

-- The Home's "this week" counts one week of rows through these, never the whole table.
CREATE INDEX incidents_by_created ON incidents (created_at);
CREATE INDEX audit_log_by_action ON audit_log (action, at);
