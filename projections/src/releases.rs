//! `rm_releases` and `rm_artifacts` (migration 0018, ADR 0023): a product's releases and each
//! release's artifacts, for lists and for finding an artifact's release; `rm_downloads`: the
//! download links and their completed transfers, for counts. Commands never read
//! them (they fold the release's stream). Times are the events' `recorded_at`, so a rebuild
//! writes identical rows.

use async_trait::async_trait;
use domain::AggregateType;
use domain::download::DownloadEvent;
use domain::event::RecordedEvent;
use domain::release::ReleaseEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::catalogue::{expect_one, stream_uuid};
use crate::engine::{Projection, ProjectionError, ReplaySafe};

/// `rm_releases`, `rm_artifacts` and `rm_downloads`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleasesProjection;

#[async_trait]
impl Projection for ReleasesProjection {
    fn name(&self) -> &'static str {
        "releases"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_releases", "rm_artifacts", "rm_downloads"]
    }
    // One projector for both: each projector holds a database session of the jobs pool for
    // its lock, and releases and their downloads are read together anyway.
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::Release, AggregateType::Download]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if e.aggregate_type == AggregateType::Download.as_str() {
            return apply_download(conn, e).await;
        }
        let id = stream_uuid(e)?;
        let (at, v) = (e.recorded_at, e.sequence);
        let result = match e.decode::<ReleaseEvent>()? {
            ReleaseEvent::Drafted {
                product_id,
                version,
                channel,
                notes,
                entitlements,
            } => {
                let entitlements: Vec<&str> =
                    entitlements.iter().map(|f| f.as_str()).collect();
                sqlx::query(
                    "INSERT INTO rm_releases (id, product_id, release_version, channel, status, notes, entitlements, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $7, $8)",
                )
                .bind(id)
                .bind(Uuid::from(product_id))
                .bind(version.to_string())
                .bind(channel.as_str())
                .bind(notes.as_ref().map(|n| n.as_str()))
                .bind(&entitlements)
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            ReleaseEvent::ArtifactAdded(a) => {
                sqlx::query(
                    "INSERT INTO rm_artifacts (id, release_id, filename, platform, arch, size, sha256, signature, kid, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(Uuid::from(a.artifact_id))
                .bind(id)
                .bind(a.filename.as_str())
                .bind(a.platform.as_str())
                .bind(a.arch.as_str())
                .bind(i64::try_from(a.size).unwrap_or(i64::MAX))
                .bind(a.sha256.to_string())
                .bind(&a.signature)
                .bind(&a.kid)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                touch(conn, id, at, v).await?
            }
            ReleaseEvent::Published { published_at } => {
                sqlx::query(
                    "UPDATE rm_releases SET status = 'published', published_at = $2, updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(published_at)
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            ReleaseEvent::Yanked { reason } => {
                sqlx::query(
                    "UPDATE rm_releases SET status = 'yanked', yanked_reason = $2, yanked_at = $3, updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(reason.as_str())
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
        };
        expect_one(result, e)
    }
}

/// Records that the release changed.
async fn touch(
    conn: &mut PgConnection,
    id: Uuid,
    at: domain::Timestamp,
    v: i64,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    sqlx::query("UPDATE rm_releases SET updated_at = $2, version = $3 WHERE id = $1")
        .bind(id)
        .bind(at)
        .bind(v)
        .execute(&mut *conn)
        .await
}

impl ReplaySafe for ReleasesProjection {}

/// `rm_downloads`: each link and the transfers through it.
async fn apply_download(conn: &mut PgConnection, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let id = stream_uuid(e)?;
    let result = match e.decode::<DownloadEvent>()? {
            DownloadEvent::Granted {
                artifact_id,
                release_id,
                license_id,
                organization_id,
                user_id,
                expires_at,
            } => {
                let granted_to = e
                    .metadata
                    .get("actor")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("unknown");
                sqlx::query(
                    "INSERT INTO rm_downloads (id, artifact_id, release_id, license_id, organization_id, user_id, granted_to, granted_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(id)
                .bind(Uuid::from(artifact_id))
                .bind(Uuid::from(release_id))
                .bind(Uuid::from(license_id))
                .bind(Uuid::from(organization_id))
                .bind(user_id.map(Uuid::from))
                .bind(granted_to)
                .bind(e.recorded_at)
                .bind(expires_at)
                .execute(&mut *conn)
                .await?
            }
            DownloadEvent::Served { bytes } => {
                sqlx::query(
                    "UPDATE rm_downloads SET served = served + 1, bytes_served = bytes_served + $2, last_served_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
                .bind(e.recorded_at)
                .execute(&mut *conn)
                .await?
            }
        };
    expect_one(result, e)
}
