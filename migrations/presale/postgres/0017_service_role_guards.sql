-- What the service's own database role may change (issue 31, point 4). The service runs
-- as a role that owns nothing (`presale migrate --grant-to`); these guards, owned with the
-- tables by the migrations' role, make every change that decides who gets a car either
-- impossible for it or public: it takes effect only in the transaction that appends its
-- record to the campaign's transparency log (or, for staff, its entry to the hash-chained
-- audit log), with the same values. A silent edit with a replica's DATABASE_URL is
-- refused at commit; one that writes the record too is in the public log for every
-- auditor to see and judge (a forged seed fails the recomputation, a rate without its
-- approval stands out). The owner is not bound: it could switch any trigger off.

-- Whether the current role owns (or is a member of the owner of) table `rel`.
--
-- Every function below names its tables with their schema and runs with a fixed search
-- path (pg_catalog first, the session's temporary schema last): a temporary table the
-- service's role makes (a `pg_class` or a `log_pending` of its own) is never read in
-- their place. The role has no TEMPORARY right either (`presale migrate --grant-to`).
CREATE FUNCTION emta_owner_acts(rel oid) RETURNS boolean AS $$
    SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
    FROM pg_catalog.pg_class c WHERE c.oid = rel
$$ LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp;

-- The records of event `ev` this transaction appended to campaign `lic`'s log.
CREATE FUNCTION emta_logged_now(lic text, ev text) RETURNS SETOF jsonb AS $$
    SELECT body::jsonb FROM public.log_pending
    WHERE license_id = lic AND xmin = pg_catalog.pg_current_xact_id()::xid
      AND body::jsonb ->> 'event' = ev
$$ LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp;

-- Whether this transaction appended a chained audit entry, one of `actions`, about `subj`
-- (and, given `said`, saying exactly that).
CREATE FUNCTION emta_audited_now(actions text[], subj text, said text DEFAULT NULL)
RETURNS boolean AS $$
    SELECT EXISTS (SELECT 1 FROM public.audit_log
                   WHERE subject = subj AND action = ANY (actions) AND seq IS NOT NULL
                     AND (said IS NULL OR detail = said)
                     AND xmin = pg_catalog.pg_current_xact_id()::xid)
$$ LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp;

-- Every new audit entry is in the chain (entries from before it have no sequence number;
-- an entry without one would count for the checks above and below, yet escape the
-- chain's recomputation).
ALTER TABLE audit_log ADD CONSTRAINT audit_log_chained
    CHECK (seq IS NOT NULL AND hash IS NOT NULL AND prev_hash IS NOT NULL) NOT VALID;

CREATE FUNCTION emta_refuse() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) AND TG_OP = 'DELETE' THEN
        RETURN OLD;
    ELSIF emta_owner_acts(TG_RELID) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '%: % is not for the service''s role (%)', TG_TABLE_NAME, TG_OP, TG_ARGV[0]
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

-- Licenses: the terms never change after issuance.
CREATE TRIGGER licenses_terms_fixed BEFORE UPDATE ON licenses FOR EACH ROW
    WHEN ((OLD.id, OLD.license_no, OLD.manufacturer, OLD.model, OLD.units, OLD.unit_price,
           OLD.down_payment, OLD.kind, OLD.delivery_deadline, OLD.opens_at, OLD.closes_at,
           OLD.selection, OLD.apply_window_secs, OLD.min_age, OLD.round, OLD.seed_commitment,
           OLD.seed, OLD.created_at, OLD.exclusion_manufacturers, OLD.exclusion_months,
           OLD.seed_reveal_secs, OLD.seed_iterations)
          IS DISTINCT FROM
          (NEW.id, NEW.license_no, NEW.manufacturer, NEW.model, NEW.units, NEW.unit_price,
           NEW.down_payment, NEW.kind, NEW.delivery_deadline, NEW.opens_at, NEW.closes_at,
           NEW.selection, NEW.apply_window_secs, NEW.min_age, NEW.round, NEW.seed_commitment,
           NEW.seed, NEW.created_at, NEW.exclusion_manufacturers, NEW.exclusion_months,
           NEW.seed_reveal_secs, NEW.seed_iterations))
    EXECUTE FUNCTION emta_refuse('a license''s terms are fixed at issuance');
CREATE TRIGGER licenses_no_delete BEFORE DELETE ON licenses FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a license is never removed');

-- Licenses: status, rate, bound, pause and freeze change only with their record.
CREATE FUNCTION licenses_change_logged() RETURNS trigger AS $$
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
CREATE CONSTRAINT TRIGGER licenses_issued_logged AFTER INSERT ON licenses
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION licenses_change_logged();
CREATE CONSTRAINT TRIGGER licenses_change_logged AFTER UPDATE ON licenses
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN ((OLD.status, OLD.suspended_at_ms, OLD.paused_ms, OLD.admission_per_min, OLD.max_active,
           OLD.admissions_paused_at_ms, OLD.frozen_at_ms, OLD.accepted, OLD.entries)
          IS DISTINCT FROM
          (NEW.status, NEW.suspended_at_ms, NEW.paused_ms, NEW.admission_per_min, NEW.max_active,
           NEW.admissions_paused_at_ms, NEW.frozen_at_ms, NEW.accepted, NEW.entries))
    EXECUTE FUNCTION licenses_change_logged();

-- The frozen list, once written, is final; the seed is written once, with its record.
CREATE TRIGGER campaign_seeds_list_fixed BEFORE UPDATE ON campaign_seeds FOR EACH ROW
    WHEN ((OLD.license_id, OLD.list, OLD.list_size, OLD.list_root, OLD.frozen_at_ms)
              IS DISTINCT FROM (NEW.license_id, NEW.list, NEW.list_size, NEW.list_root, NEW.frozen_at_ms)
          OR (OLD.seed IS NOT NULL AND OLD.seed IS DISTINCT FROM NEW.seed))
    EXECUTE FUNCTION emta_refuse('a frozen list and a seed are final');
CREATE TRIGGER campaign_seeds_no_delete BEFORE DELETE ON campaign_seeds FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a frozen list is never removed');
CREATE FUNCTION campaign_seeds_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' AND NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'frozen') e
           WHERE (e ->> 'size')::bigint = NEW.list_size AND e ->> 'root' = NEW.list_root
             AND e ->> 'list' = NEW.list) THEN
        RAISE EXCEPTION 'campaign %: a list frozen without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.seed IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.seed IS NULL) AND NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'seed') e WHERE e ->> 'seed' = NEW.seed) THEN
        RAISE EXCEPTION 'campaign %: a seed without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER campaign_seeds_logged AFTER INSERT OR UPDATE ON campaign_seeds
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION campaign_seeds_logged();

