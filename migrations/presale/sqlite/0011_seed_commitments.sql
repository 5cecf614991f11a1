-- Seed commitments as they arrive, before a license names them: a manufacturer's through
-- its own credentials at the IdP (a client_credentials token the IdP vouches for), the
-- ministry's from a member of staff in the console. A license proposal takes its parties
-- from here and not from what the proposer types: the proposer can be no party, and the
-- manufacturer's share is the manufacturer's.
CREATE TABLE seed_commitments (
    id          TEXT PRIMARY KEY,
    license_no  TEXT NOT NULL,
    party       TEXT NOT NULL,
    commitment  TEXT NOT NULL,
    -- 'idp-client': the manufacturer's client_credentials token; 'console': a staff member.
    via         TEXT NOT NULL CHECK (via IN ('idp-client', 'console')),
    -- The client id, or the staff member's username.
    made_by     TEXT NOT NULL,
    made_at     BIGINT NOT NULL,
    -- One commitment per party and author for a license number, never replaced (the
    -- ministry's may come from several issuers: a proposal names one of them).
    UNIQUE (license_no, party, made_by)
);

-- A commitment, once recorded, is evidence: never changed, never removed.
CREATE TRIGGER seed_commitments_no_update BEFORE UPDATE ON seed_commitments
BEGIN
    SELECT RAISE(ABORT, 'seed commitments are append-only');
END;
CREATE TRIGGER seed_commitments_no_delete BEFORE DELETE ON seed_commitments
BEGIN
    SELECT RAISE(ABORT, 'seed commitments are append-only');
END;
