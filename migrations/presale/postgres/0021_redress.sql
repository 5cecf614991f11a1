-- After the sale, part two (issue 34): complaints and their attachments, warranty visits,
-- inspection cases and their findings, and each manufacturer's standing as the ministry
-- decided it, with what is still to be carried out at the IdP.

-- A buyer's complaint about one of their applications. With the manufacturer until its
-- answer is due; the ageing rule (domain::redress::Ageing) says who has it after.
CREATE TABLE complaints (
    id            TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    license_id    TEXT NOT NULL REFERENCES licenses (id),
    manufacturer  TEXT NOT NULL,
    citizen_sub   TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN
                      ('late_delivery', 'price_change', 'warranty_refused', 'other')),
    body          TEXT NOT NULL,
    filed_at      BIGINT NOT NULL,
    answer_due    BIGINT NOT NULL,
    answer        TEXT,
    answered_at   BIGINT,
    answered_by   TEXT,
    escalated_at  BIGINT,
    -- A decision is two people's: an inspector proposes it, a second member confirms it.
    proposed_outcome TEXT CHECK (proposed_outcome IN ('upheld', 'dismissed')),
    proposed_by   TEXT,
    outcome       TEXT CHECK (outcome IN ('upheld', 'dismissed', 'accepted')),
    decided_at    BIGINT,
    decided_by    TEXT
);
CREATE INDEX complaints_manufacturer ON complaints (manufacturer, filed_at);
CREATE INDEX complaints_citizen ON complaints (citizen_sub);
-- One open complaint of a kind per application.
CREATE UNIQUE INDEX complaints_open ON complaints (application_id, kind) WHERE outcome IS NULL;

-- Attachments, stored outside the database under their SHA-256 (hex); kept as written.
CREATE TABLE complaint_files (
    complaint_id  TEXT NOT NULL REFERENCES complaints (id),
    sha256        TEXT NOT NULL CHECK (length(sha256) = 64),
    content_type  TEXT NOT NULL CHECK (content_type IN ('application/pdf', 'image/png', 'image/jpeg')),
    size          BIGINT NOT NULL CHECK (size > 0 AND size <= 2097152),
    name          TEXT NOT NULL,
    PRIMARY KEY (complaint_id, sha256)
);

-- A delivered car's warranty visits, as its manufacturer's workshop records them: brought
-- in with a written work order, returned repaired or not.
CREATE TABLE warranty_visits (
    id            TEXT PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    license_id    TEXT NOT NULL REFERENCES licenses (id),
    manufacturer  TEXT NOT NULL,
    opened_at     BIGINT NOT NULL,
    work_order    TEXT NOT NULL,
    safety        BIGINT NOT NULL CHECK (safety IN (0, 1)),
    returned_at   BIGINT,
    failed        BIGINT CHECK (failed IN (0, 1)),
    recorded_by   TEXT NOT NULL,
    recorded_at   BIGINT NOT NULL,
    request_key   TEXT,
    CHECK ((returned_at IS NULL) = (failed IS NULL)),
    CHECK (returned_at IS NULL OR returned_at >= opened_at)
);
CREATE UNIQUE INDEX warranty_visits_request ON warranty_visits (application_id, request_key)
    WHERE request_key IS NOT NULL;
-- A car is in the workshop once at a time.
CREATE UNIQUE INDEX warranty_visits_open ON warranty_visits (application_id)
    WHERE returned_at IS NULL;
CREATE INDEX warranty_visits_manufacturer ON warranty_visits (manufacturer);

-- An inspector's case about a manufacturer, from a complaint or on their own.
CREATE TABLE inspection_cases (
    id            TEXT PRIMARY KEY,
    manufacturer  TEXT NOT NULL,
    complaint_id  TEXT REFERENCES complaints (id),
    summary       TEXT NOT NULL,
    opened_by     TEXT NOT NULL,
    opened_at     BIGINT NOT NULL
);
CREATE TABLE case_findings (
    id            TEXT PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES inspection_cases (id),
    at            BIGINT NOT NULL,
    by_staff      TEXT NOT NULL,
    body          TEXT NOT NULL
);
CREATE INDEX case_findings_case ON case_findings (case_id, at);

