-- Lotteries: entries during the registration window, a draw after it closes.

-- Entries so far; gives each entry its public number in registration order.
ALTER TABLE licenses ADD COLUMN entries BIGINT NOT NULL DEFAULT 0;

-- One entry per national ID per license (the key). `entry_no` is what the published list
-- shows (with a masked national ID), and what the draw ranks.
CREATE TABLE lottery_entries (
    license_id   TEXT NOT NULL REFERENCES licenses (id),
    entry_no     BIGINT NOT NULL,
    national_id  TEXT NOT NULL,
    citizen_sub  TEXT NOT NULL,
    entered_at   BIGINT NOT NULL,
    PRIMARY KEY (license_id, national_id),
    UNIQUE (license_id, entry_no)
);

-- The draw, once per license (the key stops a second replica drawing again), with the
-- revealed seed, and every entry's rank: ranks 1..units win, the rest wait in order.
CREATE TABLE lottery_draws (
    license_id  TEXT PRIMARY KEY REFERENCES licenses (id),
    seed        TEXT NOT NULL,
    drawn_at    BIGINT NOT NULL
);

CREATE TABLE lottery_ranks (
    license_id  TEXT NOT NULL REFERENCES licenses (id),
    entry_no    BIGINT NOT NULL,
    rank        BIGINT NOT NULL,
    PRIMARY KEY (license_id, entry_no)
);
