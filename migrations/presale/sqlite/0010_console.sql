-- The console's roles: an administrator manages staff accounts and approves nothing (see
-- the PostgreSQL migration of the same number). SQLite cannot change a CHECK constraint,
-- so the table is rebuilt; the proposals' references to it are checked at commit.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE staff_new (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT NOT NULL,
    last_totp_step  BIGINT NOT NULL DEFAULT 0,
    role            TEXT NOT NULL CHECK (role IN ('administrator', 'issuer', 'auditor')),
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT,
    session_epoch   BIGINT NOT NULL DEFAULT 0
);
INSERT INTO staff_new (username, password_hash, totp_secret, last_totp_step, role,
                       created_at, disabled_at, session_epoch)
    SELECT username, password_hash, totp_secret, last_totp_step, role,
           created_at, disabled_at, session_epoch
    FROM staff;
DROP TABLE staff;
ALTER TABLE staff_new RENAME TO staff;
