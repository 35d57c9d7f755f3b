-- Pending approvals expire and are reminded once: both times live with the
-- incident, so a restart neither forgets a deadline nor repeats a reminder.
ALTER TABLE incidents ADD COLUMN approval_deadline TEXT;
ALTER TABLE incidents ADD COLUMN remind_at TEXT;
ALTER TABLE incidents ADD COLUMN reminded_at TEXT;
CREATE INDEX incidents_deadlines ON incidents (state, approval_deadline);
