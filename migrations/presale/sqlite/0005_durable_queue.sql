-- The fair queue's durable record. Redis no longer holds the queue: a join is answered
-- only after the transaction that numbers it commits (joins are committed in batches,
-- group commit), so a ticket once answered survives the loss of any process or store, and
-- a number is never issued twice (the UNIQUE key fences it, not a clock). Every time is
-- the database's clock (milliseconds).

-- One row per queue campaign: its counters, locked by every join batch and admitter tick,
-- so they happen one at a time per campaign across replicas.
CREATE TABLE queue_campaigns (
    license_id   TEXT PRIMARY KEY REFERENCES licenses (id),
    opens_at_ms  BIGINT NOT NULL,
    -- Pre-opening arrivals so far, and arrivals since the opening.
    early        BIGINT NOT NULL DEFAULT 0,
    late         BIGINT NOT NULL DEFAULT 0,
    -- 1 once anything happened at or after the opening on the database's clock; from
    -- then on no join is early, even if a failover moves that clock backwards.
    opened       BIGINT NOT NULL DEFAULT 0,
    -- Tickets 1..serving have been admitted.
    serving      BIGINT NOT NULL DEFAULT 0,
    -- The queue's clock: the admitter's last tick (0 before the first). It stops while
    -- the license is suspended or nothing can tick (the database was unreachable), and
    -- admission deadlines are extended by the time it stood still.
    clock_ms     BIGINT NOT NULL DEFAULT 0,
    -- Admissions owed but not yet made, in thousandths.
    carry_milli  BIGINT NOT NULL DEFAULT 0
);

-- Every ticket issued: a per-campaign keyed hash of the national ID (no IDs in the
-- queue) and its number: -arrival for a pre-opening arrival (its ticket is drawn at the
-- opening), the ticket itself after.
CREATE TABLE queue_tickets (
    license_id    TEXT NOT NULL REFERENCES licenses (id),
    holder        TEXT NOT NULL,
    number        BIGINT NOT NULL,
    joined_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (license_id, holder),
    UNIQUE (license_id, number)
);

-- Every admission: the ticket, until when it may apply (on the queue's clock), and
-- whether it is used (applied or refused for good).
CREATE TABLE queue_admissions (
    license_id    TEXT NOT NULL REFERENCES licenses (id),
    ticket        BIGINT NOT NULL,
    admitted_at_ms BIGINT NOT NULL,
    deadline_ms   BIGINT NOT NULL,
    released      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (license_id, ticket)
);
CREATE INDEX queue_admissions_live ON queue_admissions (license_id, released, deadline_ms);

INSERT INTO queue_campaigns (license_id, opens_at_ms)
    SELECT id, opens_at * 1000 FROM licenses WHERE selection = 'queue';
