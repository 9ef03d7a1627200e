-- The validation read model: per license, exactly what the validation decision needs, in columns
-- (no JSON to parse), so every server process can load all of it into memory at start-up and
-- then follow the log from this table's checkpoint (projector `validation`).

CREATE TABLE rm_validation
(
    license_id     uuid PRIMARY KEY,
    key_hash       bytea       NOT NULL,
    app_id         uuid        NOT NULL,
    product_id     uuid        NOT NULL,
    policy_id      uuid        NOT NULL,
    policy_version integer     NOT NULL,
    model          text        NOT NULL,
    offline_allowed boolean    NOT NULL,
    seats          integer     NOT NULL,
    -- bit 0 suspended, 1 revoked, 2 paused, 3 subscribed, 4 canceled
    flags          smallint    NOT NULL,
    expires_at     timestamptz,
    trial_ends_at  timestamptz,
    grace_until    timestamptz,
    cancel_at      timestamptz,
    features       text[]      NOT NULL,
    -- [{"installation_id", "fingerprint", "lease_expires_at"}]
    activations    jsonb       NOT NULL DEFAULT '[]',
    version        bigint      NOT NULL
);
CREATE INDEX rm_validation_key_hash ON rm_validation (key_hash);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_validation TO ledger_app;
