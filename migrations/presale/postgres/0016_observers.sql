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

CREATE FUNCTION seed_observers_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.disabled_at IS NULL AND NEW.disabled_at IS NOT NULL
       AND NEW.name = OLD.name AND NEW.verifier_key = OLD.verifier_key
       AND NEW.added_by = OLD.added_by AND NEW.added_at = OLD.added_at THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an observer''s registration is only ever disabled';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER seed_observers_guard BEFORE UPDATE OR DELETE ON seed_observers
    FOR EACH ROW EXECUTE FUNCTION seed_observers_guard();
CREATE TRIGGER seed_observers_no_truncate BEFORE TRUNCATE ON seed_observers
    FOR EACH STATEMENT EXECUTE FUNCTION seed_observers_guard();

-- An observer's commitment arrives with its signed statement, kept with it: a proposal
-- checks it again against the observer's key (a row written without one counts for
-- nothing).
ALTER TABLE seed_commitments ADD COLUMN statement TEXT;
ALTER TABLE seed_commitments DROP CONSTRAINT seed_commitments_via_check;
ALTER TABLE seed_commitments ADD CONSTRAINT seed_commitments_via_check
    CHECK (via IN ('idp-client', 'console', 'observer-key'));
