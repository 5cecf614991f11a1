-- Insiders need a second person, and the audit log is evidence.
--
-- Staff accounts can be disabled, and every session of an account revoked at once (a
-- session carries the account's epoch at sign-in; bumping the epoch ends them all).
ALTER TABLE staff ADD COLUMN disabled_at BIGINT;
ALTER TABLE staff ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

-- Four-eyes: issuing, suspending, resuming a license and changing its admission rate are
-- proposals until a second issuer approves them. The approval carries out the action in
-- its own transaction, with the audit entries and the campaign's log records.
CREATE TABLE proposals (
    id           TEXT PRIMARY KEY,
    -- 'license.issue', 'license.suspend', 'license.resume' or 'license.rate'.
    action       TEXT NOT NULL,
    -- The license (empty for an issue: the license has no id until approved).
    subject      TEXT NOT NULL,
    -- JSON: the license's terms, or the new rate.
    payload      TEXT NOT NULL,
    proposed_by  TEXT NOT NULL REFERENCES staff (username),
    proposed_at  BIGINT NOT NULL,
    decided_by   TEXT REFERENCES staff (username),
    decided_at   BIGINT,
    -- NULL while pending; 'approved', 'rejected' or 'withdrawn'.
    outcome      TEXT,
    CHECK (decided_by IS NULL OR outcome = 'withdrawn' OR decided_by <> proposed_by)
);
CREATE INDEX proposals_pending ON proposals (proposed_at) WHERE outcome IS NULL;

-- The audit log becomes a hash chain: entry `seq` stores SHA-256 over its predecessor's
-- hash and its own fields, appended under the head row's lock in the transaction of the
-- action it records. Entries of a license are anchored in that campaign's public
-- transparency log, so rewriting the chain before an anchor is evident to anyone.
-- Entries from before this migration are outside the chain (seq NULL).
ALTER TABLE audit_log ADD COLUMN seq BIGINT UNIQUE;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- Row triggers do not see TRUNCATE; statement triggers do.
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER log_records_no_truncate BEFORE TRUNCATE ON log_records
    FOR EACH STATEMENT EXECUTE FUNCTION log_append_only();
CREATE TRIGGER log_hashes_no_truncate BEFORE TRUNCATE ON log_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION log_append_only();
CREATE TRIGGER log_heads_no_truncate BEFORE TRUNCATE ON log_heads
    FOR EACH STATEMENT EXECUTE FUNCTION log_append_only();

-- The head only moves forward.
CREATE FUNCTION audit_head_forward() RETURNS trigger AS $$
BEGIN
    IF NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'the audit chain only moves forward';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
CREATE TRIGGER audit_head_no_delete BEFORE DELETE OR TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
