-- Insiders need a second person, and the audit log is evidence. (See the PostgreSQL
-- migration of the same number for the design; SQLite has no roles and no TRUNCATE.)
ALTER TABLE staff ADD COLUMN disabled_at BIGINT;
ALTER TABLE staff ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

CREATE TABLE proposals (
    id           TEXT PRIMARY KEY,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    proposed_by  TEXT NOT NULL REFERENCES staff (username),
    proposed_at  BIGINT NOT NULL,
    decided_by   TEXT REFERENCES staff (username),
    decided_at   BIGINT,
    outcome      TEXT,
    CHECK (decided_by IS NULL OR outcome = 'withdrawn' OR decided_by <> proposed_by)
);
CREATE INDEX proposals_pending ON proposals (proposed_at) WHERE outcome IS NULL;

ALTER TABLE audit_log ADD COLUMN seq BIGINT;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

CREATE TRIGGER audit_head_forward BEFORE UPDATE ON audit_head
WHEN NEW.seq < OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'the audit chain only moves forward');
END;

CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
