-- A person's `/grace clear` ends a safe-hold or interrupted incident as
-- `cleared`, which releases its alert group: the next alert of that group opens
-- a new incident that GRACE may heal. The index of migration 002 is recreated
-- with `cleared` among the releasing states (storage.rows.RELEASING_STATES; a
-- test keeps them equal).
DROP INDEX incidents_active_group;
CREATE UNIQUE INDEX incidents_active_group ON incidents (fingerprint)
WHERE state NOT IN ('auto_resolved', 'cleared', 'expired', 'rejected', 'resolved', 'rolled_back');