-- A party's commitment is the license's; its secret is written once, with its reveal.
CREATE TRIGGER seed_parties_fixed BEFORE UPDATE ON seed_parties FOR EACH ROW
    WHEN ((OLD.license_id, OLD.party, OLD.commitment)
              IS DISTINCT FROM (NEW.license_id, NEW.party, NEW.commitment)
          OR (OLD.secret IS NOT NULL AND OLD.secret IS DISTINCT FROM NEW.secret))
    EXECUTE FUNCTION emta_refuse('a seed party''s commitment and reveal are final');
CREATE TRIGGER seed_parties_no_delete BEFORE DELETE ON seed_parties FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a seed party is never removed');
CREATE FUNCTION seed_parties_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' AND NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'license') e
           WHERE e -> 'terms' -> 'parties'
                 @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('party', NEW.party, 'commitment', NEW.commitment))) THEN
        RAISE EXCEPTION 'campaign %: a seed party not in the license''s record', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.secret IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.secret IS NULL) AND NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'reveal') e
           WHERE e ->> 'party' = NEW.party AND e ->> 'secret' = NEW.secret) THEN
        RAISE EXCEPTION 'campaign %: a reveal without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER seed_parties_logged AFTER INSERT OR UPDATE ON seed_parties
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION seed_parties_logged();

