-- A manufacturer's representative (issue 29): a console account bound to one manufacturer,
-- which sees that manufacturer's campaigns' dashboards and enters its seed commitment on a
-- page bound to it, and changes nothing else. The binding is set when the account is
-- enrolled (and written in its `staff.add` audit entry, which is what counts): no role
-- change makes or unmakes a representative.
ALTER TABLE staff ADD COLUMN manufacturer TEXT;
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('administrator', 'issuer', 'auditor', 'representative'));
ALTER TABLE staff ADD CONSTRAINT staff_representative_manufacturer
    CHECK ((role = 'representative') = (manufacturer IS NOT NULL));
