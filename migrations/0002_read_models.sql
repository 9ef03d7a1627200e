-- Read models of the catalogue and licenses. Every row here is derived from `events` by a projector
-- (projections/) and can be dropped and rebuilt from the log: nothing in these tables is a fact of
-- its own. Timestamps come from the events (recorded_at), never from now(), so a rebuild produces
-- exactly the rows the live projector produced.

CREATE TABLE rm_organizations
(
    id                 uuid PRIMARY KEY,
    name               text        NOT NULL,
    kind               text        NOT NULL,
    parent_id          uuid,
    delegated_partners uuid[]      NOT NULL DEFAULT '{}',
    closed             boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    version            bigint      NOT NULL
);
CREATE INDEX rm_organizations_parent ON rm_organizations (parent_id);

CREATE TABLE rm_products
(
    id                uuid PRIMARY KEY,
    name              text        NOT NULL,
    kind              text        NOT NULL,
    app_id            uuid        NOT NULL,
    parent_product_id uuid,
    key_prefix        text        NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    version           bigint      NOT NULL
);
CREATE INDEX rm_products_app_id ON rm_products (app_id);

CREATE TABLE rm_policies
(
    id             uuid PRIMARY KEY,
    product_id     uuid        NOT NULL,
    name           text        NOT NULL,
    policy_version integer     NOT NULL,
    terms          jsonb       NOT NULL,
    retired        boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        bigint      NOT NULL
);
CREATE INDEX rm_policies_product ON rm_policies (product_id);

-- `state` is the License aggregate's own state (domain::license::LicenseState) as of `version`;
-- status is derived from it and the clock when read, never stored.
CREATE TABLE rm_licenses
(
    id              uuid PRIMARY KEY,
    organization_id uuid        NOT NULL,
    product_id      uuid        NOT NULL,
    app_id          uuid        NOT NULL,
    policy_id       uuid        NOT NULL,
    key_hash        bytea       NOT NULL,
    key_prefix      text        NOT NULL,
    state           jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL
);
CREATE INDEX rm_licenses_organization ON rm_licenses (organization_id, id);
CREATE INDEX rm_licenses_key_hash ON rm_licenses (key_hash);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_organizations, rm_products, rm_policies, rm_licenses TO ledger_app;
