//! Response bodies. One builder per resource, used by command responses, single reads (folded
//! from the log, also "as of" an instant) and lists (read models), so all three answer the same
//! shape with the same values.

use domain::Timestamp;
use domain::license::LicenseState;
use domain::organization::OrganizationState;
use domain::policy::PolicyState;
use domain::product::ProductState;
use domain::status::{days_remaining, status_at};
use serde::Serialize;
use uuid::Uuid;

/// An organization.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub delegated_partners: Vec<Uuid>,
    pub closed: bool,
    /// The Stripe customers it is (`cus_…`): their subscriptions' licenses are issued here.
    pub stripe_customer_ids: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
    pub version: i64,
}

impl OrganizationView {
    /// From the aggregate's state.
    pub fn new(
        id: Uuid,
        s: &OrganizationState,
        created_at: Option<Timestamp>,
        updated_at: Option<Timestamp>,
        version: i64,
    ) -> Self {
        Self {
            id,
            name: s.name.as_str().to_owned(),
            kind: s.kind.as_str().to_owned(),
            parent_id: s.parent_id.map(Uuid::from),
            delegated_partners: s
                .delegated_partners
                .iter()
                .copied()
                .map(Uuid::from)
                .collect(),
            closed: s.closed,
            stripe_customer_ids: s
                .customers
                .iter()
                .filter(|(gateway, _)| gateway == domain::billing::STRIPE)
                .map(|(_, id)| id.clone())
                .collect(),
            created_at,
            updated_at,
            version,
        }
    }

    /// From a read-model row.
    pub fn from_row(r: projections::queries::OrganizationRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            kind: r.kind,
            parent_id: r.parent_id,
            delegated_partners: r.delegated_partners,
            closed: r.closed,
            stripe_customer_ids: r
                .customers
                .iter()
                .filter_map(|c| {
                    c.strip_prefix(domain::billing::STRIPE)?
                        .strip_prefix(':')
                        .map(str::to_owned)
                })
                .collect(),
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
            version: r.version,
        }
    }
}

/// A product.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub app_id: Uuid,
    pub parent_product_id: Option<Uuid>,
    pub key_prefix: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
    pub version: i64,
}

impl ProductView {
    /// From the aggregate's state.
    pub fn new(
        id: Uuid,
        s: &ProductState,
        created_at: Option<Timestamp>,
        updated_at: Option<Timestamp>,
        version: i64,
    ) -> Self {
        Self {
            id,
            name: s.name.as_str().to_owned(),
            kind: s.kind.as_str().to_owned(),
            app_id: *s.app_id.as_uuid(),
            parent_product_id: s.parent_product_id.map(Uuid::from),
            key_prefix: s.key_prefix.as_str().to_owned(),
            created_at,
            updated_at,
            version,
        }
    }

    /// From a read-model row.
    pub fn from_row(r: projections::queries::ProductRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            kind: r.kind,
            app_id: r.app_id,
            parent_product_id: r.parent_product_id,
            key_prefix: r.key_prefix,
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
            version: r.version,
        }
    }
}

/// A policy at its current version. `version` is the policy's version (1, 2, ...), which licenses
/// record as `policy_version`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyView {
    pub id: Uuid,
    pub product_id: Uuid,
    pub name: String,
    pub version: u32,
    pub retired: bool,
    /// The terms as the policy's events state them (`domain::policy::PolicyTerms`).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = PolicyTermsSchema))]
    pub terms: serde_json::Value,
    /// The Stripe prices it is sold through (`PUT /v1/policies/{id}/stripe-prices`).
    pub stripe_price_ids: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
}

impl PolicyView {
    /// From the aggregate's state.
    pub fn new(
        id: Uuid,
        s: &PolicyState,
        created_at: Option<Timestamp>,
        updated_at: Option<Timestamp>,
    ) -> Self {
        Self {
            id,
            product_id: s.product_id.into(),
            name: s.name.as_str().to_owned(),
            version: s.version,
            retired: s.retired,
            terms: with_channels(serde_json::to_value(&s.terms).unwrap_or_default()),
            stripe_price_ids: s
                .prices
                .get(domain::billing::STRIPE)
                .map(|p| p.iter().map(|id| id.as_str().to_owned()).collect())
                .unwrap_or_default(),
            created_at,
            updated_at,
        }
    }

