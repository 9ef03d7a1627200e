//! The License aggregate: the *right* to use a product — who, what, until when, how many seats,
//! which features — and its lifecycle (issue, suspend, reinstate, renew, transfer, revoke,
//! entitlements, seats, key rotation, maintenance).
//!
//! Status is never stored: [`crate::status::status_at`] derives it from the state and the clock.
//! The *use* of the right (installations) lives in the same state so seat limits are decided
//! against one consistent stream.

use std::collections::BTreeMap;

use chrono::{Duration, Months};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{AppId, InstallationId, LicenseId, OrganizationId, PolicyId, ProductId};
use crate::keys::KeyHash;
use crate::organization::OrganizationRef;
use crate::policy::{PolicyRef, PolicyTerms};
use crate::product::ProductRef;
use crate::values::{Environment, FeatureSet, LicenseSource, Reason, SeatCount};

/// A command to a license.
#[derive(Clone, Debug, PartialEq)]
pub struct LicenseCommand {
    pub license_id: LicenseId,
    /// The decision time, stamped by the write side.
    pub at: Timestamp,
    pub action: LicenseAction,
}

/// What to do to the license.
#[derive(Clone, Debug, PartialEq)]
pub enum LicenseAction {
    Issue(Box<IssueLicense>),
    Suspend {
        reason: Reason,
    },
    Reinstate,
    Renew {
        expires_at: Timestamp,
    },
    Transfer {
        organization: OrganizationRef,
    },
    Revoke {
        reason: Reason,
    },
    ChangeEntitlements {
        features: FeatureSet,
    },
    ChangeSeats {
        seats: SeatCount,
    },
    RotateKey {
        key_hash: KeyHash,
        key_prefix: String,
    },
    ExtendMaintenance {
        until: Timestamp,
    },
}

/// Everything issuing a license needs, looked up by the write side.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueLicense {
    pub policy: PolicyRef,
    /// The policy's product.
    pub product: ProductRef,
    pub organization: OrganizationRef,
    /// Keyed hash of the freshly generated key.
    pub key_hash: KeyHash,
    /// Support prefix of the key (`ACME-7K3Q`).
    pub key_prefix: String,
    /// Overrides the policy's seats.
    pub seats: Option<SeatCount>,
    /// Overrides the policy's features.
    pub features: Option<FeatureSet>,
    /// Overrides the expiry the policy's duration gives.
    pub expires_at: Option<Timestamp>,
    pub source: LicenseSource,
}

/// Events of a license's stream. The serde names are the stored `event_type`s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LicenseEvent {
    #[serde(rename = "LicenseIssued")]
    Issued(Box<LicenseIssued>),
    #[serde(rename = "LicenseSuspended")]
    Suspended { reason: Reason },
    #[serde(rename = "LicenseReinstated")]
    Reinstated {},
    #[serde(rename = "LicenseRenewed")]
    Renewed { expires_at: Timestamp },
    #[serde(rename = "LicenseTransferred")]
    Transferred { organization_id: OrganizationId },
    #[serde(rename = "EntitlementsChanged")]
    EntitlementsChanged { features: FeatureSet },
    #[serde(rename = "SeatsChanged")]
    SeatsChanged { seats: SeatCount },
    #[serde(rename = "MaintenanceExtended")]
    MaintenanceExtended { until: Timestamp },
    #[serde(rename = "LicenseKeyRotated")]
    KeyRotated {
        key_hash: KeyHash,
        key_prefix: String,
    },
    #[serde(rename = "LicenseRevoked")]
    Revoked { reason: Reason },
}

/// The payload of `LicenseIssued`: the license's terms at issue, self-contained (the policy terms
/// are copied so the license reads the same whatever happens to the policy later).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseIssued {
    pub product_id: ProductId,
    pub app_id: AppId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub organization_id: OrganizationId,
    pub key_hash: KeyHash,
    pub key_prefix: String,
    pub seats: SeatCount,
    pub features: FeatureSet,
    pub starts_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub maintenance_until: Option<Timestamp>,
    pub source: LicenseSource,
    pub terms: PolicyTerms,
}

