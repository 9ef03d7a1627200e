//! `ledger-replay state`: a license or an organization as of an instant T — the fold of the events
//! recorded at or before T — and the events behind it.
//!
//! Both go through `application::asof`, the very code behind `GET /v1/licenses/{id}?as_of=`, so
//! the CLI and the API cannot disagree. This module only renders what it returns.

use std::fmt::Write as _;

use anyhow::Context;
use application::asof::{self, OrganizationAsOf};
use application::views::{EventView, LicenseView};
use domain::Timestamp;
use domain::ids::{LicenseId, OrganizationId};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// A license as of an instant, with its events.
#[derive(Clone, Debug, Serialize)]
pub struct LicenseState {
    pub at: Timestamp,
    pub license: LicenseView,
    pub events: Vec<EventView>,
}

/// An organization as of an instant, with its events and its licenses then.
pub type OrganizationStateAt = OrganizationAsOf;

/// Why there is no state to show.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// License `id` as of `at`.
///
/// # Errors
/// [`StateError::NotFound`] when it did not exist at `at`; database and decoding errors.
pub async fn license(pool: &PgPool, id: Uuid, at: Timestamp) -> Result<LicenseState, StateError> {
    let license_id = LicenseId::from_uuid(id);
    let view = asof::license_view(pool, license_id, at)
        .await
        .context("folding the license")?
        .ok_or_else(|| {
            StateError::NotFound(format!("license {id} did not exist at {}", at.to_rfc3339()))
        })?;
    let events = asof::license_events(pool, license_id, at)
        .await
        .context("reading the license's events")?;
    Ok(LicenseState {
        at,
        license: view,
        events,
    })
}

/// Organization `id` as of `at`.
///
/// # Errors
/// [`StateError::NotFound`] when it did not exist at `at`; database and decoding errors.
pub async fn organization(
    pool: &PgPool,
    id: Uuid,
    at: Timestamp,
) -> Result<OrganizationStateAt, StateError> {
    asof::organization(pool, OrganizationId::from_uuid(id), at)
        .await
        .context("folding the organization")?
        .ok_or_else(|| {
            StateError::NotFound(format!(
                "organization {id} did not exist at {}",
                at.to_rfc3339()
            ))
        })
}

/// A readable rendering of a license state.
pub fn license_table(s: &LicenseState) -> String {
    let l = &s.license;
    let mut out = String::new();
    let _ = writeln!(out, "License {} as of {}", l.id, s.at.to_rfc3339());
    let rows: Vec<(&str, String)> = vec![
        ("status", l.status.to_owned()),
        ("key prefix", l.key_prefix.clone()),
        ("organization", l.organization_id.to_string()),
        ("product", l.product_id.to_string()),
        ("policy", format!("{} v{}", l.policy_id, l.policy_version)),
        ("model", l.model.to_owned()),
        ("seats", l.seats.to_string()),
        ("features", l.features.join(", ")),
        ("activations", l.activations.len().to_string()),
        ("starts at", l.starts_at.to_rfc3339()),
        ("expires at", opt_time(l.expires_at)),
        ("trial ends at", opt_time(l.trial_ends_at)),
        ("maintenance until", opt_time(l.maintenance_until)),
        (
            "suspension",
            l.suspension_reason.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "revocation",
            match (&l.revocation_reason, l.revocation_category) {
                (Some(reason), Some(category)) => format!("{category}: {reason}"),
                (Some(reason), None) => reason.clone(),
                _ => "-".into(),
            },
        ),
        ("version", l.version.to_string()),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<18} {value}");
    }
    out.push_str(&events_table(&s.events));
    out
}

/// A readable rendering of an organization state.
pub fn organization_table(s: &OrganizationStateAt) -> String {
    let o = &s.organization;
    let mut out = String::new();
    let _ = writeln!(out, "Organization {} as of {}", o.id, s.at.to_rfc3339());
    let _ = writeln!(out, "  {:<18} {}", "name", o.name);
    let _ = writeln!(out, "  {:<18} {}", "kind", o.kind);
    let _ = writeln!(
        out,
        "  {:<18} {}",
        "parent",
        o.parent_id
            .map_or_else(|| "-".to_owned(), |p| p.to_string())
    );
    let _ = writeln!(out, "  {:<18} {}", "closed", o.closed);
    let _ = writeln!(out, "  {:<18} {}", "version", o.version);
    let _ = writeln!(out, "\nLicenses ({}):", s.licenses.len());
    for l in &s.licenses {
        let _ = writeln!(
            out,
            "  {}  {:<10} {:<12} seats {:<4} expires {}",
            l.id,
            l.status,
            l.key_prefix,
            l.seats,
            opt_time(l.expires_at)
        );
    }
    out.push_str(&events_table(&s.events));
    out
}

fn events_table(events: &[EventView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nEvents ({}):", events.len());
    let _ = writeln!(
        out,
        "  {:>4}  {:<32} {:<30} {:<16} hash",
        "seq", "recorded at", "type", "actor"
    );
    for e in events {
        let actor = e
            .metadata
            .get("actor")
            .and_then(|a| a.as_str())
            .unwrap_or("-");
        let _ = writeln!(
            out,
            "  {:>4}  {:<32} {:<30} {:<16} {}",
            e.sequence,
            e.recorded_at.to_rfc3339(),
            format!("{} v{}", e.event_type, e.version),
            truncate(actor, 16),
            &e.hash[..16.min(e.hash.len())]
        );
    }
    out
}

fn opt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