-- Staff: an account is made or changed only with its audit entry (the last TOTP step a
-- sign-in spends is not a change of who may act).
CREATE TRIGGER staff_no_delete BEFORE DELETE ON staff FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a staff account is disabled, never removed');
CREATE FUNCTION staff_audited() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    -- The entry names the role (and a representative's manufacturer) the account has.
    IF TG_OP = 'INSERT' AND NOT emta_audited_now(ARRAY['staff.add'], NEW.username,
           CASE WHEN NEW.manufacturer IS NULL THEN NEW.role
                ELSE NEW.role || ' ' || NEW.manufacturer END) THEN
        RAISE EXCEPTION 'staff %: an account without its staff.add audit entry', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'INSERT' THEN RETURN NULL; END IF;
    -- Each column with the action that changes it (a sign-in's entry covers nothing).
    IF (OLD.username, OLD.created_at) IS DISTINCT FROM (NEW.username, NEW.created_at) THEN
        RAISE EXCEPTION 'staff %: an account''s name and creation are fixed', OLD.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (OLD.role, OLD.manufacturer) IS DISTINCT FROM (NEW.role, NEW.manufacturer)
       AND NOT emta_audited_now(ARRAY['staff.role'], NEW.username, NEW.role) THEN
        RAISE EXCEPTION 'staff %: a change of role without its staff.role audit entry', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (OLD.password_hash, OLD.totp_secret) IS DISTINCT FROM (NEW.password_hash, NEW.totp_secret)
       AND NOT emta_audited_now(ARRAY['staff.reset-totp'], NEW.username) THEN
        RAISE EXCEPTION 'staff %: new credentials without their staff.reset-totp audit entry', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.disabled_at IS DISTINCT FROM NEW.disabled_at
       AND NOT emta_audited_now(ARRAY['staff.disable', 'staff.enable'], NEW.username) THEN
        RAISE EXCEPTION 'staff %: a change of standing without its audit entry', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.session_epoch IS DISTINCT FROM NEW.session_epoch
       AND NOT emta_audited_now(ARRAY['staff.disable', 'staff.enable', 'staff.revoke-sessions',
                                      'staff.role', 'staff.reset-totp'], NEW.username) THEN
        RAISE EXCEPTION 'staff %: sessions ended without an audit entry', NEW.username
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER staff_added_audited AFTER INSERT ON staff
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION staff_audited();
CREATE CONSTRAINT TRIGGER staff_change_audited AFTER UPDATE ON staff
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN ((OLD.username, OLD.password_hash, OLD.totp_secret, OLD.role, OLD.created_at,
           OLD.disabled_at, OLD.session_epoch, OLD.manufacturer)
          IS DISTINCT FROM
          (NEW.username, NEW.password_hash, NEW.totp_secret, NEW.role, NEW.created_at,
           NEW.disabled_at, NEW.session_epoch, NEW.manufacturer))
    EXECUTE FUNCTION staff_audited();

-- Records waiting for the tree: never edited; removed only by the sequencer, in the
-- transaction that appends them to the tree (each removed record is among the records
-- appended past the tree's size, which the sequencer moves on after the removal).
CREATE TRIGGER log_pending_no_update BEFORE UPDATE ON log_pending FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a record waiting for the tree is never edited');
CREATE FUNCTION log_pending_moved() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF EXISTS (
        SELECT g.license_id, g.body, g.ref FROM gone g
        EXCEPT ALL
        SELECT r.license_id, r.body, r.ref FROM public.log_records r JOIN public.log_state s
            ON s.license_id = r.license_id
        WHERE r.license_id IN (SELECT DISTINCT license_id FROM gone) AND r.idx >= s.size
          AND r.xmin = pg_catalog.pg_current_xact_id()::xid
    ) THEN
        RAISE EXCEPTION 'a record waiting for the tree was removed without being appended to it'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE TRIGGER log_pending_moved AFTER DELETE ON log_pending
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION log_pending_moved();

-- The tree's records: appended only within the size the sequencer sets in the same
-- transaction (no record parked past the tree, where no checkpoint would ever cover it),
-- and the size only grows.
CREATE FUNCTION log_records_within() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM public.log_state s
                   WHERE s.license_id = NEW.license_id AND NEW.idx < s.size) THEN
        RAISE EXCEPTION 'campaign %: a record past the tree''s size', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER log_records_within AFTER INSERT ON log_records
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION log_records_within();
CREATE FUNCTION log_state_filled() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' AND NEW.size <> 0 THEN
        RAISE EXCEPTION 'campaign %: a log starts empty', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Every index the size now covers holds a record: no gap for a parked one.
    IF TG_OP = 'UPDATE' AND NEW.size > OLD.size AND (
           SELECT count(*) FROM public.log_records r
           WHERE r.license_id = NEW.license_id AND r.idx >= OLD.size AND r.idx < NEW.size)
           <> NEW.size - OLD.size THEN
        RAISE EXCEPTION 'campaign %: the tree''s size passes a gap', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER log_state_filled AFTER INSERT OR UPDATE ON log_state
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION log_state_filled();
CREATE TRIGGER log_state_grows BEFORE UPDATE ON log_state FOR EACH ROW
    WHEN (NEW.size < OLD.size OR NEW.license_id IS DISTINCT FROM OLD.license_id)
    EXECUTE FUNCTION emta_refuse('a log only grows');
CREATE TRIGGER log_state_no_delete BEFORE DELETE ON log_state FOR EACH ROW
    EXECUTE FUNCTION emta_refuse('a log is never removed');

-- When the queue opens is the license's: it decides who arrived before the opening. The
-- queue starts empty at the license's opening, and is marked open only once the
-- database's clock has reached it.
CREATE TRIGGER queue_campaigns_opening_fixed BEFORE UPDATE ON queue_campaigns FOR EACH ROW
    WHEN ((OLD.license_id, OLD.opens_at_ms) IS DISTINCT FROM (NEW.license_id, NEW.opens_at_ms))
    EXECUTE FUNCTION emta_refuse('the queue''s opening is the license''s');
CREATE FUNCTION queue_campaigns_opening() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NEW; END IF;
    IF TG_OP = 'INSERT' AND (
           NEW.opens_at_ms IS DISTINCT FROM
               (SELECT l.opens_at * 1000 FROM public.licenses l WHERE l.id = NEW.license_id)
           OR (NEW.early, NEW.late, NEW.opened, NEW.serving, NEW.clock_ms, NEW.carry_milli)
              IS DISTINCT FROM (0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint)) THEN
        RAISE EXCEPTION 'queue %: not the license''s opening, or not empty', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.opened < OLD.opened OR (NEW.opened > OLD.opened
           AND CAST(EXTRACT(EPOCH FROM pg_catalog.clock_timestamp()) * 1000 AS bigint)
               < NEW.opens_at_ms)) THEN
        RAISE EXCEPTION 'queue %: opened before its opening', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
-- (Only when `opened` changes: every join batch updates the row, and a function called
-- for each would cost the surge's hot path.)
CREATE TRIGGER queue_campaigns_created BEFORE INSERT ON queue_campaigns FOR EACH ROW
    EXECUTE FUNCTION queue_campaigns_opening();
CREATE TRIGGER queue_campaigns_opening BEFORE UPDATE ON queue_campaigns FOR EACH ROW
    WHEN (OLD.opened IS DISTINCT FROM NEW.opened)
    EXECUTE FUNCTION queue_campaigns_opening();

-- An application, an admission: only with their records in the public log.
CREATE FUNCTION applications_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'accepted') e
           WHERE e ->> 'tracking_code' = NEW.tracking_code
             AND (e ->> 'ticket')::bigint = NEW.ticket) THEN
        RAISE EXCEPTION 'campaign %: an application without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE FUNCTION queue_admissions_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NOT EXISTS (
           SELECT 1 FROM emta_logged_now(NEW.license_id, 'admitted') e
           WHERE NEW.ticket BETWEEN (e ->> 'first')::bigint AND (e ->> 'last')::bigint) THEN
        RAISE EXCEPTION 'campaign %: an admission without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER applications_logged AFTER INSERT ON applications
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION applications_logged();
CREATE CONSTRAINT TRIGGER queue_admissions_logged AFTER INSERT ON queue_admissions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION queue_admissions_logged();
-- A winner's time to apply moves only with a suspension's end or an extension.
CREATE FUNCTION lottery_draws_time_logged() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'status'))
       AND NOT EXISTS (SELECT 1 FROM emta_logged_now(NEW.license_id, 'extended')) THEN
        RAISE EXCEPTION 'campaign %: a winner''s time moved without its record in the public log', NEW.license_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER lottery_draws_time_logged AFTER UPDATE ON lottery_draws
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.apply_until_ms IS DISTINCT FROM NEW.apply_until_ms)
    EXECUTE FUNCTION lottery_draws_time_logged();

-- Observers: registered and disabled only with their audit entries.
CREATE FUNCTION seed_observers_audited() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN RETURN NULL; END IF;
    IF TG_OP = 'INSERT' AND NOT emta_audited_now(ARRAY['observer.add'], NEW.name) THEN
        RAISE EXCEPTION 'observer %: registered without its audit entry', NEW.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND NOT emta_audited_now(ARRAY['observer.disable'], NEW.name) THEN
        RAISE EXCEPTION 'observer %: disabled without its audit entry', NEW.name
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;
CREATE CONSTRAINT TRIGGER seed_observers_audited AFTER INSERT OR UPDATE ON seed_observers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION seed_observers_audited();
