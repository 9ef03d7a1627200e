-- The event store: one append-only table for every stream, in commit order, hash-chained.
--
-- Contract (ARCHITECTURE.md, docs/adr/0001 and 0002):
--   * rows are only ever inserted: UPDATE, DELETE and TRUNCATE are refused by triggers, and the
--     application role `ledger_app` holds only SELECT and INSERT on this table;
--   * (aggregate_type, aggregate_id, sequence) is the optimistic-concurrency key: sequences of a
--     stream start at 1 and are contiguous (the insert trigger refuses a gap);
--   * recorded_at and tx_id are set by the database, whatever the writer sends;
--   * hash = sha256(previous hash in the stream || canonical bytes of the row), set by the
--     insert trigger, so every writer (ours, postgres-es, psql) produces the same chain;
--   * readers take rows in (tx_id, global_position) order below the commit horizon
--     pg_snapshot_xmin(pg_current_snapshot()), never by global_position alone.

-- The application role. The server connects as the configured user and then `SET ROLE ledger_app`,
-- so a bug or an injection in the application cannot rewrite history even where the owner could.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN
        BEGIN
            CREATE ROLE ledger_app NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN NULL; -- created by a concurrent migration (parallel tests)
            WHEN unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'license-ledger needs the role ledger_app: run `CREATE ROLE ledger_app NOLOGIN; GRANT ledger_app TO %;` as a superuser, then migrate again', current_user;
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'ledger_app', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT ledger_app TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'grant the role ledger_app to % (GRANT ledger_app TO %;) as a superuser, then migrate again', current_user, current_user;
        END;
    END IF;
END
$$;

CREATE TABLE events
(
    global_position bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    event_id        uuid        NOT NULL,
    aggregate_type  text        NOT NULL CHECK (aggregate_type ~ '^[A-Za-z][A-Za-z0-9_]{0,63}$'),
    aggregate_id    text        NOT NULL CHECK (length(aggregate_id) BETWEEN 1 AND 128 AND aggregate_id !~ '[\n\r]'),
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    event_type      text        NOT NULL CHECK (event_type ~ '^[A-Za-z][A-Za-z0-9_]{0,127}$'),
    event_version   text        NOT NULL CHECK (event_version ~ '^[0-9]+(\.[0-9]+){0,2}$'),
    -- json, not jsonb: the exact bytes the writer sent are stored, and they are what the hash
    -- covers (no re-encoding between what was written, hashed and exported); it is also cheaper
    -- to insert. Read models use jsonb where they need to query.
    payload         json        NOT NULL,
    metadata        json        NOT NULL CHECK (json_typeof(metadata) = 'object'),
    recorded_at     timestamptz NOT NULL DEFAULT statement_timestamp(),
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    hash            bytea       NOT NULL DEFAULT '\x'::bytea,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
-- The order every reader follows (projectors, export, replay).
CREATE INDEX events_commit_order ON events (tx_id, global_position);
-- Exactly-once commands: a client's Idempotency-Key is recorded on the first event of the command.
CREATE UNIQUE INDEX events_idempotency_key
    ON events ((metadata ->> 'actor'), (metadata ->> 'idempotency_key'))
    WHERE (metadata ->> 'idempotency_key') IS NOT NULL;
CREATE INDEX events_recorded_at ON events (recorded_at);

CREATE FUNCTION ledger_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    previous bytea;
BEGIN
    -- The database, not the writer, says when and in which transaction an event was recorded.
    NEW.recorded_at := statement_timestamp();
    NEW.tx_id := pg_current_xact_id();
    IF NEW.sequence = 1 THEN
        previous := decode(repeat('00', 32), 'hex');
    ELSE
        -- Rows inserted earlier by the same statement are visible here, so a command that appends
        -- several events chains them in one INSERT.
        SELECT e.hash INTO previous
        FROM events e
        WHERE e.aggregate_type = NEW.aggregate_type
          AND e.aggregate_id = NEW.aggregate_id
          AND e.sequence = NEW.sequence - 1;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'stream %/% has no event % to follow', NEW.aggregate_type, NEW.aggregate_id, NEW.sequence - 1
                USING ERRCODE = 'LLG01';
        END IF;
    END IF;
    -- The canonical bytes of the event: fields separated by newlines. No text field before the
    -- payload may contain one (CHECK constraints above), so the encoding is unambiguous; payload
    -- and metadata are the stored json text, byte for byte. recorded_at is integer microseconds
    -- since the Unix epoch. Written inline (not as a function, not with to_char): this runs for every
    -- event and is the largest cost of an append. Reproduced in Rust by
    -- domain::integrity::canonical_event; keep the two identical.
    NEW.hash := sha256(previous || convert_to(
        'ledger-event/1' || E'\n' ||
        NEW.event_id::text || E'\n' ||
        NEW.global_position::text || E'\n' ||
        NEW.aggregate_type || E'\n' ||
        NEW.aggregate_id || E'\n' ||
        NEW.sequence::text || E'\n' ||
        NEW.event_type || E'\n' ||
        NEW.event_version || E'\n' ||
        (extract(epoch FROM NEW.recorded_at) * 1000000)::bigint::text || E'\n' ||
        NEW.payload::text || E'\n' ||
        NEW.metadata::text,
        'UTF8'));
    RETURN NEW;
END
$$;

CREATE TRIGGER events_before_insert
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_before_insert();

CREATE FUNCTION ledger_events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is refused', TG_OP
        USING ERRCODE = 'LLA01',
              HINT = 'history is corrected by appending a new event, never by changing an old one';
END
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change();

REVOKE ALL ON events FROM PUBLIC;
GRANT SELECT, INSERT ON events TO ledger_app;

-- Values that must be unique across streams (an App GUID, a license key hash). A claim is inserted
-- in the same statement as the event that makes it, so a duplicate fails the whole append.
CREATE TABLE unique_claims
(
    scope      text        NOT NULL,
    value      text        NOT NULL,
    stream_id  text        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    PRIMARY KEY (scope, value)
);
REVOKE ALL ON unique_claims FROM PUBLIC;
GRANT SELECT, INSERT ON unique_claims TO ledger_app;

-- One row per projector: how far it has applied the log, advanced in the same transaction as the
-- projector's read-model writes (exactly-once).
CREATE TABLE projector_checkpoints
(
    name            text        PRIMARY KEY,
    last_tx_id      xid8        NOT NULL DEFAULT '0'::xid8,
    last_position   bigint      NOT NULL DEFAULT 0,
    events_applied  bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON projector_checkpoints TO ledger_app;
