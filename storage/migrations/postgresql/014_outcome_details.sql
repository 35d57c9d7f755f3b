-- One outcome row tells the whole heal: what recognised it, what it acted on,
-- how long each stage took, who approved and how long that took.
ALTER TABLE outcomes ADD COLUMN pattern_id TEXT;
ALTER TABLE outcomes ADD COLUMN target_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE outcomes ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE outcomes ADD COLUMN stages TEXT NOT NULL DEFAULT '{}';
ALTER TABLE outcomes ADD COLUMN approvers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outcomes ADD COLUMN approval_wait_s DOUBLE PRECISION;
