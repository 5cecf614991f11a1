-- The audit log is read by action and subject where an action must have its entry: an
-- approval reads its proposal's `proposal.create`, a seed's parties their `seed.commit`,
-- four-eyes the `staff.add` of each account (who enrolled it, and so knows its password).
CREATE INDEX audit_log_action_subject ON audit_log (action, subject);