impl DomainEvent for LicenseEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Issued(_) => "LicenseIssued",
            Self::Suspended { .. } => "LicenseSuspended",
            Self::Reinstated {} => "LicenseReinstated",
            Self::Renewed { .. } => "LicenseRenewed",
            Self::Transferred { .. } => "LicenseTransferred",
            Self::EntitlementsChanged { .. } => "EntitlementsChanged",
            Self::SeatsChanged { .. } => "SeatsChanged",
            Self::MaintenanceExtended { .. } => "MaintenanceExtended",
            Self::KeyRotated { .. } => "LicenseKeyRotated",
            Self::Revoked { .. } => "LicenseRevoked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for LicenseEvent {
    const AGGREGATE_TYPE: &'static str = "License";
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("LicenseIssued", "1"),
        ("LicenseSuspended", "1"),
        ("LicenseReinstated", "1"),
        ("LicenseRenewed", "1"),
        ("LicenseTransferred", "1"),
        ("EntitlementsChanged", "1"),
        ("SeatsChanged", "1"),
        ("MaintenanceExtended", "1"),
        ("LicenseKeyRotated", "1"),
        ("LicenseRevoked", "1"),
    ];

    /// A key hash opens exactly one license, forever (a rotated-away key is never reused).
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        let key_hash = match self {
            Self::Issued(issued) => &issued.key_hash,
            Self::KeyRotated { key_hash, .. } => key_hash,
            _ => return Vec::new(),
        };
        vec![UniqueClaim {
            scope: "license_key",
            value: key_hash.to_hex(),
        }]
    }
}

/// One active installation of a license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub fingerprint: String,
    pub environment: Environment,
    pub hostname: Option<String>,
    pub platform: Option<String>,
    pub activated_at: Timestamp,
}

/// The state of an issued license. Stored as JSON in the license read model, so fields added
/// later carry `#[serde(default)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenseState {
    pub product_id: ProductId,
    pub app_id: AppId,
    pub policy_id: PolicyId,
    pub policy_version: u32,
    pub organization_id: OrganizationId,
    pub key_hash: KeyHash,
    pub key_prefix: String,
    pub seats: SeatCount,
    pub features: FeatureSet,
    pub terms: PolicyTerms,
    pub source: LicenseSource,
    pub starts_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub trial_ends_at: Option<Timestamp>,
    pub maintenance_until: Option<Timestamp>,
    /// Why it is suspended, while it is.
    pub suspension: Option<Reason>,
    /// Why it was revoked; revocation is final.
    pub revocation: Option<Reason>,
    /// Active installations by id.
    #[serde(default)]
    pub activations: BTreeMap<InstallationId, Activation>,
}

impl LicenseState {
    /// Number of active installations (what seats limit).
    pub fn active_installations(&self) -> u32 {
        u32::try_from(self.activations.len()).unwrap_or(u32::MAX)
    }
}

/// The License aggregate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum License {
    /// No `LicenseIssued` yet.
    #[default]
    NotIssued,
    Issued(Box<LicenseState>),
}

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

impl License {
    /// The state, when issued.
    pub fn state(&self) -> Option<&LicenseState> {
        match self {
            Self::NotIssued => None,
            Self::Issued(s) => Some(s),
        }
    }

