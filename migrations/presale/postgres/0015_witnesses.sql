-- Cosignatures of independent witnesses on the transparency logs' checkpoints: each row
-- is one witness's signature line on the checkpoint of one campaign's log at one size,
-- kept only after it verified with a configured witness key. Served with the checkpoint;
-- insert-only, as the log itself.
CREATE TABLE log_cosignatures (
    license_id  TEXT NOT NULL,
    size        BIGINT NOT NULL,
    witness     TEXT NOT NULL,
    signature   TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    PRIMARY KEY (license_id, size, witness)
);

CREATE TRIGGER log_cosignatures_append_only BEFORE UPDATE OR DELETE ON log_cosignatures
    FOR EACH ROW EXECUTE FUNCTION log_append_only();
-- Row triggers do not see TRUNCATE; statement triggers do.
CREATE TRIGGER log_cosignatures_no_truncate BEFORE TRUNCATE ON log_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION log_append_only();
