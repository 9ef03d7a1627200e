-- The answers of writes sent with an Idempotency-Key, kept for the retention (24 h by default) so
-- that a retry answers the first answer again, byte for byte (ADR 0016).
--
-- One row per (scope, key): the scope is the principal (`token:<id>` for an administration token,
-- `key:<keyed hash>` for a client application's license key: never the key itself). A request
-- claims its key by inserting the row `in_progress`; the answer replaces the claim (`done`), or a
-- 5xx / a dropped request deletes it. `claim_id` names the request holding the claim, so that a
-- request whose claim was taken over (older than the request deadline: its server was killed)
-- can neither complete nor release its successor's claim.
--
-- The body is encrypted (XChaCha20-Poly1305 under a key derived from the server's pepper, the
-- row's scope, key, status and headers as associated data): some answers carry a secret shown
-- once (a token, a license key, an offline token) and nothing here stores one in clear.
--
-- UNLOGGED: a claim or an answer written here waits for no WAL flush. Measured side by side
-- (bench commands --idempotency, 16 writers), a logged table cut the command path to 0.38 of its
-- rate without keys: each write paid three commits' flushes instead of one. What an unlogged table
-- loses, on a PostgreSQL crash or a failover to a standby, is stored answers: a retry then runs
-- its request again, and the events' index below keeps its command from appending twice.
--
-- Not the log: rows are updated and deleted (pruned after the retention by the server's
-- `IdempotencyPruner` job). The events' own (actor, idempotency_key) index stays the safety net
-- that makes a command append at most once whatever becomes of these rows.
CREATE UNLOGGED TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    -- SHA-256 of method, path and body: the same key with another request is refused.
    request_hash bytea       NOT NULL,
    claim_id     uuid        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('in_progress', 'done')),
    status       smallint,
    -- The answer's headers as a JSON array of [name, value] pairs (Content-Type, Location, ...).
    headers      json,
    -- 24-byte nonce followed by the ciphertext and its tag.
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CHECK ((state = 'done') = (status IS NOT NULL AND headers IS NOT NULL AND body IS NOT NULL))
) WITH (fillfactor = 70); -- room on the page for the claim's one update to stay HOT

-- The pruner deletes by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO ledger_app;