    /// From a read-model row.
    pub fn from_row(r: projections::queries::PolicyRow) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id,
            name: r.name,
            version: u32::try_from(r.policy_version).unwrap_or_default(),
            retired: r.retired,
            terms: with_channels(r.terms),
            stripe_price_ids: r
                .prices
                .get(domain::billing::STRIPE)
                .and_then(serde_json::Value::as_array)
                .map(|p| {
                    p.iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
        }
    }
}

/// Stored terms leave out the default channels (`[stable]`, see `PolicyTerms::channels`); the
/// view states them always, so a client never has to know that default.
fn with_channels(mut terms: serde_json::Value) -> serde_json::Value {
    if let Some(map) = terms.as_object_mut() {
        map.entry("channels")
            .or_insert_with(|| serde_json::json!(["stable"]));
    }
    terms
}

/// The JSON of `domain::policy::PolicyTerms` (which keeps `domain` free of documentation
/// types): what [`PolicyView`] flattens in. Schemathesis checks every answer against it.
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(as = PolicyTerms)]
#[allow(dead_code)]
pub struct PolicyTermsSchema {
    /// `node_locked`, `floating` or `named_user`.
    #[schema(value_type = String, pattern = "^(node_locked|floating|named_user)$")]
    model: String,
    #[schema(minimum = 1, maximum = 1_000_000)]
    seats: u32,
    /// Days a license runs from issue; `null` is perpetual.
    duration_days: Option<u32>,
    trial_days: u32,
    features: Vec<String>,
    offline_allowed: bool,
    offline_grace_days: u32,
    payment_grace_days: u32,
    maintenance_months: Option<u32>,
    /// Set exactly for floating policies.
    lease_seconds: Option<u32>,
    /// The release channels its licenses see (`stable`, `lts`, `beta`).
    channels: Vec<String>,
}

/// An active installation of a license.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivationView {
    pub installation_id: Uuid,
    pub fingerprint: String,
    pub environment: String,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub activated_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub lease_expires_at: Option<Timestamp>,
}

/// A license as the administration API shows it. `status` is derived at `at` (now, or the
/// `as_of` instant).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseView {
    pub id: Uuid,
    pub key_prefix: String,
    pub product_id: Uuid,
    pub app_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: u32,
    pub organization_id: Uuid,
    pub status: &'static str,
    pub seats: u32,
    pub features: Vec<String>,
    pub activations: Vec<ActivationView>,
    /// The users named on the license (`POST /v1/licenses/{id}/assignments`); for a
    /// `named_user` policy each holds a seat.
    pub assignees: Vec<Uuid>,
    /// The payment gateway's subscription the license follows, if one is linked.
    pub subscription: Option<SubscriptionView>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub starts_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub trial_ends_at: Option<Timestamp>,
    pub trial_days_remaining: Option<u32>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub maintenance_until: Option<Timestamp>,
    pub suspension_reason: Option<String>,
    pub revocation_reason: Option<String>,
    pub revocation_category: Option<&'static str>,
    pub model: &'static str,
    pub source: &'static str,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
    pub version: i64,
    /// The instant the status was derived at.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub as_of: Timestamp,
}

impl LicenseView {
    /// From a row of the licenses' read model, with the status at `at`.
    pub fn from_row(r: &projections::queries::LicenseRow, at: Timestamp) -> Self {
        Self::new(
            r.id,
            &r.state,
            Some(r.created_at),
            Some(r.updated_at),
            r.version,
            at,
        )
    }

