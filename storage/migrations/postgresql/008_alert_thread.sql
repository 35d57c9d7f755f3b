-- A person's own words are answered in the thread of their message: the alert
-- keeps that message's ts, and the incident's card and story go under it.
ALTER TABLE alerts ADD COLUMN thread_ts TEXT;
