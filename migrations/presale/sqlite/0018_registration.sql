-- Registration as real rounds ran it (issue 30): the registries a license asks at
-- registration, as its log's first record states them (JSON; NULL when it asks none).
ALTER TABLE licenses ADD COLUMN registration TEXT;