    /// From the aggregate's state, with the status at `at`.
    pub fn new(
        id: Uuid,
        s: &LicenseState,
        created_at: Option<Timestamp>,
        updated_at: Option<Timestamp>,
        version: i64,
        at: Timestamp,
    ) -> Self {
        Self {
            id,
            key_prefix: s.key_prefix.clone(),
            product_id: s.product_id.into(),
            app_id: *s.app_id.as_uuid(),
            policy_id: s.policy_id.into(),
            policy_version: s.policy_version,
            organization_id: s.organization_id.into(),
            status: status_at(s, at).as_str(),
            seats: s.seats.get(),
            features: s.features.iter().map(|f| f.as_str().to_owned()).collect(),
            activations: s
                .activations
                .iter()
                .map(|(installation_id, a)| ActivationView {
                    installation_id: (*installation_id).into(),
                    fingerprint: a.fingerprint.as_str().to_owned(),
                    environment: a.environment.as_str().to_owned(),
                    hostname: a.hostname.as_ref().map(|h| h.as_str().to_owned()),
                    platform: a.platform.as_ref().map(|p| p.as_str().to_owned()),
                    activated_at: a.activated_at,
                    lease_expires_at: a.lease_expires_at,
                })
                .collect(),
            assignees: s.assignees.iter().map(|u| (*u).into()).collect(),
            subscription: SubscriptionView::of(s),
            starts_at: s.starts_at,
            expires_at: s.expires_at,
            trial_ends_at: s.trial_ends_at,
            trial_days_remaining: s.trial_ends_at.map(|end| days_remaining(at, end)),
            maintenance_until: s.maintenance_until,
            suspension_reason: s.suspension.as_ref().map(|r| r.as_str().to_owned()),
            revocation_reason: s.revocation.as_ref().map(|r| r.as_str().to_owned()),
            revocation_category: s.revocation_category.map(|c| c.as_str()),
            model: s.terms.model.as_str(),
            source: s.source.as_str(),
            created_at,
            updated_at,
            version,
            as_of: at,
        }
    }
}

/// A license's subscription, as its billing facts give it (`domain::billing::derive`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionView {
    /// `stripe`.
    pub gateway: String,
    pub subscription_id: String,
    pub customer_id: String,
    /// `trialing`, `active`, `past_due`, `paused` or `canceled`.
    pub status: &'static str,
    /// The end of the period paid (or trialed) for.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub current_period_end: Option<Timestamp>,
    /// A scheduled cancellation.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub cancel_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub trial_end: Option<Timestamp>,
}

impl SubscriptionView {
    /// The subscription of `s`, if one is linked.
    pub fn of(s: &LicenseState) -> Option<Self> {
        let (gateway, subscription_id) = s.billing.subscription.clone()?;
        let derived = domain::billing::derive(&s.billing.facts, s.terms.payment_grace_days);
        let status = if s.billing.canceled {
            "canceled"
        } else if s.billing.paused {
            "paused"
        } else if s.billing.payment_grace_until.is_some() {
            "past_due"
        } else if s.billing.trialing {
            "trialing"
        } else {
            "active"
        };
        Some(Self {
            gateway,
            subscription_id,
            customer_id: derived
                .as_ref()
                .map(|d| d.link.2.clone())
                .unwrap_or_default(),
            status,
            current_period_end: derived.as_ref().and_then(|d| d.paid_until),
            cancel_at: s.billing.cancel_at,
            trial_end: s.trial_ends_at.filter(|_| s.billing.trialing),
        })
    }
}

/// A license just issued or re-keyed: the view and the key, shown this once.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseWithKey {
    #[serde(flatten)]
    pub license: LicenseView,
    /// The license key. `null` when this response replays an earlier request (same
    /// `Idempotency-Key`): the key was shown to that request and is not stored anywhere.
    pub key: Option<String>,
}

/// One event of a stream, as `GET /v1/licenses/{id}/events` lists it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventView {
    pub position: i64,
    pub sequence: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    /// The event's payload, as stored (its shape is the event type's, `docs/api.md`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub recorded_at: Timestamp,
    /// sha256(previous_hash || canonical event), hex.
    pub hash: String,
    /// The hash of the event before it in the stream (64 zeros for the first), hex.
    pub previous_hash: String,
}

impl EventView {
    /// Views of a stream's events, each linked to the one before.
    pub fn chain(events: &[domain::event::RecordedEvent]) -> Vec<Self> {
        Self::chain_after(&domain::integrity::GENESIS_HASH, events)
    }