-- A manufacturer's standing as the ministry decided it here: the latest approved decision
-- (its kind, what it set, who proposed and who approved it, its version), the campaigns a
-- suspension paused, and the stars its record withholds (with their own version). The
-- IdP takes no version older than one it has; `pushed_version` and
-- `withheld_pushed_version` say what it has, `push_error` why it refused one for good.
CREATE TABLE maker_standing (
    manufacturer     TEXT PRIMARY KEY,
    suspended        BIGINT CHECK (suspended IN (0, 1)),
    stars            BIGINT CHECK (stars BETWEEN 1 AND 5),
    decided_kind     TEXT CHECK (decided_kind IN ('suspend', 'resume', 'rate')),
    decided_by       TEXT NOT NULL DEFAULT '',
    proposed_by      TEXT NOT NULL DEFAULT '',
    proposal_id      TEXT,
    reason           TEXT NOT NULL DEFAULT '',
    decided_version  BIGINT NOT NULL DEFAULT 0,
    -- The decision's version at which the suspension, and the stars, last changed: a
    -- decision not yet carried is sent with every part changed since the last carried.
    suspend_version  BIGINT NOT NULL DEFAULT 0,
    stars_version    BIGINT NOT NULL DEFAULT 0,
    pushed_version   BIGINT NOT NULL DEFAULT 0,
    push_error       TEXT,
    paused_licenses  TEXT NOT NULL DEFAULT '[]',
    withheld         BIGINT NOT NULL DEFAULT 0 CHECK (withheld BETWEEN 0 AND 4),
    withheld_version BIGINT NOT NULL DEFAULT 0,
    withheld_pushed_version BIGINT NOT NULL DEFAULT 0,
    demerits         TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL,
    CHECK ((decided_version = 0) = (decided_kind IS NULL)),
    CHECK (pushed_version <= decided_version AND withheld_pushed_version <= withheld_version),
    CHECK (suspend_version <= decided_version AND stars_version <= decided_version)
);

-- Attachments and findings are kept as written: no role but the owner changes or removes
-- one (the function of migration 0020).
CREATE TRIGGER complaint_files_kept BEFORE UPDATE OR DELETE ON complaint_files
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();
CREATE TRIGGER case_findings_kept BEFORE UPDATE OR DELETE ON case_findings
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();
CREATE TRIGGER inspection_cases_kept BEFORE UPDATE OR DELETE ON inspection_cases
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();

-- The service's role writes the after-sale record only as the service does: each row and
-- each step with its chained audit entry in the same transaction (saying the time where a
-- time decides what is owed), at the database's own time within five minutes (a replica's
-- clock may be off by that much; no more), what is written once never again, and a
-- complaint's parties, text and times, a visit's car, start and work order never. A
-- decision on a complaint is the action it says: a buyer's acceptance is the buyer's, an
-- upheld or dismissed complaint is the proposal a second person confirmed. A
-- manufacturer's standing changes only one version at a time, as the decision's kind
-- says, with its `manufacturer.standing` entry, and (checked at commit) an approved
-- proposal of two different people; the stars withheld take one version at a time.
CREATE FUNCTION emta_now_near(t bigint, slack bigint DEFAULT 300) RETURNS boolean AS $$
    SELECT t IS NOT NULL
       AND t BETWEEN extract(epoch FROM clock_timestamp())::bigint - slack
                 AND extract(epoch FROM clock_timestamp())::bigint + slack
$$ LANGUAGE sql VOLATILE SET search_path = pg_catalog, public, pg_temp;

-- Whether `who` is an enabled member of the console with one of `roles`.
CREATE FUNCTION emta_staff_is(who text, roles text[]) RETURNS boolean AS $$
    SELECT who IS NOT NULL AND EXISTS (SELECT 1 FROM public.staff
                                       WHERE username = who AND role = ANY (roles)
                                         AND disabled_at IS NULL)
$$ LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp;

-- Whether `actor` wrote an entry `act` about `subj` (saying `said`) in an earlier
-- transaction: a step another person took before, not one written now in their name.
CREATE FUNCTION emta_audited_before(act text, subj text, who text, said text)
RETURNS boolean AS $$
    SELECT who IS NOT NULL AND said IS NOT NULL AND EXISTS (
        SELECT 1 FROM public.audit_log
        WHERE action = act AND subject = subj AND actor = who AND detail = said
          AND seq IS NOT NULL AND xmin <> pg_catalog.pg_current_xact_id()::xid)
