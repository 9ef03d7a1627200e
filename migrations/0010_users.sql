-- Users of identity providers (issue #15, ADR 0020): the read model of the User aggregate's
-- streams, for the lists of an organization's users. Authentication never reads it (it folds
-- the user's stream, found through its unique claim), so it may trail the log by the projector's
-- lag without letting a deactivated user in. Like every read model, it can be dropped and
-- rebuilt from the log; times come from the events.
CREATE TABLE rm_users
(
    id              uuid PRIMARY KEY,
    email           text        NOT NULL,
    -- The organization the user was registered or invited at.
    organization_id uuid        NOT NULL,
    -- The user's provider once linked, or the one its invitation is claimed through.
    issuer          text,
    -- Null while the invitation waits.
    subject         text,
    deactivated     boolean     NOT NULL DEFAULT false,
    -- Its roles, each `<organization id>:<role>`, in the order they were granted.
    roles           text[]      NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL
);
-- GET /v1/organizations/{id}/users: an organization's users by id.
CREATE INDEX rm_users_organization ON rm_users (organization_id, id);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_users TO ledger_app;
