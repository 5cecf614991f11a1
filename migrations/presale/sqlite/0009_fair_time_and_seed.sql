-- Suspensions give everyone their time back.
--
-- `suspended_at_ms` is when the current suspension began (NULL while active) and
-- `paused_ms` the time suspended so far: a resume adds the suspension's length to it, and
-- the admitter's close (`closes_at` plus `paused_ms`) moves by as much, so a suspension
-- near the close costs the people still waiting nothing. A suspend or resume that is not a
-- real change of status is refused, so a second suspension cannot stop the clock twice.
ALTER TABLE licenses ADD COLUMN suspended_at_ms BIGINT;
ALTER TABLE licenses ADD COLUMN paused_ms BIGINT NOT NULL DEFAULT 0;

-- A lottery's winners apply for `apply_window_secs` from the draw (not from the close:
-- the draw waits for every reveal), moved on by any suspension after it. NULL on draws
-- made before this migration: their window ran from the close.
ALTER TABLE lottery_draws ADD COLUMN apply_until_ms BIGINT;

-- A lottery's close is sticky: the draw's first attempt after the close sets this under
-- the license row's lock, and no entry is taken once it is set, whatever any clock says
-- afterwards (a database whose clock stepped back after a failover, say).
ALTER TABLE licenses ADD COLUMN frozen_at_ms BIGINT;

-- The seed's reveal window (seconds after the freeze) and its delay (sloth steps from the
-- reveals to the seed). NULL on campaigns issued before: their seed followed the last
-- reveal at once.
ALTER TABLE licenses ADD COLUMN seed_reveal_secs BIGINT;
ALTER TABLE licenses ADD COLUMN seed_iterations BIGINT;