$$ LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp;

CREATE FUNCTION redress_guarded() RETURNS trigger AS $$
DECLARE
    refused text;
    now_s bigint := extract(epoch FROM clock_timestamp())::bigint;
BEGIN
    IF emta_owner_acts(TG_RELID) THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'complaints' THEN
        IF TG_OP = 'INSERT' THEN
            IF NOT emta_audited_now(ARRAY['complaint.file'], NEW.id) THEN
                refused := 'only with its audit entry';
            ELSIF NOT emta_now_near(NEW.filed_at)
                  OR NOT COALESCE(NEW.answer_due BETWEEN NEW.filed_at + 86400
                                                     AND NEW.filed_at + 365 * 86400, false)
                  OR NEW.answered_at IS NOT NULL OR NEW.escalated_at IS NOT NULL
                  OR NEW.outcome IS NOT NULL OR NEW.proposed_outcome IS NOT NULL
                  OR NEW.proposed_by IS NOT NULL THEN
                refused := 'filed now, answer due in 1 to 365 days, nothing decided';
            ELSIF NOT EXISTS (SELECT 1 FROM public.applications a
                              JOIN public.licenses l ON l.id = a.license_id
                              WHERE a.id = NEW.application_id AND a.license_id = NEW.license_id
                                AND a.citizen_sub = NEW.citizen_sub
                                AND l.manufacturer = NEW.manufacturer) THEN
                refused := 'not the application''s buyer, license or manufacturer';
            END IF;
        ELSE
            IF (OLD.id, OLD.application_id, OLD.license_id, OLD.manufacturer, OLD.citizen_sub,
                OLD.kind, OLD.body, OLD.filed_at, OLD.answer_due)
               IS DISTINCT FROM
               (NEW.id, NEW.application_id, NEW.license_id, NEW.manufacturer, NEW.citizen_sub,
                NEW.kind, NEW.body, NEW.filed_at, NEW.answer_due) THEN
                refused := 'its parties, text and times are fixed';
            ELSIF (OLD.answer, OLD.answered_at, OLD.answered_by)
                  IS DISTINCT FROM (NEW.answer, NEW.answered_at, NEW.answered_by)
                  AND (OLD.answered_at IS NOT NULL OR NEW.answer IS NULL
                       OR NOT emta_now_near(NEW.answered_at)
                       OR NOT emta_audited_now(ARRAY['complaint.answer'], NEW.id,
                              COALESCE(NEW.manufacturer || ' at ' || NEW.answered_at::text, '-'))) THEN
                refused := 'an answer once, now, only with its audit entry';
            ELSIF OLD.escalated_at IS DISTINCT FROM NEW.escalated_at
                  AND (OLD.escalated_at IS NOT NULL OR NOT emta_now_near(NEW.escalated_at)
                       OR NOT emta_audited_now(ARRAY['complaint.escalate'], NEW.id)) THEN
                refused := 'escalated once, now, only with its audit entry';
            ELSIF (OLD.proposed_outcome, OLD.proposed_by)
                  IS DISTINCT FROM (NEW.proposed_outcome, NEW.proposed_by)
                  AND (NEW.proposed_outcome IS NULL
                       OR NOT emta_staff_is(NEW.proposed_by, ARRAY['inspector'])
                       OR NOT EXISTS (SELECT 1 FROM public.audit_log
                                      WHERE action = 'complaint.propose' AND subject = NEW.id
                                        AND actor = NEW.proposed_by
                                        AND detail = NEW.proposed_outcome
                                        AND xmin = pg_catalog.pg_current_xact_id()::xid)) THEN
                refused := 'a proposed decision only an enabled inspector''s, with its audit entry';
            ELSIF (OLD.outcome, OLD.decided_at, OLD.decided_by)
                  IS DISTINCT FROM (NEW.outcome, NEW.decided_at, NEW.decided_by) THEN
                IF OLD.outcome IS NOT NULL OR NEW.outcome IS NULL
                   OR NOT emta_now_near(NEW.decided_at) THEN
                    refused := 'decided once, now';
                ELSIF NEW.outcome = 'accepted' THEN
                    IF NEW.decided_by IS DISTINCT FROM 'citizen' OR OLD.answered_at IS NULL
                       OR OLD.answered_at > OLD.answer_due OR OLD.escalated_at IS NOT NULL
                       OR NOT emta_audited_now(ARRAY['complaint.accept'], NEW.id) THEN
                        refused := 'accepted only by its buyer, of an answer in time, with its audit entry';
                    END IF;
                ELSIF OLD.proposed_outcome IS DISTINCT FROM NEW.outcome
                      OR OLD.proposed_by IS NULL OR OLD.proposed_by = NEW.decided_by
                      -- It reached the ministry: unanswered by its deadline, answered
                      -- after it, or taken further by its buyer.
                      OR NOT (OLD.escalated_at IS NOT NULL
                              OR (OLD.answered_at IS NULL AND now_s > OLD.answer_due - 300)
                              OR OLD.answered_at > OLD.answer_due)
                      OR NOT emta_staff_is(OLD.proposed_by, ARRAY['inspector'])
                      OR NOT emta_staff_is(NEW.decided_by, ARRAY['inspector', 'issuer'])
                      OR NOT emta_audited_before('complaint.propose', NEW.id, OLD.proposed_by,
                                                 OLD.proposed_outcome)
                      OR NOT emta_audited_now(ARRAY['complaint.decide'], NEW.id,
                             NEW.outcome || '; proposed by ' || OLD.proposed_by) THEN
                    refused := 'decided only as an inspector proposed before, by a second member, with its audit entry';
                END IF;
            END IF;
        END IF;
    ELSIF TG_TABLE_NAME = 'complaint_files' THEN
        IF NOT emta_audited_now(ARRAY['complaint.file'], NEW.complaint_id)
           OR NOT EXISTS (SELECT 1 FROM public.complaints c WHERE c.id = NEW.complaint_id
                            AND c.xmin = pg_catalog.pg_current_xact_id()::xid) THEN
            refused := 'an attachment only with its complaint, as it is filed';
        END IF;
    ELSIF TG_TABLE_NAME = 'warranty_visits' THEN
        IF TG_OP = 'INSERT' THEN
            IF NOT emta_audited_now(ARRAY['warranty.open'], NEW.id) THEN
                refused := 'only with its audit entry';
            ELSIF NOT emta_now_near(NEW.recorded_at)
                  OR NOT COALESCE(NEW.opened_at BETWEEN NEW.recorded_at - 3 * 86400 - 300
                                                    AND NEW.recorded_at, false)
                  OR NEW.returned_at IS NOT NULL THEN
                refused := 'recorded now, opened at most three days ago, not yet returned';
            ELSIF NOT EXISTS (SELECT 1 FROM public.applications a
                              JOIN public.licenses l ON l.id = a.license_id
                              JOIN public.delivery_stages d ON d.application_id = a.id
                                   AND d.stage = 'delivered' AND d.at <= NEW.opened_at
                              WHERE a.id = NEW.application_id AND a.license_id = NEW.license_id
                                AND l.manufacturer = NEW.manufacturer) THEN
                refused := 'not a car its manufacturer delivered before the visit';
            END IF;
        ELSIF (OLD.id, OLD.application_id, OLD.license_id, OLD.manufacturer, OLD.opened_at,
               OLD.work_order, OLD.safety, OLD.recorded_by, OLD.recorded_at, OLD.request_key)
              IS DISTINCT FROM
              (NEW.id, NEW.application_id, NEW.license_id, NEW.manufacturer, NEW.opened_at,
               NEW.work_order, NEW.safety, NEW.recorded_by, NEW.recorded_at, NEW.request_key) THEN
            refused := 'its car, start and work order are fixed';
        ELSIF (OLD.returned_at, OLD.failed) IS DISTINCT FROM (NEW.returned_at, NEW.failed)
              AND (OLD.returned_at IS NOT NULL OR NEW.returned_at IS NULL OR NEW.failed IS NULL
                   OR NEW.returned_at < now_s - 3600 - 300 OR NEW.returned_at > now_s + 300
                   OR NOT emta_audited_now(ARRAY['warranty.close'], NEW.id,
                          'back at ' || NEW.returned_at::text || CASE WHEN NEW.failed = 1
                          THEN ', not repaired' ELSE ', repaired' END)) THEN
            refused := 'returned once, within the hour, only with its audit entry';
        END IF;
    ELSIF TG_TABLE_NAME = 'inspection_cases' THEN
        IF NOT emta_audited_now(ARRAY['case.open'], NEW.id) OR NOT emta_now_near(NEW.opened_at)
           OR NOT emta_staff_is(NEW.opened_by, ARRAY['inspector']) THEN
            refused := 'a case only an enabled inspector''s, now, with its audit entry';
        END IF;
    ELSIF TG_TABLE_NAME = 'case_findings' THEN
        IF NOT emta_audited_now(ARRAY['case.finding'], NEW.case_id, NEW.id)
           OR NOT emta_now_near(NEW.at) OR NOT emta_staff_is(NEW.by_staff, ARRAY['inspector']) THEN
            refused := 'a finding only an enabled inspector''s, now, with its audit entry';
        END IF;
    ELSIF TG_TABLE_NAME = 'maker_standing' THEN
        -- An upsert of a manufacturer already recorded is an UPDATE: decided there.
        IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM public.maker_standing
                                        WHERE manufacturer = NEW.manufacturer) THEN
            RETURN NEW;
        END IF;
        IF TG_OP = 'INSERT' AND NEW.decided_version = 0
           AND (NEW.suspended, NEW.stars, NEW.decided_kind, NEW.proposal_id,
                NEW.suspend_version, NEW.stars_version, NEW.pushed_version, NEW.paused_licenses,
                NEW.withheld_pushed_version, NEW.push_error)
               IS DISTINCT FROM (NULL::bigint, NULL::bigint, NULL::text, NULL::text,
                                 0::bigint, 0::bigint, 0::bigint, '[]'::text, 0::bigint, NULL::text) THEN
            refused := 'a first record of a manufacturer decides nothing';
        ELSIF (TG_OP = 'INSERT' AND NEW.decided_version <> 0)
           OR (TG_OP = 'UPDATE' AND (OLD.suspended, OLD.stars, OLD.decided_kind, OLD.decided_by,
               OLD.proposed_by, OLD.proposal_id, OLD.decided_version, OLD.paused_licenses,
               OLD.suspend_version, OLD.stars_version, OLD.reason)
               IS DISTINCT FROM (NEW.suspended, NEW.stars, NEW.decided_kind, NEW.decided_by,
               NEW.proposed_by, NEW.proposal_id, NEW.decided_version, NEW.paused_licenses,
               NEW.suspend_version, NEW.stars_version, NEW.reason)) THEN
            IF NEW.decided_version IS DISTINCT FROM (CASE WHEN TG_OP = 'INSERT' THEN 1
                                                     ELSE OLD.decided_version + 1 END) THEN
                refused := 'a decision is the next version';
            ELSIF NEW.decided_kind IN ('suspend', 'resume')
                  AND (NEW.suspended IS DISTINCT FROM
                           (CASE WHEN NEW.decided_kind = 'suspend' THEN 1 ELSE 0 END)
                       OR NEW.suspend_version <> NEW.decided_version
                       OR (TG_OP = 'UPDATE' AND (NEW.stars, NEW.stars_version)
                           IS DISTINCT FROM (OLD.stars, OLD.stars_version))) THEN
                refused := 'a suspension or a resumption changes the suspension only';
            ELSIF NEW.decided_kind = 'rate'
                  AND (NEW.stars IS NULL OR NEW.stars_version <> NEW.decided_version
                       OR (TG_OP = 'UPDATE' AND (NEW.suspended, NEW.suspend_version,
                           NEW.paused_licenses) IS DISTINCT FROM
                           (OLD.suspended, OLD.suspend_version, OLD.paused_licenses))) THEN
                refused := 'a rating changes the stars only';
            ELSIF NOT EXISTS (SELECT 1 FROM public.audit_log
                              WHERE action = 'manufacturer.standing' AND subject = NEW.manufacturer
                                AND detail LIKE 'v' || NEW.decided_version::text || ' '
                                    || NEW.decided_kind || ';%'
                                AND xmin = pg_catalog.pg_current_xact_id()::xid) THEN
                refused := 'only with its approval''s audit entry';
            END IF;
        END IF;
        -- The stars withheld: one version at a time, each with its entry.
        IF refused IS NULL
           AND (CASE WHEN TG_OP = 'INSERT' THEN NEW.withheld <> 0 OR NEW.withheld_version <> 0
                     ELSE (OLD.withheld, OLD.withheld_version)
                          IS DISTINCT FROM (NEW.withheld, NEW.withheld_version) END)
           AND (NEW.withheld_version IS DISTINCT FROM
                    (CASE WHEN TG_OP = 'INSERT' THEN 0 ELSE OLD.withheld_version END) + 1
                OR NOT EXISTS (SELECT 1 FROM public.audit_log
                               WHERE action = 'manufacturer.withheld'
                                 AND subject = NEW.manufacturer
                                 AND detail LIKE 'v' || NEW.withheld_version::text || ' '
                                     || NEW.withheld::text || ':%'
                                 AND xmin = pg_catalog.pg_current_xact_id()::xid)) THEN
            refused := 'the stars withheld take one version at a time, each with its audit entry';
        END IF;
        -- What the IdP took: each with its entry.
        IF refused IS NULL AND TG_OP = 'UPDATE'
           AND (OLD.pushed_version, OLD.push_error) IS DISTINCT FROM (NEW.pushed_version, NEW.push_error)
           AND NOT (NEW.decided_version = OLD.decided_version + 1 AND NEW.push_error IS NULL
                    AND NEW.pushed_version = OLD.pushed_version)
           AND NOT EXISTS (SELECT 1 FROM public.audit_log
                           WHERE action = 'manufacturer.carried' AND subject = NEW.manufacturer
                             AND (detail = 'v' || NEW.pushed_version::text
                                  OR detail LIKE 'v' || NEW.pushed_version::text || ' declined: %')
                             AND xmin = pg_catalog.pg_current_xact_id()::xid) THEN
            refused := 'a decision noted as carried only with its audit entry';
        END IF;
        IF refused IS NULL AND TG_OP = 'UPDATE'
           AND OLD.withheld_pushed_version IS DISTINCT FROM NEW.withheld_pushed_version
           AND NOT emta_audited_now(ARRAY['manufacturer.carried'], NEW.manufacturer,
                   'withheld v' || NEW.withheld_pushed_version::text) THEN
            refused := 'stars noted as carried only with their audit entry';
        END IF;
    END IF;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION '%: % (not for the service''s role otherwise)', TG_TABLE_NAME, refused
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

