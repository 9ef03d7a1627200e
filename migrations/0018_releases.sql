-- Releases and their artifacts (issue #17, ADR 0023): the read model of the Release streams, for
-- the lists of a product's releases and for finding an artifact's release. Commands never read
-- it (they fold the release's stream), so it may trail the log by the projector's lag; like
-- every read model it can be dropped and rebuilt from the log, and its times come from the
-- events.
CREATE TABLE rm_releases
(
    id              uuid PRIMARY KEY,
    product_id      uuid        NOT NULL,
    -- As written (build metadata included).
    release_version text        NOT NULL,
    channel         text        NOT NULL,
    -- draft, published or yanked.
    status          text        NOT NULL,
    notes           text,
    entitlements    text[]      NOT NULL,
    published_at    timestamptz,
    yanked_reason   text,
    yanked_at       timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         bigint      NOT NULL
);
-- GET /v1/products/{id}/releases: a product's releases by id, optionally of one version.
CREATE INDEX rm_releases_product ON rm_releases (product_id, id);
CREATE INDEX rm_releases_product_version ON rm_releases (product_id, release_version);

CREATE TABLE rm_artifacts
(
    id         uuid PRIMARY KEY,
    release_id uuid        NOT NULL,
    filename   text        NOT NULL,
    platform   text        NOT NULL,
    arch       text        NOT NULL,
    size       bigint      NOT NULL,
    sha256     text        NOT NULL,
    signature  text        NOT NULL,
    kid        text        NOT NULL,
    created_at timestamptz NOT NULL
);
-- A release's artifacts in upload order (ids are UUID v7).
CREATE INDEX rm_artifacts_release ON rm_artifacts (release_id, id);

-- Download links and what was served through them (`Download` streams): who was granted which
-- artifact for which license, and the completed transfers, for the per-release and
-- per-organization counts.
CREATE TABLE rm_downloads
(
    id              uuid PRIMARY KEY,
    artifact_id     uuid        NOT NULL,
    release_id      uuid        NOT NULL,
    license_id      uuid        NOT NULL,
    -- The license's organization when the link was granted.
    organization_id uuid        NOT NULL,
    user_id         uuid,
    -- Who was granted the link (`user:<id>`, `api_token:<id>`, ...), from the event's metadata.
    granted_to      text        NOT NULL,
    granted_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    -- Completed transfers through the link, and their bytes.
    served          integer     NOT NULL DEFAULT 0,
    bytes_served    bigint      NOT NULL DEFAULT 0,
    last_served_at  timestamptz
);
CREATE INDEX rm_downloads_release ON rm_downloads (release_id, id);
CREATE INDEX rm_downloads_organization ON rm_downloads (organization_id, id);

-- The start-up sweep of the artifact store keeps the files some ArtifactAdded names: read from
-- the log (the read model may trail or be rebuilding), through this index.
CREATE INDEX events_artifact_digest
    ON events ((payload ->> 'sha256'))
    WHERE event_type = 'ArtifactAdded';

-- An artifact's release, read-your-writes: a link asked for right after the upload or the
-- publish finds it, whatever the read model's lag.
CREATE INDEX events_artifact_id
    ON events ((payload ->> 'artifact_id'))
    WHERE event_type = 'ArtifactAdded';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON rm_releases, rm_artifacts, rm_downloads TO ledger_app;
