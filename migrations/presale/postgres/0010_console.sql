-- The console's roles: an administrator manages staff accounts (adds them with a one-time
-- TOTP enrolment, disables them, resets their TOTP, changes their role, ends their
-- sessions) and approves nothing; issuers propose and approve; auditors read everything.
ALTER TABLE staff DROP CONSTRAINT staff_role_check;
ALTER TABLE staff ADD CONSTRAINT staff_role_check
    CHECK (role IN ('administrator', 'issuer', 'auditor'));