-- At commit: a manufacturer's new decision is an approved proposal of two enabled,
-- different members (proposed by an inspector in an earlier transaction, its
-- `proposal.create` entry theirs, written before this transaction; approved by an issuer
-- or another inspector in this one).
CREATE FUNCTION maker_standing_approved() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) OR NEW.decided_version = 0 THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.decided_version = NEW.decided_version THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.proposals p
                   WHERE p.id = NEW.proposal_id AND p.outcome = 'approved'
                     AND p.proposed_by = NEW.proposed_by AND p.decided_by = NEW.decided_by
                     AND p.proposed_by <> p.decided_by
                     AND p.action = 'manufacturer.' || NEW.decided_kind
                     AND p.subject = NEW.manufacturer
                     AND EXISTS (SELECT 1 FROM public.audit_log a
                                 WHERE a.action = 'proposal.create' AND a.subject = p.id
                                   AND a.actor = p.proposed_by AND a.at = p.proposed_at
                                   AND a.seq IS NOT NULL
                                   AND a.xmin <> pg_catalog.pg_current_xact_id()::xid))
       OR NOT emta_staff_is(NEW.proposed_by, ARRAY['inspector'])
       OR NOT emta_staff_is(NEW.decided_by, ARRAY['inspector', 'issuer'])
       OR NOT emta_audited_now(ARRAY['proposal.approved'], NEW.proposal_id) THEN
        RAISE EXCEPTION 'maker_standing: a decision only as an approved proposal of two people (not for the service''s role otherwise)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

CREATE TRIGGER complaints_guarded BEFORE INSERT OR UPDATE ON complaints
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER complaint_files_guarded BEFORE INSERT ON complaint_files
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER warranty_visits_guarded BEFORE INSERT OR UPDATE ON warranty_visits
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER inspection_cases_guarded BEFORE INSERT ON inspection_cases
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER case_findings_guarded BEFORE INSERT ON case_findings
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER maker_standing_guarded BEFORE INSERT OR UPDATE ON maker_standing
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE CONSTRAINT TRIGGER maker_standing_approved AFTER INSERT OR UPDATE ON maker_standing
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION maker_standing_approved();

-- Ministry inspectors (issue 34): a console role.
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative', 'inspector'));
