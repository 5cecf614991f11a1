-- Ministry staff: password (argon2id) and a TOTP second factor; roles issuer and auditor.
CREATE TABLE staff (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    -- Base32 TOTP secret. Needed in clear to verify codes; protect the database like a key.
    totp_secret     TEXT NOT NULL,
    -- The last TOTP time step accepted, so a code cannot be replayed within its window.
    last_totp_step  BIGINT NOT NULL DEFAULT 0,
    role            TEXT NOT NULL CHECK (role IN ('issuer', 'auditor')),
    created_at      BIGINT NOT NULL
);

-- Every staff action. Append-only: the triggers refuse UPDATE and DELETE.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
