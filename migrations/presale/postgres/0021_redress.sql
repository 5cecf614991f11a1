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
    pushed_version   BIGINT NOT NULL DEFAULT 0,
    push_error       TEXT,
    paused_licenses  TEXT NOT NULL DEFAULT '[]',
    withheld         BIGINT NOT NULL DEFAULT 0 CHECK (withheld BETWEEN 0 AND 4),
    withheld_version BIGINT NOT NULL DEFAULT 0,
    withheld_pushed_version BIGINT NOT NULL DEFAULT 0,
    demerits         TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL,
    CHECK ((decided_version = 0) = (decided_kind IS NULL))
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
-- time decides what is owed), what is written once never again, and a complaint's
-- parties, text and times, a visit's car, start and work order never. A manufacturer's
-- standing changes only with its approval's `manufacturer.standing` entry naming that
-- version, and the stars withheld take one version at a time (no version far ahead that
-- the IdP would then keep against every later one).
CREATE FUNCTION redress_guarded() RETURNS trigger AS $$
BEGIN
    IF emta_owner_acts(TG_RELID) THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'complaints' THEN
        IF TG_OP = 'INSERT' THEN
            IF NOT emta_audited_now(ARRAY['complaint.file'], NEW.id) THEN
                RAISE EXCEPTION 'complaint %: only with its audit entry', NEW.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END IF;
        IF (OLD.id, OLD.application_id, OLD.license_id, OLD.manufacturer, OLD.citizen_sub,
            OLD.kind, OLD.body, OLD.filed_at, OLD.answer_due)
           IS DISTINCT FROM
           (NEW.id, NEW.application_id, NEW.license_id, NEW.manufacturer, NEW.citizen_sub,
            NEW.kind, NEW.body, NEW.filed_at, NEW.answer_due) THEN
            RAISE EXCEPTION 'complaint %: its parties, text and times are not for the service''s role', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (OLD.answer, OLD.answered_at, OLD.answered_by)
           IS DISTINCT FROM (NEW.answer, NEW.answered_at, NEW.answered_by)
           AND (OLD.answered_at IS NOT NULL OR NOT emta_audited_now(ARRAY['complaint.answer'],
                NEW.id, NEW.manufacturer || ' at ' || NEW.answered_at::text)) THEN
            RAISE EXCEPTION 'complaint %: an answer once, only with its audit entry', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF OLD.escalated_at IS DISTINCT FROM NEW.escalated_at
           AND (OLD.escalated_at IS NOT NULL
                OR NOT emta_audited_now(ARRAY['complaint.escalate'], NEW.id)) THEN
            RAISE EXCEPTION 'complaint %: escalated once, only with its audit entry', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (OLD.proposed_outcome, OLD.proposed_by)
           IS DISTINCT FROM (NEW.proposed_outcome, NEW.proposed_by)
           AND NOT emta_audited_now(ARRAY['complaint.propose'], NEW.id) THEN
            RAISE EXCEPTION 'complaint %: a proposed decision only with its audit entry', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (OLD.outcome, OLD.decided_at, OLD.decided_by)
           IS DISTINCT FROM (NEW.outcome, NEW.decided_at, NEW.decided_by)
           AND (OLD.outcome IS NOT NULL
                OR NOT emta_audited_now(ARRAY['complaint.decide', 'complaint.accept'], NEW.id)) THEN
            RAISE EXCEPTION 'complaint %: decided once, only with its audit entry', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF TG_TABLE_NAME = 'warranty_visits' THEN
        IF TG_OP = 'INSERT' THEN
            IF NOT emta_audited_now(ARRAY['warranty.open'], NEW.id) THEN
                RAISE EXCEPTION 'warranty visit %: only with its audit entry', NEW.id
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END IF;
        IF (OLD.id, OLD.application_id, OLD.license_id, OLD.manufacturer, OLD.opened_at,
            OLD.work_order, OLD.safety, OLD.recorded_by, OLD.recorded_at, OLD.request_key)
           IS DISTINCT FROM
           (NEW.id, NEW.application_id, NEW.license_id, NEW.manufacturer, NEW.opened_at,
            NEW.work_order, NEW.safety, NEW.recorded_by, NEW.recorded_at, NEW.request_key) THEN
            RAISE EXCEPTION 'warranty visit %: its car, start and work order are not for the service''s role', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF (OLD.returned_at, OLD.failed) IS DISTINCT FROM (NEW.returned_at, NEW.failed)
           AND (OLD.returned_at IS NOT NULL OR NOT emta_audited_now(ARRAY['warranty.close'],
                NEW.id, 'back at ' || NEW.returned_at::text || CASE WHEN NEW.failed = 1
                THEN ', not repaired' ELSE ', repaired' END)) THEN
            RAISE EXCEPTION 'warranty visit %: returned once, only with its audit entry', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF TG_TABLE_NAME = 'inspection_cases' THEN
        IF NOT emta_audited_now(ARRAY['case.open'], NEW.id) THEN
            RAISE EXCEPTION 'case %: only with its audit entry', NEW.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF TG_TABLE_NAME = 'maker_standing' THEN
        IF (TG_OP = 'INSERT' AND NEW.decided_version <> 0)
           OR (TG_OP = 'UPDATE' AND (OLD.suspended, OLD.stars, OLD.decided_kind, OLD.decided_by,
               OLD.proposed_by, OLD.proposal_id, OLD.decided_version, OLD.paused_licenses)
               IS DISTINCT FROM (NEW.suspended, NEW.stars, NEW.decided_kind, NEW.decided_by,
               NEW.proposed_by, NEW.proposal_id, NEW.decided_version, NEW.paused_licenses)) THEN
            IF NOT emta_audited_now(ARRAY['manufacturer.standing'], NEW.manufacturer)
               OR NOT EXISTS (SELECT 1 FROM public.audit_log
                              WHERE action = 'manufacturer.standing' AND subject = NEW.manufacturer
                                AND detail LIKE 'v' || NEW.decided_version::text || ' '
                                    || NEW.decided_kind || ';%'
                                AND xmin = pg_catalog.pg_current_xact_id()::xid) THEN
                RAISE EXCEPTION 'standing of %: only with its approval''s audit entry', NEW.manufacturer
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
        END IF;
        IF (TG_OP = 'INSERT' AND NEW.withheld_version NOT IN (0, 1))
           OR (TG_OP = 'UPDATE' AND NEW.withheld_version NOT IN (OLD.withheld_version,
               OLD.withheld_version + 1)) THEN
            RAISE EXCEPTION 'standing of %: the stars withheld take one version at a time', NEW.manufacturer
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp;

CREATE TRIGGER complaints_guarded BEFORE INSERT OR UPDATE ON complaints
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER warranty_visits_guarded BEFORE INSERT OR UPDATE ON warranty_visits
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER inspection_cases_guarded BEFORE INSERT ON inspection_cases
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();
CREATE TRIGGER maker_standing_guarded BEFORE INSERT OR UPDATE ON maker_standing
    FOR EACH ROW EXECUTE FUNCTION redress_guarded();

-- Ministry inspectors (issue 34): a console role.
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative', 'inspector'));
