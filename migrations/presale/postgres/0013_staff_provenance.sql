-- Who set each account's credentials and role: four-eyes counts people, not accounts. An
-- administrator who enrolled two issuers (and so saw both TOTP secrets) is one person
-- behind both, so neither may approve the other's proposal, nor be the seed's ministry
-- party for it. NULL for accounts from before (enrolled from the command line).
ALTER TABLE staff ADD COLUMN enrolled_by TEXT;
ALTER TABLE staff ADD COLUMN role_set_by TEXT;
