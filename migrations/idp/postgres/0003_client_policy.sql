-- What the ministry allows each manufacturer (issue 11):
-- * allowed_scopes: the claims-bearing scopes it may ask for; `national_id` only where
--   registered so. Clients registered before this migration keep every scope (they were
--   registered under that rule); new registrations get `openid profile phone` unless the
--   ministry adds more.
-- * subject_type / sector_identifier: `pairwise` gives each sector its own `sub` for a
--   citizen (OIDC Core §8.1); existing clients stay `public` so that their accounts keep
--   matching, new ones default to pairwise.
-- * backchannel_logout_uri: where logout tokens go (OIDC Back-Channel Logout 1.0).
-- * previous_secret_*: a rotated secret keeps working until `previous_secret_until`.
ALTER TABLE clients ADD COLUMN allowed_scopes TEXT NOT NULL
    DEFAULT '["openid","profile","phone","national_id"]';
ALTER TABLE clients ADD COLUMN subject_type TEXT NOT NULL DEFAULT 'public'
    CHECK (subject_type IN ('public', 'pairwise'));
ALTER TABLE clients ADD COLUMN sector_identifier TEXT;
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE clients ADD COLUMN previous_secret_until BIGINT;

-- Logout tokens still to be delivered: one row per (client, SSO session), written in the
-- transaction that revokes the session's grants (an outbox). The token is signed at each
-- attempt (its iat/exp stay fresh, its `sub` is the client's pairwise one); a row is
-- claimed by moving next_at forward, deleted on a 2xx answer, and abandoned after its
-- last attempt.
CREATE TABLE logout_deliveries (
    id          TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES clients (id),
    citizen_id  TEXT NOT NULL REFERENCES citizens (id),
    sid         TEXT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    next_at     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_at);
