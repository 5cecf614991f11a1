-- emta IdP: durable state. Timestamps are Unix seconds (BIGINT) so that the same queries
-- run on SQLite and PostgreSQL through sqlx's Any driver. Ephemeral state (logins, OTPs,
-- sessions, codes, access tokens, rate counters) is in Redis, not here.

-- Citizens verified against the civil registry. `id` is the OIDC `sub`: random and stable,
-- so that the national ID is released only to clients granted the `national_id` scope.
CREATE TABLE citizens (
    id             TEXT PRIMARY KEY,
    national_id    TEXT NOT NULL UNIQUE,
    mobile         TEXT NOT NULL,
    given_name     TEXT NOT NULL,
    family_name    TEXT NOT NULL,
    birth_jalali   TEXT NOT NULL,
    -- Last time both registries confirmed this person; drives the identity cache.
    verified_at    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Manufacturers as OIDC clients, with their e-namad-like trust record.
CREATE TABLE clients (
    id                        TEXT PRIMARY KEY,
    -- HMAC-SHA256 of the server-generated secret under the server pepper.
    secret_hash               TEXT NOT NULL,
    name                      TEXT NOT NULL,
    name_fa                   TEXT NOT NULL,
    stars                     BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    redirect_uris             TEXT NOT NULL,   -- JSON array, matched exactly
    post_logout_redirect_uris TEXT NOT NULL,   -- JSON array
    service_scopes            TEXT NOT NULL,   -- JSON array, for client_credentials
    id_token_alg              TEXT NOT NULL CHECK (id_token_alg IN ('ES256', 'RS256')),
    status                    TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    valid_until               BIGINT NOT NULL,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);

-- Remembered "grant single sign-on" decisions, per citizen, client and scopes.
CREATE TABLE consents (
    citizen_id  TEXT NOT NULL REFERENCES citizens (id),
    client_id   TEXT NOT NULL REFERENCES clients (id),
    scope       TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    PRIMARY KEY (citizen_id, client_id)
);

-- One grant per code exchange: the family of refresh tokens that descends from it.
-- Revoking the grant kills every token of the family (reuse detection, consent revoke).
CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    citizen_id  TEXT NOT NULL REFERENCES citizens (id),
    client_id   TEXT NOT NULL REFERENCES clients (id),
    scope       TEXT NOT NULL,
    sid         TEXT NOT NULL,
    auth_time   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX grants_by_citizen_client ON grants (citizen_id, client_id);

-- Refresh tokens, stored as SHA-256 of the token. `used_at` makes rotation single-use:
-- presenting a used token again is reuse, and revokes the grant.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    TEXT NOT NULL REFERENCES grants (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);

-- Recent sign-ins, shown on the citizen's account page.
CREATE TABLE sign_ins (
    id          BIGSERIAL PRIMARY KEY,
    citizen_id  TEXT NOT NULL REFERENCES citizens (id),
    client_id   TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX sign_ins_by_citizen ON sign_ins (citizen_id, at);

-- ID token signing keys. A key is published (in JWKS) from creation, signs from
-- `activate_at` until `retire_at`, and leaves JWKS at `expires_at`, after every token it
-- signed has expired.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL CHECK (alg IN ('ES256', 'RS256')),
    private_der  TEXT NOT NULL,   -- base64 of PKCS#8 (ES256) or PKCS#1 (RS256) DER
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activate_at  BIGINT NOT NULL,
    retire_at    BIGINT,
    expires_at   BIGINT
);

-- Operator actions on clients and keys; append-only.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    subject  TEXT NOT NULL,
    detail   TEXT NOT NULL
);
