-- Audit and time travel: signed checkpoints of the log, the audit read model, and License
-- snapshots for fast as-of reads.

-- Signed checkpoints. Each commits, with a Merkle root (domain::integrity::LogAccumulator), to
-- every event in commit order up to and including (tx_id, global_position), and keeps the leaves
-- it added since the previous checkpoint — (position, event hash) pairs — so a verifier can name
-- the exact event that no longer matches. Facts about the log, not derived data: append-only
-- like the log itself.
CREATE TABLE log_checkpoints
(
    checkpoint_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_count     bigint      NOT NULL CHECK (event_count > 0),
    tx_id           xid8        NOT NULL,
    global_position bigint      NOT NULL,
    root            bytea       NOT NULL CHECK (length(root) = 32),
    -- 40 bytes per event added: position (8, big-endian) || event hash (32)
    leaves          bytea       NOT NULL,
    -- the accumulator after this checkpoint, to continue from (LogAccumulator as JSON)
    accumulator     jsonb       NOT NULL,
    signed_at       timestamptz NOT NULL,
    kid             text        NOT NULL,
    signature       bytea       NOT NULL CHECK (length(signature) = 64),
    UNIQUE (event_count)
);

CREATE TRIGGER log_checkpoints_refuse_update_delete
    BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change();
CREATE TRIGGER log_checkpoints_refuse_truncate
    BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change();
REVOKE ALL ON log_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON log_checkpoints TO ledger_app;

-- The audit read model: one row per event.
CREATE TABLE rm_audit
(
    position       bigint PRIMARY KEY,
    event_id       uuid        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    actor          text        NOT NULL,
    action         text        NOT NULL,
    subject_type   text        NOT NULL,
    subject_id     text        NOT NULL,
    sequence       bigint      NOT NULL,
    license_id     uuid,
    correlation_id text,
    causation_id   text
);
CREATE INDEX rm_audit_recorded_at ON rm_audit (recorded_at, position);
CREATE INDEX rm_audit_license ON rm_audit (license_id, position) WHERE license_id IS NOT NULL;
CREATE INDEX rm_audit_actor ON rm_audit (actor, position);

-- License state every N events, written by the licenses projector: an as-of read starts from
-- the last snapshot at or before the instant instead of folding the whole stream.
CREATE TABLE rm_license_snapshots
(
    license_id  uuid        NOT NULL,
    sequence    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL,
    state       jsonb       NOT NULL,
    PRIMARY KEY (license_id, sequence)
);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_audit, rm_license_snapshots TO ledger_app;
