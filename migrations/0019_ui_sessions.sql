-- The web UI's logins in flight and its sessions (issue #18, ADR 0025).
--
-- Operational state, like `idempotency_keys`: who is logged in is not a fact of the ledger, so
-- these are plain tables, not events. Nothing in them is a secret an attacker could use: the
-- browser holds the session's secret, the table its SHA-256; a login's `state` is stored the
-- same way, and its PKCE verifier is worthless without the code the provider sends the browser.
-- Expired rows are deleted when a login starts.

CREATE TABLE ui_logins (
    -- SHA-256 of the `state` the provider sends back to the callback.
    state_hash  bytea       PRIMARY KEY,
    -- The ID token must carry this `nonce` (OpenID Connect Core 3.1.2.1).
    nonce       text        NOT NULL,
    -- PKCE (RFC 7636): the code verifier whose S256 challenge the authorization request sent.
    verifier    text        NOT NULL,
    -- Where the browser goes once logged in: a path of this server.
    return_to   text        NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX ui_logins_created_at ON ui_logins (created_at);

CREATE TABLE ui_sessions (
    -- SHA-256 of the cookie's secret.
    token_hash  bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL,
    -- The token every form of this session carries (compared in constant time).
    csrf        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    -- Refreshed at most once a minute by use; a session idle longer than the idle limit ends.
    last_seen   timestamptz NOT NULL,
    -- The absolute end, whatever the use.
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
CREATE INDEX ui_sessions_user_id ON ui_sessions (user_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON ui_logins, ui_sessions TO ledger_app;
