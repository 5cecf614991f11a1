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

-- Both are kept as written: no role but the owner changes or removes a row. A rate is
-- added by the service's role only with the staff member's chained audit entry in the
-- same transaction, saying exactly that rate.
CREATE FUNCTION after_sale_kept() RETURNS trigger AS $$
BEGIN
    IF NOT emta_owner_acts(TG_RELID) THEN
        RAISE EXCEPTION '%: rows are kept as written', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN COALESCE(NEW, OLD);
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

CREATE TRIGGER delivery_stages_kept BEFORE UPDATE OR DELETE ON delivery_stages
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();
CREATE TRIGGER compensation_rates_kept BEFORE UPDATE OR DELETE ON compensation_rates
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();

CREATE FUNCTION compensation_rate_audited() RETURNS trigger AS $$
BEGIN
    IF NOT emta_owner_acts(TG_RELID)
       AND NOT emta_audited_now(ARRAY['rate.compensation'], NEW.kind,
                                NEW.effective_from::text || ' ' || NEW.monthly_bp::text || 'bp') THEN
        RAISE EXCEPTION 'compensation rate %: only with its audit entry', NEW.kind
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

CREATE TRIGGER compensation_rates_audited BEFORE INSERT ON compensation_rates
    FOR EACH ROW EXECUTE FUNCTION compensation_rate_audited();

-- A stage is the application's own (its license) and is appended by the service's role
-- only with its chained audit entry in the same transaction, saying exactly that stage:
-- no silent, backdated delivery written with a replica's credentials.
CREATE FUNCTION delivery_stage_audited() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.applications a
                   WHERE a.id = NEW.application_id AND a.license_id = NEW.license_id) THEN
        RAISE EXCEPTION 'delivery stage %: not the application''s license', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT emta_owner_acts(TG_RELID)
       AND NOT emta_audited_now(ARRAY['delivery.' || NEW.stage], NEW.application_id,
                                NEW.stage || ' ' || NEW.amount::text || ' ' || NEW.at::text) THEN
        RAISE EXCEPTION 'delivery stage %: only with its audit entry', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

CREATE TRIGGER delivery_stages_audited BEFORE INSERT ON delivery_stages
    FOR EACH ROW EXECUTE FUNCTION delivery_stage_audited();
