-- Pushed Authorization Requests (RFC 9126, issue 32): the ministry may require a
-- manufacturer to push its authorization requests over its authenticated back channel, so
-- that the browser carries only a `request_uri` (as FAPI 2.0 profiles do). 1: required.
ALTER TABLE clients ADD COLUMN require_par BIGINT NOT NULL DEFAULT 0;
