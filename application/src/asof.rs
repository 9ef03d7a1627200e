//! Time travel, one module: a license or an organization "as of" an instant — the state its
//! events recorded at or before that instant fold to — and the events behind it. The API
//! (`GET /v1/licenses/{id}?as_of=`) and `ledger-replay state` both call these functions, so the two
//! can never disagree.
//!
//! A license's fold starts from the latest snapshot (`rm_license_snapshots`, written every
//! [`SNAPSHOT_EVERY`] events by the licenses projector) recorded at or before the instant and
//! applies only the events after it, so a license with thousands of events reads in milliseconds.
//! Snapshots are a shortcut, never a source: the events after a snapshot always come from the log,
//! and a snapshot this build cannot read is ignored in favour of the full fold.
//!
//! An organization is its own stream folded to the instant, plus the licenses that belonged to it
//! then (found from `LicenseIssued` / `LicenseTransferred` payloads, each folded to the instant by
//! the license fold above and kept if it still belonged to the organization).

use cqrs_es::Aggregate;
use domain::event::RecordedEvent;
use domain::ids::{LicenseId, OrganizationId};
use domain::license::{License, LicenseState};
use domain::organization::{Organization, OrganizationEvent};
use domain::{AggregateType, Timestamp};
use projections::ProjectionError;
use projections::engine::decode_license;
use projections::licenses::{SNAPSHOT_EVERY, snapshot_at};
use sqlx::PgPool;
use uuid::Uuid;

use crate::views::{EventView, LicenseView, OrganizationView};

/// Events read by the first query after a snapshot: one more than lie between two snapshots, so
/// that one query reaches the first event past the instant whenever the snapshots are current.
const TAIL_PAGE: i64 = SNAPSHOT_EVERY + 1;

/// A license as of an instant.
#[derive(Clone, Debug)]
pub struct LicenseAsOf {
    pub state: LicenseState,
    /// The stream's version at that instant.
    pub version: i64,
    pub created_at: Timestamp,
    /// When the last event folded was recorded.
    pub updated_at: Timestamp,
    /// Events folded on top of the snapshot (0 when the snapshot was at the version).
    pub events_folded: usize,
}

/// The license `id` as of `at`; `None` when it did not exist yet.
///
/// # Errors
/// Database errors and events that cannot be decoded.
pub async fn license_as_of(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Option<LicenseAsOf>, ProjectionError> {
    let (mut license, mut version) = match snapshot_at(pool, id, at).await? {
        Some((sequence, state)) => (License::Issued(Box::new(state)), sequence),
        None => (License::NotIssued, 0),
    };
    let stream = id.to_string();
    let tail = eventlog::stream_until(
        pool,
        AggregateType::License,
        &stream,
        version,
        at,
        TAIL_PAGE,
    )
    .await?;
    let mut updated_at = None;
    for event in &tail {
        // The one reader of License events: a bad one is named as the projectors name it.
        license.fold(decode_license(event)?.1);
        version = event.sequence;
        updated_at = Some(event.recorded_at);
    }
    let Some(state) = license.state().cloned() else {
        return Ok(None);
    };
    let (created, updated) =
        eventlog::stream_times(pool, AggregateType::License, &stream, version).await?;
    let created_at = created.unwrap_or(at);
    Ok(Some(LicenseAsOf {
        state,
        version,
        created_at,
        updated_at: updated_at.or(updated).unwrap_or(created_at),
        events_folded: tail.len(),
    }))
}

/// Every event of a stream recorded at or before `at`, in order: the events behind a state.
///
/// # Errors
/// Database errors.
pub async fn stream_as_of(
    pool: &PgPool,
    aggregate_type: AggregateType,
    aggregate_id: &str,
    at: Timestamp,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    eventlog::stream_until(pool, aggregate_type, aggregate_id, 0, at, TAIL_PAGE).await
}

/// The license `id` as the API shows it at instant `at`; `None` when it did not exist yet.
/// `status` is derived at `at`, from the events recorded at or before `at`.
///
/// # Errors
/// Database errors and events that cannot be decoded.
pub async fn license_view(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Option<LicenseView>, ProjectionError> {
    Ok(license_as_of(pool, id, at).await?.map(|found| {
        LicenseView::new(
            id.into(),
            &found.state,
            Some(found.created_at),
            Some(found.updated_at),
            found.version,
            at,
        )
    }))
}

/// The events of license `id` recorded at or before `at`, each linked to the hash before it.
///
/// # Errors
/// Database errors.
pub async fn license_events(
    pool: &PgPool,
    id: LicenseId,
    at: Timestamp,
) -> Result<Vec<EventView>, sqlx::Error> {
    let events = stream_as_of(pool, AggregateType::License, &id.to_string(), at).await?;
    Ok(EventView::chain(&events))
}

/// An organization as of an instant, with its licenses then and the events behind it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrganizationAsOf {
    pub at: Timestamp,
    pub organization: OrganizationView,
    pub licenses: Vec<LicenseView>,
    pub events: Vec<EventView>,
}

/// Organization `id` as of `at`; `None` when it did not exist yet.
///
/// # Errors
/// Database errors and events that cannot be decoded.
pub async fn organization(
    pool: &PgPool,
    id: OrganizationId,
    at: Timestamp,
) -> Result<Option<OrganizationAsOf>, ProjectionError> {
    let recorded = stream_as_of(pool, AggregateType::Organization, &id.to_string(), at).await?;
    let mut organization = Organization::default();
    for event in &recorded {
        organization.apply(event.decode::<OrganizationEvent>()?);
    }
    let Some(state) = organization.state() else {
        return Ok(None);
    };
    let view = OrganizationView::new(
        id.into(),
        state,
        recorded.first().map(|e| e.recorded_at),
        recorded.last().map(|e| e.recorded_at),
        recorded.last().map_or(0, |e| e.sequence),
    );
    let mut licenses = Vec::new();
    for candidate in projections::queries::licenses_ever_held(pool, id, at).await? {
        if let Some(view) = license_view(pool, candidate, at).await?
            && view.organization_id == Uuid::from(id)
        {
            licenses.push(view);
        }
    }
    licenses.sort_by_key(|l| l.id);
    Ok(Some(OrganizationAsOf {
        at,
        organization: view,
        licenses,
        events: EventView::chain(&recorded),
    }))
}
