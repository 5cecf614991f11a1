-- Stars withheld from a manufacturer's rating by its after-sale record (issue 34): overdue
-- deliveries, complaints unanswered past their deadline or upheld, warranty cases past the
-- law's thresholds, as the ministry's presale service counts them and pushes them here.
-- The ministry's own rating (`stars`) stays as set; the rating shown is `stars - withheld`,
-- never below one star.
ALTER TABLE clients ADD COLUMN stars_withheld BIGINT NOT NULL DEFAULT 0
    CHECK (stars_withheld BETWEEN 0 AND 4);

-- The ministry's decisions carried here from its console (a suspension, a resumption, a
-- rating two of its staff approved) and the stars withheld each carry a version: none
-- older than one this record has is taken, so a request overtaken by a later one never
-- leaves the older decision in force. A suspension is the ministry's (from its console),
-- the IdP operator's (`idp client suspend`), or both: the client is suspended while
-- either stands, and each side lifts only its own.
ALTER TABLE clients ADD COLUMN standing_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN withheld_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN suspended_by_ministry BIGINT NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN suspended_by_operator BIGINT NOT NULL DEFAULT 0;
UPDATE clients SET suspended_by_operator = 1 WHERE status = 'suspended';
