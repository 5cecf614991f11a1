-- Registration as real rounds ran it (issue 30): the registries a license asks at
-- registration, as its log's first record states them (JSON; NULL when it asks none).
-- Like every other term it is fixed at issuance and must be the record's.
ALTER TABLE licenses ADD COLUMN registration TEXT;

DROP TRIGGER licenses_terms_fixed ON licenses;
CREATE TRIGGER licenses_terms_fixed BEFORE UPDATE ON licenses FOR EACH ROW
    WHEN ((OLD.id, OLD.license_no, OLD.manufacturer, OLD.model, OLD.units, OLD.unit_price,
           OLD.down_payment, OLD.kind, OLD.delivery_deadline, OLD.opens_at, OLD.closes_at,
           OLD.selection, OLD.apply_window_secs, OLD.min_age, OLD.round, OLD.seed_commitment,
           OLD.seed, OLD.created_at, OLD.exclusion_manufacturers, OLD.exclusion_months,
           OLD.seed_reveal_secs, OLD.seed_iterations, OLD.registration)
          IS DISTINCT FROM
          (NEW.id, NEW.license_no, NEW.manufacturer, NEW.model, NEW.units, NEW.unit_price,
           NEW.down_payment, NEW.kind, NEW.delivery_deadline, NEW.opens_at, NEW.closes_at,
           NEW.selection, NEW.apply_window_secs, NEW.min_age, NEW.round, NEW.seed_commitment,
           NEW.seed, NEW.created_at, NEW.exclusion_manufacturers, NEW.exclusion_months,
           NEW.seed_reveal_secs, NEW.seed_iterations, NEW.registration))
    EXECUTE FUNCTION emta_refuse('a license''s terms are fixed at issuance');

CREATE OR REPLACE FUNCTION licenses_change_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' THEN
        -- Issued with its record, and as the record states it.
        IF NOT EXISTS (
            SELECT 1 FROM emta_logged_now(NEW.id, 'license') e
            WHERE e ->> 'id' = NEW.id
              AND e -> 'terms' ->> 'license_no' = NEW.license_no
              AND e -> 'terms' ->> 'manufacturer' = NEW.manufacturer
              AND (e -> 'terms' ->> 'units')::bigint = NEW.units
              AND (e -> 'terms' ->> 'unit_price')::bigint = NEW.unit_price
              AND (e -> 'terms' ->> 'down_payment')::bigint = NEW.down_payment
              AND e -> 'terms' ->> 'kind' = NEW.kind
              AND (e -> 'terms' ->> 'delivery_deadline')::bigint = NEW.delivery_deadline
              AND (e -> 'terms' ->> 'opens_at')::bigint = NEW.opens_at
              AND (e -> 'terms' ->> 'closes_at')::bigint = NEW.closes_at
              AND e -> 'terms' ->> 'selection' = NEW.selection
              AND (e -> 'terms' ->> 'admission_per_min')::bigint = NEW.admission_per_min
              AND (e -> 'terms' ->> 'max_active')::bigint = NEW.max_active
              AND (e -> 'terms' ->> 'apply_window_secs')::bigint = NEW.apply_window_secs
              AND (e -> 'terms' ->> 'min_age')::bigint IS NOT DISTINCT FROM NEW.min_age
              AND e -> 'terms' ->> 'round' IS NOT DISTINCT FROM NEW.round
              AND (e -> 'terms' -> 'exclusion' ->> 'months')::bigint
                  IS NOT DISTINCT FROM NEW.exclusion_months
              AND (e -> 'terms' -> 'seed_delay' ->> 'reveal_secs')::bigint
                  IS NOT DISTINCT FROM NEW.seed_reveal_secs
              AND (e -> 'terms' -> 'seed_delay' ->> 'iterations')::bigint
                  IS NOT DISTINCT FROM NEW.seed_iterations
              AND e -> 'terms' ->> 'model' = NEW.model
              AND (e -> 'terms' -> 'registration') IS NOT DISTINCT FROM (NEW.registration::jsonb)
              AND (SELECT pg_catalog.string_agg(m, ',' ORDER BY n)
                   FROM pg_catalog.jsonb_array_elements_text(e -> 'terms' -> 'exclusion' -> 'manufacturers')
                        WITH ORDINALITY AS x(m, n))
                  IS NOT DISTINCT FROM NEW.exclusion_manufacturers
              AND NEW.accepted = 0 AND NEW.entries = 0 AND NEW.status = 'active'
              AND NEW.paused_ms = 0 AND NEW.suspended_at_ms IS NULL
              AND NEW.admissions_paused_at_ms IS NULL AND NEW.frozen_at_ms IS NULL
        ) THEN
            RAISE EXCEPTION 'license %: issued without its record in the public log, or unlike it', NEW.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NULL;
    END IF;
    IF (OLD.status, OLD.suspended_at_ms) IS DISTINCT FROM (NEW.status, NEW.suspended_at_ms)
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'status') e
                       WHERE e ->> 'status' = NEW.status) THEN
        RAISE EXCEPTION 'license %: a change of status without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.admission_per_min IS DISTINCT FROM NEW.admission_per_min
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'rate') e
                       WHERE (e ->> 'admission_per_min')::bigint = NEW.admission_per_min) THEN
        RAISE EXCEPTION 'license %: a change of rate without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.max_active IS DISTINCT FROM NEW.max_active
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'max_active') e
                       WHERE (e ->> 'max_active')::bigint = NEW.max_active) THEN
        RAISE EXCEPTION 'license %: a change of the active bound without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- The time given back (a pause's or a suspension's length) moves with either record.
    IF (OLD.paused_ms, OLD.admissions_paused_at_ms)
           IS DISTINCT FROM (NEW.paused_ms, NEW.admissions_paused_at_ms)
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'admissions'))
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'status')) THEN
        RAISE EXCEPTION 'license %: a pause of admissions without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Each application accepted, each lottery entry, with its record.
    IF NEW.accepted < OLD.accepted
       OR NEW.accepted - OLD.accepted
          > (SELECT count(*) FROM emta_logged_now(NEW.id, 'accepted')) THEN
        RAISE EXCEPTION 'license %: applications counted without their records in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.entries < OLD.entries
       OR NEW.entries - OLD.entries > (SELECT count(*) FROM emta_logged_now(NEW.id, 'entry')) THEN
        RAISE EXCEPTION 'license %: entries counted without their records in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.frozen_at_ms IS DISTINCT FROM NEW.frozen_at_ms
       AND (OLD.frozen_at_ms IS NOT NULL
            OR NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.id, 'frozen'))) THEN
        RAISE EXCEPTION 'license %: a freeze without its record in the public log', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