    /// Decides a command: the events it causes (none when it changes nothing), or why it is
    /// refused.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &LicenseCommand) -> Result<Vec<LicenseEvent>, DomainError> {
        let id = cmd.license_id;
        let state = match (self, &cmd.action) {
            (Self::NotIssued, LicenseAction::Issue(issue)) => return Self::issue(cmd.at, issue),
            (Self::Issued(_), LicenseAction::Issue(_)) => {
                return Err(DomainError::LicenseAlreadyIssued(id));
            }
            (Self::NotIssued, _) => return Err(DomainError::LicenseNotFound(id)),
            (Self::Issued(state), _) => state,
        };
        // Revocation is final: nothing changes a revoked license.
        if state.revocation.is_some() {
            return Err(DomainError::LicenseRevoked(id));
        }
        let events = match &cmd.action {
            LicenseAction::Issue(_) => unreachable!("handled above"),
            LicenseAction::Suspend { reason } => {
                if state.suspension.is_some() {
                    return Err(DomainError::LicenseAlreadySuspended(id));
                }
                vec![LicenseEvent::Suspended {
                    reason: reason.clone(),
                }]
            }
            LicenseAction::Reinstate => {
                if state.suspension.is_none() {
                    return Err(DomainError::LicenseNotSuspended(id));
                }
                vec![LicenseEvent::Reinstated {}]
            }
            LicenseAction::Renew { expires_at } => {
                let Some(current) = state.expires_at else {
                    return Err(DomainError::LicensePerpetual(id));
                };
                if *expires_at <= cmd.at {
                    return Err(DomainError::InvalidExpiry(
                        "expires_at must be in the future".into(),
                    ));
                }
                if *expires_at <= current {
                    return Err(DomainError::InvalidExpiry(format!(
                        "a renewal must extend the license beyond its current expiry {}",
                        current.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )));
                }
                vec![LicenseEvent::Renewed {
                    expires_at: *expires_at,
                }]
            }
            LicenseAction::Transfer { organization } => {
                organization.require_open()?;
                if organization.id == state.organization_id {
                    return Err(DomainError::SameOrganization(organization.id));
                }
                vec![LicenseEvent::Transferred {
                    organization_id: organization.id,
                }]
            }
            LicenseAction::Revoke { reason } => vec![LicenseEvent::Revoked {
                reason: reason.clone(),
            }],
            LicenseAction::ChangeEntitlements { features } => {
                if *features == state.features {
                    vec![]
                } else {
                    vec![LicenseEvent::EntitlementsChanged {
                        features: features.clone(),
                    }]
                }
            }
            LicenseAction::ChangeSeats { seats } => {
                let active = state.active_installations();
                if seats.get() < active {
                    return Err(DomainError::SeatsBelowActivations {
                        seats: seats.get(),
                        active,
                    });
                }
                if *seats == state.seats {
                    vec![]
                } else {
                    vec![LicenseEvent::SeatsChanged { seats: *seats }]
                }
            }
            LicenseAction::RotateKey {
                key_hash,
                key_prefix,
            } => vec![LicenseEvent::KeyRotated {
                key_hash: *key_hash,
                key_prefix: key_prefix.clone(),
            }],
            LicenseAction::ExtendMaintenance { until } => {
                if *until <= cmd.at || state.maintenance_until.is_some_and(|m| *until <= m) {
                    return Err(DomainError::InvalidExpiry(
                        "maintenance can only be extended to a later date".into(),
                    ));
                }
                vec![LicenseEvent::MaintenanceExtended { until: *until }]
            }
        };
        Ok(events)
    }

    fn issue(at: Timestamp, issue: &IssueLicense) -> Result<Vec<LicenseEvent>, DomainError> {
        let policy = issue.policy.require_current()?;
        let product = issue.product.require()?;
        if issue.product.id != policy.product_id {
            return Err(DomainError::ProductNotFound(policy.product_id));
        }
        issue.organization.require_open()?;
        let terms = &policy.terms;
        let expires_at = match issue.expires_at {
            Some(explicit) if explicit <= at => {
                return Err(DomainError::InvalidExpiry(
                    "expires_at must be in the future".into(),
                ));
            }
            Some(explicit) => Some(explicit),
            None => terms.duration_days.map(|d| at + days(d)),
        };
        let trial_ends_at = (terms.trial_days > 0).then(|| at + days(terms.trial_days));
        let maintenance_until = terms
            .maintenance_months
            .filter(|m| *m > 0)
            .and_then(|m| at.checked_add_months(Months::new(m)));
        Ok(vec![LicenseEvent::Issued(Box::new(LicenseIssued {
            product_id: issue.product.id,
            app_id: product.app_id,
            policy_id: issue.policy.id,
            policy_version: policy.version,
            organization_id: issue.organization.id,
            key_hash: issue.key_hash,
            key_prefix: issue.key_prefix.clone(),
            seats: issue.seats.unwrap_or(terms.seats),
            features: issue
                .features
                .clone()
                .unwrap_or_else(|| terms.features.clone()),
            starts_at: at,
            expires_at,
            trial_ends_at,
            maintenance_until,
            source: issue.source,
            terms: terms.clone(),
        }))])
    }

    /// Applies an event to the state. Total: every stored sequence of events folds.
    pub fn fold(&mut self, event: LicenseEvent) {
        if let LicenseEvent::Issued(issued) = event {
            let LicenseIssued {
                product_id,
                app_id,
                policy_id,
                policy_version,
                organization_id,
                key_hash,
                key_prefix,
                seats,
                features,
                starts_at,
                expires_at,
                trial_ends_at,
                maintenance_until,
                source,
                terms,
            } = *issued;
            *self = Self::Issued(Box::new(LicenseState {
                product_id,
                app_id,
                policy_id,
                policy_version,
                organization_id,
                key_hash,
                key_prefix,
                seats,
                features,
                terms,
                source,
                starts_at,
                expires_at,
                trial_ends_at,
                maintenance_until,
                suspension: None,
                revocation: None,
                activations: BTreeMap::new(),
            }));
            return;
        }
        let Self::Issued(state) = self else {
            return; // sequence 1 of a license stream is always LicenseIssued
        };
        match event {
            LicenseEvent::Issued(_) => {}
            LicenseEvent::Suspended { reason } => state.suspension = Some(reason),
            LicenseEvent::Reinstated {} => state.suspension = None,
            LicenseEvent::Renewed { expires_at } => state.expires_at = Some(expires_at),
            LicenseEvent::Transferred { organization_id } => {
                state.organization_id = organization_id;
            }
            LicenseEvent::EntitlementsChanged { features } => state.features = features,
            LicenseEvent::SeatsChanged { seats } => state.seats = seats,
            LicenseEvent::MaintenanceExtended { until } => state.maintenance_until = Some(until),
            LicenseEvent::KeyRotated {
                key_hash,
                key_prefix,
            } => {
                state.key_hash = key_hash;
                state.key_prefix = key_prefix;
            }
            LicenseEvent::Revoked { reason } => state.revocation = Some(reason),
        }
    }
}

