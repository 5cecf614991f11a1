-- emta presale: durable state. Timestamps are Unix seconds (BIGINT), money is whole rials
-- (BIGINT), so the same queries run on SQLite and PostgreSQL through sqlx's Any driver.

-- Presale licenses issued by the ministry. `accepted` counts accepted applications and
-- can never pass `units`: every acceptance is a conditional UPDATE in the same
-- transaction as the application's INSERT.
CREATE TABLE licenses (
    id                 TEXT PRIMARY KEY,
    license_no         TEXT NOT NULL UNIQUE,
    manufacturer       TEXT NOT NULL,
    model              TEXT NOT NULL,
    units              BIGINT NOT NULL CHECK (units > 0),
    accepted           BIGINT NOT NULL DEFAULT 0,
    unit_price         BIGINT NOT NULL CHECK (unit_price > 0),
    down_payment       BIGINT NOT NULL CHECK (down_payment > 0),
    kind               TEXT NOT NULL CHECK (kind IN ('firm', 'regular')),
    delivery_deadline  BIGINT NOT NULL,
    opens_at           BIGINT NOT NULL,
    closes_at          BIGINT NOT NULL,
    selection          TEXT NOT NULL CHECK (selection IN ('queue', 'lottery')),
    admission_per_min  BIGINT NOT NULL,
    max_active         BIGINT NOT NULL,
    apply_window_secs  BIGINT NOT NULL,
    min_age            BIGINT,
    -- When set, one application per national ID across every license of this round.
    round              TEXT,
    status             TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    -- SHA-256 of the seed, published when the license is issued; the seed after opening.
    seed_commitment    TEXT NOT NULL,
    seed               TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    CHECK (accepted <= units)
);

-- Accepted applications: one per national ID per license, enforced by the key.
CREATE TABLE applications (
    id             TEXT PRIMARY KEY,
    license_id     TEXT NOT NULL REFERENCES licenses (id),
    national_id    TEXT NOT NULL,
    citizen_sub    TEXT NOT NULL,
    ticket         BIGINT NOT NULL,
    tracking_code  TEXT NOT NULL UNIQUE,
    created_at     BIGINT NOT NULL,
    UNIQUE (license_id, national_id)
);

-- One application per national ID per round, for licenses that say so.
CREATE TABLE round_claims (
    round           TEXT NOT NULL,
    national_id     TEXT NOT NULL,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    PRIMARY KEY (round, national_id)
);
