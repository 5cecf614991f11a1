-- After the sale (issue 34): deliveries and their stages as manufacturers record them,
-- and the ministry's table of compensation rates for late delivery.

-- The ministry's rates, per kind of sale, each in force from a date until the next one.
-- Kept for good: compensation for a past day is computed with the rate of that day.
CREATE TABLE compensation_rates (
    kind            TEXT NOT NULL CHECK (kind IN
                        ('immediate', 'firm', 'regular', 'participation', 'custom', 'custom_imported')),
    effective_from  BIGINT NOT NULL,
    monthly_bp      BIGINT NOT NULL CHECK (monthly_bp >= 0 AND monthly_bp <= 10000),
    set_by          TEXT NOT NULL,
    set_at          BIGINT NOT NULL,
    PRIMARY KEY (kind, effective_from)
);

-- Each stage of an accepted application's life after the sale, appended by its
-- manufacturer: the contract (once), payments (any number), the delivery (once, last).
CREATE TABLE delivery_stages (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    license_id      TEXT NOT NULL REFERENCES licenses (id),
    stage           TEXT NOT NULL CHECK (stage IN ('contract', 'payment', 'delivered')),
    amount          BIGINT NOT NULL DEFAULT 0 CHECK (amount >= 0),
    at              BIGINT NOT NULL,
    recorded_by     TEXT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    -- The caller's key for the request that recorded it: a retry records nothing twice.
    request_key     TEXT
);
CREATE UNIQUE INDEX delivery_stages_request ON delivery_stages (application_id, request_key)
    WHERE request_key IS NOT NULL;
CREATE UNIQUE INDEX delivery_stages_once ON delivery_stages (application_id, stage)
    WHERE stage <> 'payment';
CREATE INDEX delivery_stages_license ON delivery_stages (license_id, stage);

CREATE TRIGGER delivery_stages_append_only_u BEFORE UPDATE ON delivery_stages
BEGIN SELECT RAISE(ABORT, 'delivery stages are appended, never changed'); END;
CREATE TRIGGER delivery_stages_append_only_d BEFORE DELETE ON delivery_stages
BEGIN SELECT RAISE(ABORT, 'delivery stages are appended, never changed'); END;
CREATE TRIGGER compensation_rates_append_only_u BEFORE UPDATE ON compensation_rates
BEGIN SELECT RAISE(ABORT, 'compensation rates are kept, never changed'); END;
CREATE TRIGGER compensation_rates_append_only_d BEFORE DELETE ON compensation_rates
BEGIN SELECT RAISE(ABORT, 'compensation rates are kept, never changed'); END;
