-- A manufacturer's representative (see the PostgreSQL migration of the same number).
-- SQLite cannot change a CHECK constraint, so the table is rebuilt as in 0010, and with it
-- the proposals that refer to it (child first: no foreign key is ever left pointing at a
-- dropped table).
CREATE TABLE staff_copy AS SELECT * FROM staff;
CREATE TABLE proposals_copy AS SELECT * FROM proposals;
DROP TABLE proposals;
DROP TABLE staff;

CREATE TABLE staff (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT NOT NULL,
    last_totp_step  BIGINT NOT NULL DEFAULT 0,
    role            TEXT NOT NULL
        CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative')),
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT,
    session_epoch   BIGINT NOT NULL DEFAULT 0,
    manufacturer    TEXT,
    CHECK ((role = 'representative') = (manufacturer IS NOT NULL))
);
INSERT INTO staff (username, password_hash, totp_secret, last_totp_step, role,
                   created_at, disabled_at, session_epoch)
    SELECT username, password_hash, totp_secret, last_totp_step, role,
           created_at, disabled_at, session_epoch
    FROM staff_copy;

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
INSERT INTO proposals (id, action, subject, payload, proposed_by, proposed_at, decided_by,
                       decided_at, outcome)
    SELECT id, action, subject, payload, proposed_by, proposed_at, decided_by,
           decided_at, outcome
    FROM proposals_copy;

DROP TABLE proposals_copy;
DROP TABLE staff_copy;
