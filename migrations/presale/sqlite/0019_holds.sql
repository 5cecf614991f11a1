-- Registration as real rounds ran it (issue 30), part two: the down payment's hold at a
-- participating bank, and the lottery's reserves.
--
-- One hold per person per license. It starts pending (a mandate asked of a bank), is
-- held once the bank confirms it server-to-server, and is settled exactly once: captured
-- for an accepted applicant or released for everyone else, under one idempotency key
-- that every retry of that call carries (kept for good, so well past the banks' 24 hours).
CREATE TABLE holds (
    id             TEXT PRIMARY KEY,
    license_id     TEXT NOT NULL REFERENCES licenses (id),
    national_id    TEXT NOT NULL,
    citizen_sub    TEXT NOT NULL,
    holder         TEXT NOT NULL,
    bank           TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    title          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                       ('pending', 'held', 'capturing', 'releasing', 'captured', 'released')),
    token          TEXT,
    state_hash     TEXT,
    created_at_ms  BIGINT NOT NULL,
    verified_at_ms BIGINT,
    settle_key     TEXT UNIQUE,
    settle_at_ms   BIGINT,
    settled_at_ms  BIGINT,
    -- A settlement's calls that failed, and when the next may be made (backing off).
    attempts       BIGINT NOT NULL DEFAULT 0,
    next_try_at_ms BIGINT NOT NULL DEFAULT 0,
    UNIQUE (license_id, national_id)
);
CREATE UNIQUE INDEX holds_token ON holds (bank, token);
CREATE INDEX holds_state ON holds (license_id, state);
CREATE INDEX holds_person ON holds (national_id);

CREATE TRIGGER holds_start_pending BEFORE INSERT ON holds
WHEN NEW.state <> 'pending' OR NEW.settle_key IS NOT NULL OR NEW.verified_at_ms IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a hold starts pending');
END;
CREATE TRIGGER holds_forward BEFORE UPDATE ON holds
WHEN NEW.id <> OLD.id OR NEW.license_id <> OLD.license_id OR NEW.national_id <> OLD.national_id
  OR NEW.citizen_sub <> OLD.citizen_sub OR NEW.holder <> OLD.holder OR NEW.amount <> OLD.amount
  OR NEW.title <> OLD.title OR NEW.created_at_ms <> OLD.created_at_ms
  OR (OLD.state <> 'pending' AND (NEW.bank <> OLD.bank OR NEW.token IS NOT OLD.token
                                  OR NEW.verified_at_ms IS NOT OLD.verified_at_ms))
  OR (OLD.settle_key IS NOT NULL AND (NEW.settle_key IS NOT OLD.settle_key
                                      OR NEW.settle_at_ms IS NOT OLD.settle_at_ms))
  OR NOT (NEW.state = OLD.state
          OR (OLD.state = 'pending' AND NEW.state = 'held')
          OR (OLD.state = 'held' AND NEW.state IN ('capturing', 'releasing'))
          OR (OLD.state = 'capturing' AND NEW.state = 'captured')
          OR (OLD.state = 'releasing' AND NEW.state = 'released'))
  OR (NEW.state IN ('capturing', 'releasing', 'captured', 'released') AND NEW.settle_key IS NULL)
  OR (OLD.settle_key IS NULL AND NEW.settle_key IS NOT NULL
      AND NOT (OLD.state = 'held' AND NEW.state IN ('capturing', 'releasing')
               AND NEW.settle_key = (CASE NEW.state WHEN 'capturing' THEN 'capture:'
                                     ELSE 'release:' END) || NEW.id))
BEGIN
    SELECT RAISE(ABORT, 'a hold moves only forward, and is settled once');
END;
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds
BEGIN
    SELECT RAISE(ABORT, 'a hold is never removed');
END;

-- A lottery place whose time to apply ran out, and the reserves offered a place in
-- their order, one for each lapse; each with its record in the public log.
CREATE TABLE lottery_lapses (
    license_id TEXT NOT NULL REFERENCES licenses (id),
    rank       BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (license_id, rank)
);
CREATE TABLE lottery_promotions (
    license_id TEXT NOT NULL REFERENCES licenses (id),
    rank       BIGINT NOT NULL,
    until_ms   BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (license_id, rank)
);