    /// Views of consecutive events of a stream, oldest first, the first one following the event
    /// whose hash is `previous` (a page of a stream).
    pub fn chain_after(previous: &[u8], events: &[domain::event::RecordedEvent]) -> Vec<Self> {
        let mut previous = hex::encode(previous);
        events
            .iter()
            .map(|e| {
                let hash = hex::encode(&e.hash);
                Self::linked(e, std::mem::replace(&mut previous, hash))
            })
            .collect()
    }

    /// The view of `e`, whose predecessor in its stream has the hash `previous_hash` (hex).
    pub fn linked(e: &domain::event::RecordedEvent, previous_hash: String) -> Self {
        Self {
            position: e.global_position,
            sequence: e.sequence,
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            version: e.event_version.clone(),
            data: e.payload.clone(),
            metadata: e.metadata.clone(),
            recorded_at: e.recorded_at,
            hash: hex::encode(&e.hash),
            previous_hash,
        }
    }
}

/// A page of a list.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    #[serde(flatten)]
    pub items: T,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a use of a license is: the device and when it was activated.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationUse {
    pub fingerprint: String,
    pub environment: &'static str,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub activated_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub lease_expires_at: Option<Timestamp>,
}

impl InstallationUse {
    /// The installation `id` of license state `s`, when it is active there.
    pub fn of(s: &LicenseState, id: domain::ids::InstallationId) -> Option<Self> {
        let a = s.activations.get(&id)?;
        Some(Self {
            fingerprint: a.fingerprint.as_str().to_owned(),
            environment: a.environment.as_str(),
            hostname: a.hostname.as_ref().map(|h| h.as_str().to_owned()),
            platform: a.platform.as_ref().map(|p| p.as_str().to_owned()),
            activated_at: a.activated_at,
            lease_expires_at: a.lease_expires_at,
        })
    }
}

/// An installation (activation) as client applications see it (`POST /v1/activations`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationView {
    pub installation_id: Uuid,
    pub license_id: Uuid,
    #[serde(flatten)]
    pub details: InstallationUse,
}

/// An installation just deactivated: what it was (when the license still showed it) and when it
/// ended.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeactivationView {
    pub installation_id: Uuid,
    pub license_id: Uuid,
    #[serde(flatten)]
    pub details: Option<InstallationUse>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub deactivated_at: Option<Timestamp>,
}

/// A floating installation's lease after a heartbeat.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseView {
    pub installation_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub lease_expires_at: Option<Timestamp>,
}

/// An artifact: one immutable file of a release (ADR 0023).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactView {
    pub id: Uuid,
    pub release_id: Uuid,
    /// The release's product and version, which the signature binds.
    pub product_id: Uuid,
    pub version: String,
    pub filename: String,
    /// `windows`, `linux`, `macos` or `any`.
    pub platform: String,
    /// `x86_64`, `arm64` or `any`.
    pub arch: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub sha256: String,
    /// ES256 signature (`r || s`, base64url) by key `kid` of the JWKS
    /// (`/.well-known/jwks.json`) over the artifact's statement: its product, version, file
    /// name, platform, architecture and digest (`docs/client-protocol.md`, "Artifacts").
    pub signature: String,
    pub kid: String,
}

impl ArtifactView {
    /// From the release's state.
    pub fn new(
        release_id: Uuid,
        release: &domain::release::ReleaseState,
        a: &domain::release::Artifact,
    ) -> Self {
        Self {
            id: a.artifact_id.into(),
            release_id,
            product_id: release.product_id.into(),
            version: release.version.to_string(),
            filename: a.filename.as_str().to_owned(),
            platform: a.platform.as_str().to_owned(),
            arch: a.arch.as_str().to_owned(),
            size: a.size,
            sha256: a.sha256.to_string(),
            signature: a.signature.clone(),
            kid: a.kid.clone(),
        }
    }

    /// From a read-model row of a release of `product_id` at `version`.
    pub fn from_row(r: projections::queries::ArtifactRow, product_id: Uuid, version: &str) -> Self {
        Self {
            id: r.id,
            release_id: r.release_id,
            product_id,
            version: version.to_owned(),
            filename: r.filename,
            platform: r.platform,
            arch: r.arch,
            size: u64::try_from(r.size).unwrap_or_default(),
            sha256: r.sha256,
            signature: r.signature,
            kid: r.kid,
        }
    }
}

