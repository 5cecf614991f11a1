-- A join batch no longer checks each ticket's license through a foreign key.
--
-- The check was one `FOR KEY SHARE` lookup of the license's row per ticket: 32 row locks
-- per batch of 32 on the row every application also updates (`accepted`), about half of
-- the batch's time in the database. It checked nothing the batch does not already know:
-- a ticket is written only in the statement or transaction that has just updated its
-- campaign's `queue_campaigns` row (which references the license), and licenses are
-- never deleted. The `(license_id, holder)` and `(license_id, number)` keys, which are
-- what stop a person or a number being counted twice, stay.
ALTER TABLE queue_tickets DROP CONSTRAINT queue_tickets_license_id_fkey;
