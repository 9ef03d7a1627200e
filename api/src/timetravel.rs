//! Time travel, one implementation: the license view "as of" an instant, shared by
//! `GET /v1/licenses/{id}?as_of=` and `ledger-replay state --license` so that the API and the CLI
//! can never disagree. The fold itself lives in [`projections::history`] (snapshot + tail); this
//! module turns it into the public view and lists the events behind it.

use domain::Timestamp;
use domain::ids::LicenseId;
use projections::ProjectionError;
use projections::history;
use sqlx::PgPool;

use crate::views::{EventView, LicenseView};

/// The license `id` as the API shows it at instant `at`; `None` when it did not exist yet.
/// `status` is derived at `at`, from the events recorded at or before `at`.
///
/// # Errors
/// Database errors and events that cannot be decoded.
pub async fn license_view_as_of(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Option<LicenseView>, ProjectionError> {
    let Some(found) = history::license_as_of(pool, id, at).await? else {
        return Ok(None);
    };
    Ok(Some(LicenseView::new(
        id.into(),
        &found.state,
        Some(found.created_at),
        Some(found.updated_at),
        found.version,
        at,
    )))
}

/// The events of license `id` recorded at or before `at`, each linked to the hash before it.
///
/// # Errors
/// Database errors.
pub async fn license_events_as_of(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Vec<EventView>, sqlx::Error> {
    let events = history::stream_as_of(pool, "License", &id.to_string(), at).await?;
    Ok(EventView::chain(&events))
}