/// A release: a version of a product on a channel, with its artifacts.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseView {
    pub id: Uuid,
    pub product_id: Uuid,
    /// SemVer 2.0, as written.
    pub version: String,
    /// `stable`, `lts` or `beta`.
    pub channel: String,
    /// `draft`, `published` or `yanked`.
    pub status: String,
    pub notes: Option<String>,
    /// Features a license must hold, every one, to see the release.
    pub entitlements: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub published_at: Option<Timestamp>,
    /// Why it was yanked, once it is.
    pub yank_reason: Option<String>,
    /// In upload order.
    pub artifacts: Vec<ArtifactView>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub created_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub updated_at: Option<Timestamp>,
}

impl ReleaseView {
    /// From the aggregate's state.
    pub fn new(
        id: Uuid,
        s: &domain::release::ReleaseState,
        created_at: Option<Timestamp>,
        updated_at: Option<Timestamp>,
    ) -> Self {
        Self {
            id,
            product_id: s.product_id.into(),
            version: s.version.to_string(),
            channel: s.channel.as_str().to_owned(),
            status: s.status().as_str().to_owned(),
            notes: s.notes.as_ref().map(|n| n.as_str().to_owned()),
            entitlements: s
                .entitlements
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect(),
            published_at: s.published_at,
            yank_reason: s.yanked.as_ref().map(|r| r.as_str().to_owned()),
            artifacts: s
                .artifacts
                .iter()
                .map(|a| ArtifactView::new(id, s, a))
                .collect(),
            created_at,
            updated_at,
        }
    }

    /// From a read-model row.
    pub fn from_row(r: projections::queries::ReleaseRow) -> Self {
        let artifacts = r
            .artifacts
            .into_iter()
            .map(|a| ArtifactView::from_row(a, r.product_id, &r.release_version))
            .collect();
        Self {
            id: r.id,
            product_id: r.product_id,
            version: r.release_version,
            channel: r.channel,
            status: r.status,
            notes: r.notes,
            entitlements: r.entitlements,
            published_at: r.published_at,
            yank_reason: r.yanked_reason,
            artifacts,
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
        }
    }
}

/// A declared upgrade path.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradePathView {
    /// The SemVer requirement of the versions it starts from, in normal form (`=7.2`).
    pub from: String,
    pub to: String,
    /// The versions to install on the way, in order.
    pub via: Vec<String>,
}

/// A product's declared upgrade paths.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradePathsView {
    pub product_id: Uuid,
    pub upgrade_paths: Vec<UpgradePathView>,
}

