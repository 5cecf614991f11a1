-- Stars withheld from a manufacturer's rating by its after-sale record (issue 34): overdue
-- deliveries, complaints unanswered past their deadline or upheld, warranty cases past the
-- law's thresholds, as the ministry's presale service counts them and pushes them here.
-- The ministry's own rating (`stars`) stays as set; the rating shown is `stars - withheld`,
-- never below one star.
ALTER TABLE clients ADD COLUMN stars_withheld BIGINT NOT NULL DEFAULT 0
    CHECK (stars_withheld BETWEEN 0 AND 4);
