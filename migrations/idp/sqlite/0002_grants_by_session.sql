-- Signing out ends the grants issued from that SSO session (RP-initiated logout): they
-- are found by the session's id.
CREATE INDEX grants_by_session ON grants (sid) WHERE revoked_at IS NULL;