impl Aggregate for License {
    const TYPE: &'static str = "License";
    type Command = LicenseCommand;
    type Event = LicenseEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::organization::OrganizationFacts;
    use crate::policy::PolicyFacts;
    use crate::product::ProductFacts;
    use crate::values::{KeyPrefix, LicenseModel, Name, OrganizationKind, ProductKind};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type Fw = TestFramework<License>;

    pub(crate) fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    pub(crate) fn now() -> Timestamp {
        t("2026-03-01T10:00:00Z")
    }
    pub(crate) fn lid() -> LicenseId {
        LicenseId::from_uuid(Uuid::from_u128(1))
    }
    fn org(n: u128) -> OrganizationId {
        OrganizationId::from_uuid(Uuid::from_u128(n))
    }
    pub(crate) fn terms() -> PolicyTerms {
        PolicyTerms::new(crate::policy::tests::input()).unwrap()
    }
    fn issue_with(terms: PolicyTerms, expires_at: Option<Timestamp>) -> IssueLicense {
        let product_id = ProductId::from_uuid(Uuid::from_u128(20));
        IssueLicense {
            policy: PolicyRef {
                id: PolicyId::from_uuid(Uuid::from_u128(30)),
                facts: Some(PolicyFacts {
                    product_id,
                    version: 2,
                    terms,
                    retired: false,
                }),
            },
            product: ProductRef {
                id: product_id,
                facts: Some(ProductFacts {
                    name: Name::parse("Studio").unwrap(),
                    kind: ProductKind::Application,
                    app_id: AppId::parse(Uuid::from_u128(21)).unwrap(),
                    key_prefix: KeyPrefix::parse("ST").unwrap(),
                }),
            },
            organization: open_org(10),
            key_hash: KeyHash::from_bytes([7; 32]),
            key_prefix: "ST-ABCD".into(),
            seats: None,
            features: None,
            expires_at,
            source: LicenseSource::Admin,
        }
    }
    fn open_org(n: u128) -> OrganizationRef {
        OrganizationRef {
            id: org(n),
            facts: Some(OrganizationFacts {
                kind: OrganizationKind::Customer,
                closed: false,
                lineage: vec![org(n)],
            }),
        }
    }
    fn cmd(action: LicenseAction) -> LicenseCommand {
        LicenseCommand {
            license_id: lid(),
            at: now(),
            action,
        }
    }
    /// The event issuing the standard test license (365 days, 3 seats, feature `pro`).
    pub(crate) fn issued() -> LicenseEvent {
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                terms(),
                None,
            )))))
            .unwrap();
        events.into_iter().next().unwrap()
    }
    fn reason(s: &str) -> Reason {
        Reason::parse(s).unwrap()
    }
    fn suspended() -> LicenseEvent {
        LicenseEvent::Suspended {
            reason: reason("chargeback"),
        }
    }
    fn revoked() -> LicenseEvent {
        LicenseEvent::Revoked {
            reason: reason("fraud"),
        }
    }

    #[test]
    fn issuing_copies_the_policy_terms_and_derives_dates() {
        let LicenseEvent::Issued(issued) = issued() else {
            panic!("expected LicenseIssued")
        };
        assert_eq!(issued.policy_version, 2);
        assert_eq!(issued.seats.get(), 3);
        assert_eq!(issued.starts_at, now());
        assert_eq!(issued.expires_at, Some(now() + Duration::days(365)));
        assert_eq!(issued.trial_ends_at, None);
        assert_eq!(issued.maintenance_until, Some(t("2027-03-01T10:00:00Z")));
        assert_eq!(issued.app_id, AppId::parse(Uuid::from_u128(21)).unwrap());
    }

    #[test]
    fn issuing_honours_overrides_and_trials() {
        let mut trial_terms = terms();
        trial_terms.trial_days = 14;
        trial_terms.duration_days = None;
        let mut issue = issue_with(trial_terms, Some(t("2030-01-01T00:00:00Z")));
        issue.seats = Some(SeatCount::new(9).unwrap());
        issue.features = Some(FeatureSet::parse(&["a", "b"]).unwrap());
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue))))
            .unwrap();
        let LicenseEvent::Issued(issued) = &events[0] else {
            panic!()
        };
        assert_eq!(issued.seats.get(), 9);
        assert_eq!(issued.features, FeatureSet::parse(&["a", "b"]).unwrap());
        assert_eq!(issued.expires_at, Some(t("2030-01-01T00:00:00Z")));
        assert_eq!(issued.trial_ends_at, Some(now() + Duration::days(14)));
    }

    #[test]
    fn issuing_is_refused_for_missing_or_unusable_references() {
        let mut issue = issue_with(terms(), None);
        issue.policy.facts = None;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::PolicyNotFound(PolicyId::from_uuid(
                Uuid::from_u128(30),
            )));

        let mut issue = issue_with(terms(), None);
        issue.policy.facts.as_mut().unwrap().retired = true;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::PolicyRetired(PolicyId::from_uuid(
                Uuid::from_u128(30),
            )));

        let mut issue = issue_with(terms(), None);
        issue.organization.facts = None;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::OrganizationNotFound(org(10)));

        let mut issue = issue_with(terms(), None);
        issue.organization.facts.as_mut().unwrap().closed = true;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .then_expect_error(DomainError::OrganizationClosed(org(10)));

        let issue = issue_with(terms(), Some(now()));
        let err = Fw::with(())
            .given_no_previous_events()
            .when(cmd(LicenseAction::Issue(Box::new(issue))))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn issuing_twice_is_a_conflict() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Issue(Box::new(issue_with(
                terms(),
                None,
            )))))
            .then_expect_error(DomainError::LicenseAlreadyIssued(lid()));
    }

    #[test]
    fn every_lifecycle_command_to_an_unissued_license_is_not_found() {
        for action in lifecycle_actions() {
            Fw::with(())
                .given_no_previous_events()
                .when(cmd(action))
                .then_expect_error(DomainError::LicenseNotFound(lid()));
        }
    }

    #[test]
    fn every_lifecycle_command_to_a_revoked_license_is_refused() {
        for action in lifecycle_actions() {
            Fw::with(())
                .given(vec![issued(), revoked()])
                .when(cmd(action))
                .then_expect_error(DomainError::LicenseRevoked(lid()));
        }
        // Also when it was suspended before being revoked.
        Fw::with(())
            .given(vec![issued(), suspended(), revoked()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseRevoked(lid()));
    }

    fn lifecycle_actions() -> Vec<LicenseAction> {
        vec![
            LicenseAction::Suspend {
                reason: reason("x"),
            },
            LicenseAction::Reinstate,
            LicenseAction::Renew {
                expires_at: t("2030-01-01T00:00:00Z"),
            },
            LicenseAction::Transfer {
                organization: open_org(11),
            },
            LicenseAction::Revoke {
                reason: reason("x"),
            },
            LicenseAction::ChangeEntitlements {
                features: FeatureSet::default(),
            },
            LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            },
            LicenseAction::RotateKey {
                key_hash: KeyHash::from_bytes([8; 32]),
                key_prefix: "ST-WXYZ".into(),
            },
            LicenseAction::ExtendMaintenance {
                until: t("2030-01-01T00:00:00Z"),
            },
        ]
    }

    #[test]
    fn suspending_an_active_license_records_the_reason() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Suspend {
                reason: reason("chargeback"),
            }))
            .then_expect_events(vec![suspended()]);
    }

    #[test]
    fn suspending_a_suspended_license_is_refused() {
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Suspend {
                reason: reason("again"),
            }))
            .then_expect_error(DomainError::LicenseAlreadySuspended(lid()));
    }

    #[test]
    fn reinstating_needs_a_suspension() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseNotSuspended(lid()));
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_events(vec![LicenseEvent::Reinstated {}]);
        Fw::with(())
            .given(vec![issued(), suspended(), LicenseEvent::Reinstated {}])
            .when(cmd(LicenseAction::Reinstate))
            .then_expect_error(DomainError::LicenseNotSuspended(lid()));
    }

    #[test]
    fn renewing_must_extend_into_the_future() {
        let later = t("2028-01-01T00:00:00Z");
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew { expires_at: later }))
            .then_expect_events(vec![LicenseEvent::Renewed { expires_at: later }]);
        // Before the current expiry (2027-03-01): refused.
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2026-12-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
        // In the past: refused, even for an expired license.
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2020-01-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn renewing_a_suspended_license_is_allowed_and_keeps_it_suspended() {
        let later = t("2028-01-01T00:00:00Z");
        let mut license = License::default();
        for e in [issued(), suspended()] {
            license.fold(e);
        }
        let events = license
            .decide(&cmd(LicenseAction::Renew { expires_at: later }))
            .unwrap();
        for e in events {
            license.fold(e);
        }
        let state = license.state().unwrap();
        assert!(state.suspension.is_some());
        assert_eq!(state.expires_at, Some(later));
    }

    #[test]
    fn renewing_a_perpetual_license_is_refused() {
        let mut perpetual = terms();
        perpetual.duration_days = None;
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                perpetual, None,
            )))))
            .unwrap();
        Fw::with(())
            .given(events)
            .when(cmd(LicenseAction::Renew {
                expires_at: t("2030-01-01T00:00:00Z"),
            }))
            .then_expect_error(DomainError::LicensePerpetual(lid()));
    }

    #[test]
    fn transferring_moves_the_license_to_an_open_organization() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: open_org(11),
            }))
            .then_expect_events(vec![LicenseEvent::Transferred {
                organization_id: org(11),
            }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: open_org(10),
            }))
            .then_expect_error(DomainError::SameOrganization(org(10)));
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::Transfer {
                organization: OrganizationRef {
                    id: org(12),
                    facts: None,
                },
            }))
            .then_expect_error(DomainError::OrganizationNotFound(org(12)));
    }

    #[test]
    fn revoking_is_final() {
        Fw::with(())
            .given(vec![issued(), suspended()])
            .when(cmd(LicenseAction::Revoke {
                reason: reason("fraud"),
            }))
            .then_expect_events(vec![revoked()]);
    }

    #[test]
    fn changing_entitlements_and_seats_records_only_real_changes() {
        let features = FeatureSet::parse(&["pro", "export"]).unwrap();
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeEntitlements {
                features: features.clone(),
            }))
            .then_expect_events(vec![LicenseEvent::EntitlementsChanged { features }]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeEntitlements {
                features: FeatureSet::parse(&["pro"]).unwrap(),
            }))
            .then_expect_events(vec![]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(3).unwrap(),
            }))
            .then_expect_events(vec![]);
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            }))
            .then_expect_events(vec![LicenseEvent::SeatsChanged {
                seats: SeatCount::new(1).unwrap(),
            }]);
    }

    #[test]
    fn seats_cannot_drop_below_active_installations() {
        let mut license = License::default();
        license.fold(issued());
        let License::Issued(state) = &mut license else {
            panic!()
        };
        for n in 0..2u128 {
            state.activations.insert(
                InstallationId::from_uuid(Uuid::from_u128(100 + n)),
                Activation {
                    fingerprint: format!("fp-{n}"),
                    environment: Environment::Production,
                    hostname: None,
                    platform: None,
                    activated_at: now(),
                },
            );
        }
        let err = license
            .decide(&cmd(LicenseAction::ChangeSeats {
                seats: SeatCount::new(1).unwrap(),
            }))
            .unwrap_err();
        assert_eq!(
            err,
            DomainError::SeatsBelowActivations {
                seats: 1,
                active: 2
            }
        );
        assert!(
            license
                .decide(&cmd(LicenseAction::ChangeSeats {
                    seats: SeatCount::new(2).unwrap()
                }))
                .is_ok()
        );
    }

    #[test]
    fn rotating_the_key_replaces_hash_and_prefix() {
        let mut license = License::default();
        license.fold(issued());
        license.fold(LicenseEvent::KeyRotated {
            key_hash: KeyHash::from_bytes([9; 32]),
            key_prefix: "ST-NEW1".into(),
        });
        let state = license.state().unwrap();
        assert_eq!(state.key_hash, KeyHash::from_bytes([9; 32]));
        assert_eq!(state.key_prefix, "ST-NEW1");
    }

    #[test]
    fn maintenance_only_extends() {
        Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ExtendMaintenance {
                until: t("2028-03-01T10:00:00Z"),
            }))
            .then_expect_events(vec![LicenseEvent::MaintenanceExtended {
                until: t("2028-03-01T10:00:00Z"),
            }]);
        let err = Fw::with(())
            .given(vec![issued()])
            .when(cmd(LicenseAction::ExtendMaintenance {
                until: t("2026-06-01T00:00:00Z"),
            }))
            .inspect_result()
            .unwrap_err();
        assert_eq!(err.code(), "INVALID_EXPIRY");
    }

    #[test]
    fn a_floating_policy_keeps_its_lease_on_the_license() {
        let floating = PolicyTerms::new(crate::policy::PolicyTermsInput {
            model: LicenseModel::Floating,
            ..crate::policy::tests::input()
        })
        .unwrap();
        let events = License::NotIssued
            .decide(&cmd(LicenseAction::Issue(Box::new(issue_with(
                floating, None,
            )))))
            .unwrap();
        let mut license = License::default();
        for e in events {
            license.fold(e);
        }
        assert_eq!(license.state().unwrap().terms.lease_seconds, Some(900));
    }
}