impl UpgradePathsView {
    /// From the product's state.
    pub fn new(product_id: Uuid, paths: &[domain::release::UpgradePath]) -> Self {
        Self {
            product_id,
            upgrade_paths: paths
                .iter()
                .map(|p| UpgradePathView {
                    from: p.from.to_string(),
                    to: p.to.to_string(),
                    via: p.via.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}

/// A granted download link (`POST /v1/artifacts/{id}/download-links`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadLinkView {
    /// The grant (`DownloadGranted`), as the audit trail names it.
    pub download_id: Uuid,
    /// `GET` it, without credentials, before `expires_at`; `Range` requests resume it.
    pub url: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    pub license_id: Uuid,
    pub artifact: ArtifactView,
}

impl DownloadLinkView {
    /// A link to `artifact` under `base` (the server's public URL).
    pub fn new(
        base: &str,
        id: domain::ids::DownloadId,
        token: &str,
        grant: &domain::download::Grant,
        release: &domain::release::ReleaseState,
        artifact: &domain::release::Artifact,
    ) -> Self {
        Self {
            download_id: id.into(),
            url: format!("{base}/v1/downloads/{token}"),
            expires_at: grant.expires_at,
            license_id: grant.license_id.into(),
            artifact: ArtifactView::new(grant.release_id.into(), release, artifact),
        }
    }
}

/// A download link and the transfers through it (`GET /v1/releases/{id}/downloads`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadView {
    pub id: Uuid,
    pub artifact_id: Uuid,
    pub release_id: Uuid,
    pub license_id: Uuid,
    /// The license's organization when the link was granted.
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    /// Who was granted the link (`user:<id>`, `api_token:<id>`, `client`, ...).
    pub granted_to: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub granted_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// Completed transfers through the link (a resumed download counts each range).
    pub served: u32,
    pub bytes_served: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_served_at: Option<Timestamp>,
}

impl DownloadView {
    /// From a read-model row.
    pub fn from_row(r: projections::queries::DownloadRow) -> Self {
        Self {
            id: r.id,
            artifact_id: r.artifact_id,
            release_id: r.release_id,
            license_id: r.license_id,
            organization_id: r.organization_id,
            user_id: r.user_id,
            granted_to: r.granted_to,
            granted_at: r.granted_at,
            expires_at: r.expires_at,
            served: u32::try_from(r.served).unwrap_or_default(),
            bytes_served: u64::try_from(r.bytes_served).unwrap_or_default(),
            last_served_at: r.last_served_at,
        }
    }
}

/// Download counts of one group (an organization of a release, or a release of an
/// organization).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadCountView {
    /// The organization (counts of a release) or the release (counts of an organization).
    pub id: Uuid,
    /// Links granted.
    pub granted: u64,
    /// Completed transfers.
    pub served: u64,
    pub bytes: u64,
}

/// Download counts in all and by group (`GET /v1/releases/{id}/download-counts`,
/// `GET /v1/organizations/{id}/download-counts`). From the read model, which may trail the log
/// by the projector's lag.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DownloadCountsView {
    /// The release or organization counted.
    pub id: Uuid,
    pub granted: u64,
    pub served: u64,
    pub bytes: u64,
    /// By organization (of a release) or by release (of an organization), most served first.
    pub groups: Vec<DownloadCountView>,
}

impl DownloadCountsView {
    /// The totals of `rows`.
    pub fn new(id: Uuid, rows: Vec<projections::queries::DownloadCount>) -> Self {
        let groups: Vec<DownloadCountView> = rows
            .into_iter()
            .map(|r| DownloadCountView {
                id: r.key,
                granted: u64::try_from(r.granted).unwrap_or_default(),
                served: u64::try_from(r.served).unwrap_or_default(),
                bytes: u64::try_from(r.bytes).unwrap_or_default(),
            })
            .collect();
        Self {
            id,
            granted: groups.iter().map(|g| g.granted).sum(),
            served: groups.iter().map(|g| g.served).sum(),
            bytes: groups.iter().map(|g| g.bytes).sum(),
            groups,
        }
    }
}

/// The answer of `POST /v1/updates`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateView {
    pub update_available: bool,
    /// The release to install now (the first of `path`), with download links to its files for
    /// the platform. Installing it and asking again gives the one after, until `latest`.
    pub next: Option<LatestView>,
    /// The newest release the license sees with a file for the platform. Its files are listed,
    /// with links, only when it is `next`; on a declared upgrade path through other versions
    /// first, `artifacts` is empty until it is.
    pub latest: Option<LatestView>,
    /// The versions to install, in order, ending with `latest` (declared upgrade paths
    /// followed: "7.2 to 7.6 only via 7.4" gives `["7.4.0", "7.6.0"]`).
    pub path: Vec<String>,
}

/// A release of an update, with its files for the platform.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatestView {
    pub version: String,
    pub channel: String,
    pub notes: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub published_at: Option<Timestamp>,
    pub artifacts: Vec<UpdateArtifactView>,
}

impl LatestView {
    /// A release named without its files (the newest, when it is not the next step).
    pub fn unlinked(row: &projections::queries::ReleaseRow) -> Self {
        Self {
            version: row.release_version.clone(),
            channel: row.channel.clone(),
            notes: row.notes.clone(),
            published_at: row.published_at,
            artifacts: Vec::new(),
        }
    }
}

/// A file of an update: the artifact, and a download link granted for it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateArtifactView {
    #[serde(flatten)]
    pub artifact: ArtifactView,
    /// `GET` it without credentials before `expires_at`.
    pub url: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// A command's answer: the resource as the command left it, and whether this answer replays an
/// earlier request with the same `Idempotency-Key`.
#[derive(Clone, Debug)]
pub struct Written<T> {
    pub view: T,
    pub replayed: bool,
}
