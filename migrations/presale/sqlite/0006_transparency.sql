-- Randomness no single party controls, and a public transparency log per campaign.
--
-- Each party (the ministry, the manufacturer, optionally an observer) commits to a secret
-- at issuance (its SHA-256, published in the campaign's log) and reveals it only after
-- the list it orders is frozen; the seed is derived from every reveal and the frozen
-- list's Merkle root, so nobody knows it before the list is final and anybody can
-- recompute it after. No plaintext seed is stored before its reveal.
CREATE TABLE seed_parties (
    license_id      TEXT NOT NULL REFERENCES licenses (id),
    party           TEXT NOT NULL,
    commitment      TEXT NOT NULL,
    -- NULL until revealed, which is refused before the freeze.
    secret          TEXT,
    revealed_at_ms  BIGINT,
    PRIMARY KEY (license_id, party)
);

-- The frozen list (a queue's pre-opening arrivals at the opening, a lottery's entries at
-- the close): its size and Merkle root, then the seed once every party revealed.
CREATE TABLE campaign_seeds (
    license_id    TEXT PRIMARY KEY REFERENCES licenses (id),
    -- 'arrival' (a queue's pre-opening arrivals) or 'entry' (a lottery's entries).
    list          TEXT NOT NULL,
    list_size     BIGINT NOT NULL,
    list_root     TEXT NOT NULL,
    frozen_at_ms  BIGINT NOT NULL,
    seed          TEXT,
    seeded_at_ms  BIGINT
);

-- A lottery entry's public identity in the log: the per-campaign keyed hash of the
-- national ID (NULL for entries made before this migration).
ALTER TABLE lottery_entries ADD COLUMN holder TEXT;

-- The transparency log. Events are written to `log_pending` in the transaction of what
-- they record; the sequencer (any replica, one at a time per campaign under `log_state`'s
-- row lock) gives them consecutive indices, stores the tree's hashes (tlog stored-hash
-- layout) and signs a checkpoint. Records, hashes and checkpoints are insert-only.
CREATE TABLE log_state (
    license_id  TEXT PRIMARY KEY REFERENCES licenses (id),
    size        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE log_records (
    license_id  TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    body        TEXT NOT NULL,
    -- The holder a record is about (tickets, entries, applications), for receipts.
    ref         TEXT,
    PRIMARY KEY (license_id, idx)
);
CREATE INDEX log_records_ref ON log_records (license_id, ref);

CREATE TABLE log_hashes (
    license_id  TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (license_id, idx)
);

CREATE TABLE log_heads (
    license_id  TEXT NOT NULL,
    size        BIGINT NOT NULL,
    note        TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (license_id, size)
);

CREATE TABLE log_pending (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    license_id  TEXT NOT NULL,
    body        TEXT NOT NULL,
    ref         TEXT
);
CREATE INDEX log_pending_campaign ON log_pending (license_id, id);

CREATE TRIGGER log_records_no_update BEFORE UPDATE ON log_records
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_records_no_delete BEFORE DELETE ON log_records
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_hashes_no_update BEFORE UPDATE ON log_hashes
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_hashes_no_delete BEFORE DELETE ON log_hashes
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_heads_no_update BEFORE UPDATE ON log_heads
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_heads_no_delete BEFORE DELETE ON log_heads
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;

-- Licenses issued before this migration: their seed, generated at issuance, becomes one
-- party's revealed contribution (the verifier reports such a campaign as single-party).
INSERT INTO seed_parties (license_id, party, commitment, secret, revealed_at_ms)
    SELECT id, 'legacy', seed_commitment, seed, created_at * 1000 FROM licenses;
UPDATE licenses SET seed = '';
INSERT INTO log_state (license_id) SELECT id FROM licenses;
