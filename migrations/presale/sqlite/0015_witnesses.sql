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

CREATE TRIGGER log_cosignatures_no_update BEFORE UPDATE ON log_cosignatures
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
CREATE TRIGGER log_cosignatures_no_delete BEFORE DELETE ON log_cosignatures
BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
