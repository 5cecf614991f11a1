-- Outflow control from the console: admissions paused without suspending the license
-- (joins and applications go on, the admitted keep their time, nobody loses a place);
-- NULL while admitting, else since when (database ms). Resuming moves the admitter's
-- close on by the pause's length (`paused_ms`), so a pause delays and decides nothing.
ALTER TABLE licenses ADD COLUMN admissions_paused_at_ms BIGINT;
