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

-- A manufacturer's standing as the ministry decided it here (an approved suspension,
-- resumption or rating), the campaigns a suspension paused, and the stars its record
-- withholds; `decided_version` > `pushed_version` (or `withheld` <> `withheld_pushed`):
-- still to be carried out at the IdP, retried until it is.
CREATE TABLE maker_standing (
    manufacturer     TEXT PRIMARY KEY,
    suspended        BIGINT CHECK (suspended IN (0, 1)),
    stars            BIGINT CHECK (stars BETWEEN 1 AND 5),
    decided_by       TEXT NOT NULL DEFAULT '',
    reason           TEXT NOT NULL DEFAULT '',
    decided_version  BIGINT NOT NULL DEFAULT 0,
    pushed_version   BIGINT NOT NULL DEFAULT 0,
    paused_licenses  TEXT NOT NULL DEFAULT '[]',
    withheld         BIGINT NOT NULL DEFAULT 0 CHECK (withheld BETWEEN 0 AND 4),
    withheld_pushed  BIGINT NOT NULL DEFAULT -1,
    demerits         TEXT NOT NULL DEFAULT '',
    updated_at       BIGINT NOT NULL
);

-- Attachments and findings are kept as written: no role but the owner changes or removes
-- one (the function of migration 0020).
CREATE TRIGGER complaint_files_kept BEFORE UPDATE OR DELETE ON complaint_files
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();
CREATE TRIGGER case_findings_kept BEFORE UPDATE OR DELETE ON case_findings
    FOR EACH ROW EXECUTE FUNCTION after_sale_kept();

-- Ministry inspectors (issue 34): a console role.
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative', 'inspector'));
