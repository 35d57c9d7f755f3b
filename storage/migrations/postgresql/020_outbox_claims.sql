-- The outbox shared by replicas. A worker claims the heads it sends, in one
-- write with the lanes' tokens: the row turns 'sending' and carries who claimed
-- it and until when, so another replica's worker skips it while the claim
-- holds. A claim that ran out (its sender died, or hangs) is claimable again,
-- and the row, 'sending', is looked up in Slack before it is posted again.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;

ALTER TABLE outbox ADD COLUMN claimed_until TEXT;

-- How far the lane's pace (outbox_lanes.tat) ran ahead of the clock, in seconds,
-- when the row took its token. When its claimer reports, the lane is made no
-- freer than it was then: Slack counted the write when it arrived, somewhere
-- in between, so the shared pace never runs ahead of Slack's.
ALTER TABLE outbox ADD COLUMN lane_lead_s DOUBLE PRECISION;

-- Each lane's pace, shared by every replica (GCRA): `tat` is the theoretical
-- arrival time of the lane's next write, in seconds since the epoch; a write
-- may go when tat - burst window <= now, and going moves tat on by 1/rate.
-- `held_until` (ISO text): Slack answered 429, nothing goes before it.
CREATE TABLE outbox_lanes (
    lane TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL,
    held_until TEXT
);
