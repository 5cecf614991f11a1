-- Observers of seeds (issue 31): a court, a citizens' representative, registered by an
-- administrator with a public key of their own (Ed25519, in note format); they commit
-- and reveal with statements signed by that key. A registration is never edited or
-- removed, only disabled (a new key is a new name).
CREATE TABLE seed_observers (
    name          TEXT PRIMARY KEY,
    verifier_key  TEXT NOT NULL,
    added_by      TEXT NOT NULL,
    added_at      BIGINT NOT NULL,
    disabled_at   BIGINT
);
CREATE TRIGGER seed_observers_only_disabled BEFORE UPDATE ON seed_observers
WHEN NOT (OLD.disabled_at IS NULL AND NEW.disabled_at IS NOT NULL
          AND NEW.name = OLD.name AND NEW.verifier_key = OLD.verifier_key
          AND NEW.added_by = OLD.added_by AND NEW.added_at = OLD.added_at)
BEGIN
    SELECT RAISE(ABORT, 'an observer''s registration is only ever disabled');
END;
CREATE TRIGGER seed_observers_no_delete BEFORE DELETE ON seed_observers
BEGIN
    SELECT RAISE(ABORT, 'an observer''s registration is only ever disabled');
END;

-- An observer's commitment arrives with its signed statement, kept with it: SQLite cannot change a
-- CHECK, so the table is rebuilt (rows kept, triggers made again).
CREATE TABLE seed_commitments_new (
    id          TEXT PRIMARY KEY,
    license_no  TEXT NOT NULL,
    party       TEXT NOT NULL,
    commitment  TEXT NOT NULL,
    via         TEXT NOT NULL CHECK (via IN ('idp-client', 'console', 'observer-key')),
    made_by     TEXT NOT NULL,
    made_at     BIGINT NOT NULL,
    -- An observer's signed statement, checked again by every proposal that takes it.
    statement   TEXT,
    UNIQUE (license_no, party, made_by)
);
INSERT INTO seed_commitments_new (id, license_no, party, commitment, via, made_by, made_at)
    SELECT id, license_no, party, commitment, via, made_by, made_at FROM seed_commitments;
DROP TABLE seed_commitments;
ALTER TABLE seed_commitments_new RENAME TO seed_commitments;
CREATE TRIGGER seed_commitments_no_update BEFORE UPDATE ON seed_commitments
BEGIN
    SELECT RAISE(ABORT, 'seed commitments are append-only');
END;
CREATE TRIGGER seed_commitments_no_delete BEFORE DELETE ON seed_commitments
BEGIN
    SELECT RAISE(ABORT, 'seed commitments are append-only');
END;
