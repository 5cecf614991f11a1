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

CREATE TRIGGER complaint_files_kept_u BEFORE UPDATE ON complaint_files
BEGIN SELECT RAISE(ABORT, 'attachments are kept as written'); END;
CREATE TRIGGER complaint_files_kept_d BEFORE DELETE ON complaint_files
BEGIN SELECT RAISE(ABORT, 'attachments are kept as written'); END;
CREATE TRIGGER case_findings_kept_u BEFORE UPDATE ON case_findings
BEGIN SELECT RAISE(ABORT, 'findings are kept as written'); END;
CREATE TRIGGER case_findings_kept_d BEFORE DELETE ON case_findings
BEGIN SELECT RAISE(ABORT, 'findings are kept as written'); END;
CREATE TRIGGER inspection_cases_kept_u BEFORE UPDATE ON inspection_cases
BEGIN SELECT RAISE(ABORT, 'cases are kept as written'); END;
CREATE TRIGGER inspection_cases_kept_d BEFORE DELETE ON inspection_cases
BEGIN SELECT RAISE(ABORT, 'cases are kept as written'); END;
-- What is written once stays so: a complaint's parties, kind and text, its answer, its
-- escalation, its decision; a visit's car, start, work order and safety flag, its return.
-- (The file is the service's own; PostgreSQL's guards, which bind the service's role,
-- are stricter: times and audit entries too.)
CREATE TRIGGER complaints_fixed BEFORE UPDATE ON complaints
WHEN OLD.application_id IS NOT NEW.application_id OR OLD.license_id IS NOT NEW.license_id
  OR OLD.manufacturer IS NOT NEW.manufacturer OR OLD.citizen_sub IS NOT NEW.citizen_sub
  OR OLD.kind IS NOT NEW.kind OR OLD.body IS NOT NEW.body
  OR (OLD.answered_at IS NOT NULL AND (OLD.answered_at IS NOT NEW.answered_at
      OR OLD.answer IS NOT NEW.answer))
  OR (OLD.escalated_at IS NOT NULL AND OLD.escalated_at IS NOT NEW.escalated_at)
  OR (OLD.outcome IS NOT NULL AND (OLD.outcome IS NOT NEW.outcome
      OR OLD.decided_by IS NOT NEW.decided_by))
BEGIN SELECT RAISE(ABORT, 'a complaint is kept as written'); END;
CREATE TRIGGER complaints_kept_d BEFORE DELETE ON complaints
BEGIN SELECT RAISE(ABORT, 'a complaint is kept as written'); END;
CREATE TRIGGER warranty_visits_fixed BEFORE UPDATE ON warranty_visits
WHEN OLD.application_id IS NOT NEW.application_id OR OLD.manufacturer IS NOT NEW.manufacturer
  OR OLD.work_order IS NOT NEW.work_order OR OLD.safety IS NOT NEW.safety
  OR (OLD.returned_at IS NOT NULL AND (OLD.returned_at IS NOT NEW.returned_at
      OR OLD.failed IS NOT NEW.failed))
BEGIN SELECT RAISE(ABORT, 'a warranty visit is kept as written'); END;
CREATE TRIGGER warranty_visits_kept_d BEFORE DELETE ON warranty_visits
BEGIN SELECT RAISE(ABORT, 'a warranty visit is kept as written'); END;

-- Ministry inspectors (issue 34): a console role. SQLite cannot change a CHECK constraint,
-- so the staff table is rebuilt as in 0014, and with it the proposals that refer to it
-- (child first).
CREATE TABLE staff_copy AS SELECT * FROM staff;
CREATE TABLE proposals_copy AS SELECT * FROM proposals;
DROP TABLE proposals;
DROP TABLE staff;

CREATE TABLE staff (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT NOT NULL,
    last_totp_step  BIGINT NOT NULL DEFAULT 0,
    role            TEXT NOT NULL
        CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative', 'inspector')),
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT,
    session_epoch   BIGINT NOT NULL DEFAULT 0,
    manufacturer    TEXT,
    CHECK ((role = 'representative') = (manufacturer IS NOT NULL))
);
INSERT INTO staff (username, password_hash, totp_secret, last_totp_step, role,
                   created_at, disabled_at, session_epoch, manufacturer)
    SELECT username, password_hash, totp_secret, last_totp_step, role,
           created_at, disabled_at, session_epoch, manufacturer
    FROM staff_copy;

CREATE TABLE proposals (
    id           TEXT PRIMARY KEY,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    proposed_by  TEXT NOT NULL REFERENCES staff (username),
    proposed_at  BIGINT NOT NULL,
    decided_by   TEXT REFERENCES staff (username),
    decided_at   BIGINT,
    outcome      TEXT,
    CHECK (decided_by IS NULL OR outcome = 'withdrawn' OR decided_by <> proposed_by)
);
CREATE INDEX proposals_pending ON proposals (proposed_at) WHERE outcome IS NULL;
INSERT INTO proposals (id, action, subject, payload, proposed_by, proposed_at, decided_by,
                       decided_at, outcome)
    SELECT id, action, subject, payload, proposed_by, proposed_at, decided_by,
           decided_at, outcome
    FROM proposals_copy;

DROP TABLE proposals_copy;
DROP TABLE staff_copy;
