//! The Policy aggregate: the versioned rules licenses are issued under (plan).
//!
//! Revising a policy records a new version; licenses keep the version they were issued under (they
//! carry a copy of its [`PolicyTerms`] in `LicenseIssued`) until explicitly migrated.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::billing::PriceId;
use crate::error::DomainError;
use crate::event::VersionedEvent;
use crate::ids::{PolicyId, ProductId};
use crate::product::ProductRef;
use crate::stream::AggregateType;
use crate::values::{Channel, FeatureSet, LicenseModel, Name, SeatCount};

/// A refusal of one field of a request, named so the caller can fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

impl InvalidField {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// The rules of a policy version.
///
/// Build it with [`PolicyTerms::new`], which checks every bound; deserialization (from stored
/// events) trusts what was once accepted, so a bound tightened later never makes history unreadable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTerms {
    pub model: LicenseModel,
    pub seats: SeatCount,
    /// Days a license runs from issue; `None` is perpetual.
    pub duration_days: Option<u32>,
    /// Days of trial before a paid subscription is needed; 0 is no trial.
    pub trial_days: u32,
    pub features: FeatureSet,
    pub offline_allowed: bool,
    pub offline_grace_days: u32,
    pub payment_grace_days: u32,
    /// Months of updates included from issue; `None` is none.
    pub maintenance_months: Option<u32>,
    /// Lease length of a floating seat; set exactly for floating policies.
    pub lease_seconds: Option<u32>,
    /// The release channels its licenses see (DOMAIN.md "Release visibility", rule 2), sorted,
    /// at least one. `[stable]` when the policy says nothing, and then absent from the stored
    /// terms: terms written before channels existed read, and re-encode, exactly as they were.
    #[serde(
        default = "default_channels",
        skip_serializing_if = "is_default_channels"
    )]
    pub channels: Vec<Channel>,
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Stable]
}

fn is_default_channels(channels: &[Channel]) -> bool {
    channels == [Channel::Stable]
}

/// The terms as a request states them, before their bounds are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTermsInput {
    pub model: LicenseModel,
    pub seats: SeatCount,
    pub duration_days: Option<u32>,
    pub trial_days: Option<u32>,
    pub features: FeatureSet,
    pub offline_allowed: bool,
    pub offline_grace_days: u32,
    pub payment_grace_days: u32,
    pub maintenance_months: Option<u32>,
    pub lease_seconds: Option<u32>,
}

impl PolicyTerms {
    /// Lease length given to floating policies that do not state one.
    pub const DEFAULT_LEASE_SECONDS: u32 = 900;

    /// Checks every bound and fills defaults.
    ///
    /// # Errors
    /// The first field out of bounds, by name.
    pub fn new(input: PolicyTermsInput) -> Result<Self, InvalidField> {
        fn bounded(field: &'static str, v: u32, min: u32, max: u32) -> Result<u32, InvalidField> {
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(InvalidField::new(
                    field,
                    format!("must be between {min} and {max} (got {v})"),
                ))
            }
        }
        let duration_days = input
            .duration_days
            .map(|d| bounded("duration_days", d, 1, 36_500))
            .transpose()?;
        let trial_days = bounded("trial_days", input.trial_days.unwrap_or(0), 0, 365)?;
        let offline_grace_days = bounded("offline_grace_days", input.offline_grace_days, 0, 365)?;
        let payment_grace_days = bounded("payment_grace_days", input.payment_grace_days, 0, 365)?;
        let maintenance_months = input
            .maintenance_months
            .map(|m| bounded("maintenance_months", m, 0, 1200))
            .transpose()?;
        let lease_seconds = match (input.model, input.lease_seconds) {
            (LicenseModel::Floating, None) => Some(Self::DEFAULT_LEASE_SECONDS),
            (LicenseModel::Floating, Some(s)) => Some(bounded("lease_seconds", s, 60, 86_400)?),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(InvalidField::new(
                    "lease_seconds",
                    "applies to floating policies only",
                ));
            }
        };
        if input.offline_allowed && offline_grace_days == 0 {
            return Err(InvalidField::new(
                "offline_grace_days",
                "must be at least 1 when offline use is allowed",
            ));
        }
        Ok(Self {
            model: input.model,
            seats: input.seats,
            duration_days,
            trial_days,
            features: input.features,
            offline_allowed: input.offline_allowed,
            offline_grace_days,
            payment_grace_days,
            maintenance_months,
            lease_seconds,
            channels: default_channels(),
        })
    }

    /// These terms with the release channels `channels` (duplicates collapse).
    ///
    /// # Errors
    /// `channels` is empty: a policy whose licenses see no release is a mistake, not a choice.
    pub fn with_channels(mut self, channels: &[Channel]) -> Result<Self, InvalidField> {
        let mut channels = channels.to_vec();
        channels.sort_unstable();
        channels.dedup();
        if channels.is_empty() {
            return Err(InvalidField::new(
                "channels",
                "must name at least one channel (stable, lts, beta)",
            ));
        }
        self.channels = channels;
        Ok(self)
    }
}

/// What the write side knows about a policy a command refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFacts {
    pub product_id: ProductId,
    pub version: u32,
    pub terms: PolicyTerms,
    pub retired: bool,
}

/// A reference to a policy, with its facts when it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub id: PolicyId,
    pub facts: Option<PolicyFacts>,
}

impl PolicyRef {
    /// The facts of a policy that exists and is not retired.
    ///
    /// # Errors
    /// `PolicyNotFound` or `PolicyRetired`.
    pub fn require_current(&self) -> Result<&PolicyFacts, DomainError> {
        let facts = self
            .facts
            .as_ref()
            .ok_or(DomainError::PolicyNotFound(self.id))?;
        if facts.retired {
            return Err(DomainError::PolicyRetired(self.id));
        }
        Ok(facts)
    }
}

/// A command to a policy.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyCommand {
    pub policy_id: PolicyId,
    pub at: Timestamp,
    pub action: PolicyAction,
}

/// What to do to the policy.
#[derive(Clone, Debug, PartialEq)]
pub enum PolicyAction {
    Define {
        product: ProductRef,
        name: Name,
        terms: PolicyTerms,
    },
    Revise {
        name: Name,
        terms: PolicyTerms,
    },
    Retire,
    /// Sells the policy through `price_ids` of a payment gateway (all of them: the set
    /// replaces the one linked before; empty unlinks every price). A price belongs to one
    /// policy: `linked_elsewhere` is what the write side read, under a lock every node shares,
    /// of the prices other policies hold now (ADR 0022).
    LinkPrices {
        gateway: String,
        price_ids: BTreeSet<PriceId>,
        linked_elsewhere: BTreeMap<PriceId, PolicyId>,
    },
}

/// Events of a policy's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PolicyEvent {
    #[serde(rename = "PolicyDefined")]
    Defined {
        product_id: ProductId,
        name: Name,
        version: u32,
        terms: PolicyTerms,
    },
    #[serde(rename = "PolicyRevised")]
    Revised {
        version: u32,
        name: Name,
        terms: PolicyTerms,
    },
    #[serde(rename = "PolicyRetired")]
    Retired {},
    /// The gateway prices the policy is sold through now (replacing the set before).
    #[serde(rename = "PolicyPricesLinked")]
    PricesLinked {
        gateway: String,
        price_ids: BTreeSet<PriceId>,
    },
}

impl DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Defined { .. } => "PolicyDefined",
            Self::Revised { .. } => "PolicyRevised",
            Self::Retired {} => "PolicyRetired",
            Self::PricesLinked { .. } => "PolicyPricesLinked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for PolicyEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::Policy.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("PolicyDefined", "1"),
        ("PolicyRevised", "1"),
        ("PolicyRetired", "1"),
        ("PolicyPricesLinked", "1"),
    ];
}

/// The state of a defined policy: its current version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub product_id: ProductId,
    pub name: Name,
    pub version: u32,
    pub terms: PolicyTerms,
    pub retired: bool,
    /// The gateway prices it is sold through, by gateway.
    #[serde(default)]
    pub prices: BTreeMap<String, BTreeSet<PriceId>>,
}

impl PolicyState {
    /// The facts other aggregates' commands need about this policy.
    pub fn facts(&self) -> PolicyFacts {
        PolicyFacts {
            product_id: self.product_id,
            version: self.version,
            terms: self.terms.clone(),
            retired: self.retired,
        }
    }
}

/// The Policy aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    #[default]
    Undefined,
    Defined(PolicyState),
}

impl Policy {
    /// The state, when defined.
    pub fn state(&self) -> Option<&PolicyState> {
        match self {
            Self::Undefined => None,
            Self::Defined(s) => Some(s),
        }
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &PolicyCommand) -> Result<Vec<PolicyEvent>, DomainError> {
        let id = cmd.policy_id;
        match (self, &cmd.action) {
            (
                Self::Undefined,
                PolicyAction::Define {
                    product,
                    name,
                    terms,
                },
            ) => {
                product.require()?;
                Ok(vec![PolicyEvent::Defined {
                    product_id: product.id,
                    name: name.clone(),
                    version: 1,
                    terms: terms.clone(),
                }])
            }
            (Self::Defined(_), PolicyAction::Define { .. }) => {
                Err(DomainError::PolicyAlreadyDefined(id))
            }
            (Self::Undefined, _) => Err(DomainError::PolicyNotFound(id)),
            (Self::Defined(state), _) if state.retired => Err(DomainError::PolicyRetired(id)),
            (Self::Defined(state), PolicyAction::Revise { name, terms }) => {
                if *name == state.name && *terms == state.terms {
                    return Ok(vec![]);
                }
                Ok(vec![PolicyEvent::Revised {
                    version: state.version + 1,
                    name: name.clone(),
                    terms: terms.clone(),
                }])
            }
            (Self::Defined(_), PolicyAction::Retire) => Ok(vec![PolicyEvent::Retired {}]),
            (
                Self::Defined(state),
                PolicyAction::LinkPrices {
                    gateway,
                    price_ids,
                    linked_elsewhere,
                },
            ) => {
                if let Some((price_id, holder)) = price_ids.iter().find_map(|p| {
                    linked_elsewhere
                        .get(p)
                        .filter(|holder| **holder != id)
                        .map(|holder| (p, *holder))
                }) {
                    return Err(DomainError::PriceLinkedElsewhere {
                        price_id: price_id.to_string(),
                        policy_id: holder,
                    });
                }
                let current = state.prices.get(gateway);
                if current.map_or(price_ids.is_empty(), |c| c == price_ids) {
                    return Ok(vec![]);
                }
                Ok(vec![PolicyEvent::PricesLinked {
                    gateway: gateway.clone(),
                    price_ids: price_ids.clone(),
                }])
            }
        }
    }
}

impl Aggregate for Policy {
    const TYPE: &'static str = AggregateType::Policy.as_str();
    type Command = PolicyCommand;
    type Event = PolicyEvent;
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
        match event {
            PolicyEvent::Defined {
                product_id,
                name,
                version,
                terms,
            } => {
                *self = Self::Defined(PolicyState {
                    product_id,
                    name,
                    version,
                    terms,
                    retired: false,
                    prices: BTreeMap::new(),
                });
            }
            PolicyEvent::Revised {
                version,
                name,
                terms,
            } => {
                if let Self::Defined(state) = self {
                    state.version = version;
                    state.name = name;
                    state.terms = terms;
                }
            }
            PolicyEvent::Retired {} => {
                if let Self::Defined(state) = self {
                    state.retired = true;
                }
            }
            PolicyEvent::PricesLinked { gateway, price_ids } => {
                if let Self::Defined(state) = self {
                    if price_ids.is_empty() {
                        state.prices.remove(&gateway);
                    } else {
                        state.prices.insert(gateway, price_ids);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::AppId;
    use crate::product::ProductFacts;
    use crate::values::{KeyPrefix, ProductKind};
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type Fw = TestFramework<Policy>;

    pub(crate) fn input() -> PolicyTermsInput {
        PolicyTermsInput {
            model: LicenseModel::NodeLocked,
            seats: SeatCount::new(3).unwrap(),
            duration_days: Some(365),
            trial_days: None,
            features: FeatureSet::parse(&["pro"]).unwrap(),
            offline_allowed: true,
            offline_grace_days: 14,
            payment_grace_days: 7,
            maintenance_months: Some(12),
            lease_seconds: None,
        }
    }
    fn terms() -> PolicyTerms {
        PolicyTerms::new(input()).unwrap()
    }
    fn pid(n: u128) -> PolicyId {
        PolicyId::from_uuid(Uuid::from_u128(n))
    }
    fn product() -> ProductRef {
        ProductRef {
            id: ProductId::from_uuid(Uuid::from_u128(5)),
            facts: Some(ProductFacts {
                name: Name::parse("Studio").unwrap(),
                kind: ProductKind::Application,
                app_id: AppId::parse(Uuid::from_u128(6)).unwrap(),
                key_prefix: KeyPrefix::parse("ST").unwrap(),
            }),
        }
    }
    fn cmd(action: PolicyAction) -> PolicyCommand {
        PolicyCommand {
            policy_id: pid(1),
            at: "2026-01-01T00:00:00Z".parse().unwrap(),
            action,
        }
    }
    fn defined() -> PolicyEvent {
        PolicyEvent::Defined {
            product_id: product().id,
            name: Name::parse("Pro").unwrap(),
            version: 1,
            terms: terms(),
        }
    }

    #[test]
    fn channels_default_to_stable_and_are_stored_only_when_said() {
        let plain = terms();
        assert_eq!(plain.channels, [Channel::Stable]);
        // Absent when default: terms stored before channels existed re-encode as they were.
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("channels").is_none(), "{json}");
        let back: PolicyTerms = serde_json::from_value(json).unwrap();
        assert_eq!(back.channels, [Channel::Stable]);
        let lts = terms()
            .with_channels(&[Channel::Lts, Channel::Stable, Channel::Lts])
            .unwrap();
        assert_eq!(lts.channels, [Channel::Stable, Channel::Lts]);
        let json = serde_json::to_value(&lts).unwrap();
        assert_eq!(json["channels"], serde_json::json!(["stable", "lts"]));
        assert_eq!(terms().with_channels(&[]).unwrap_err().field, "channels");
    }

    #[test]
    fn terms_fill_defaults_and_name_the_field_out_of_bounds() {
        let floating = PolicyTerms::new(PolicyTermsInput {
            model: LicenseModel::Floating,
            ..input()
        })
        .unwrap();
        assert_eq!(
            floating.lease_seconds,
            Some(PolicyTerms::DEFAULT_LEASE_SECONDS)
        );
        let err = PolicyTerms::new(PolicyTermsInput {
            lease_seconds: Some(30),
            ..input()
        })
        .unwrap_err();
        assert_eq!(err.field, "lease_seconds");
        let err = PolicyTerms::new(PolicyTermsInput {
            model: LicenseModel::Floating,
            lease_seconds: Some(30),
            ..input()
        })
        .unwrap_err();
        assert_eq!(err.field, "lease_seconds");
        let err = PolicyTerms::new(PolicyTermsInput {
            duration_days: Some(0),
            ..input()
        })
        .unwrap_err();
        assert_eq!(err.field, "duration_days");
        let err = PolicyTerms::new(PolicyTermsInput {
            offline_grace_days: 0,
            ..input()
        })
        .unwrap_err();
        assert_eq!(err.field, "offline_grace_days");
    }

    #[test]
    fn defining_a_policy_for_an_existing_product_starts_at_version_1() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(PolicyAction::Define {
                product: product(),
                name: Name::parse("Pro").unwrap(),
                terms: terms(),
            }))
            .then_expect_events(vec![defined()]);
    }

    #[test]
    fn defining_for_a_missing_product_is_not_found() {
        let missing = ProductRef {
            id: product().id,
            facts: None,
        };
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(PolicyAction::Define {
                product: missing,
                name: Name::parse("Pro").unwrap(),
                terms: terms(),
            }))
            .then_expect_error(DomainError::ProductNotFound(product().id));
    }

    #[test]
    fn revising_bumps_the_version_and_an_identical_revision_is_a_no_op() {
        let mut more_seats = input();
        more_seats.seats = SeatCount::new(10).unwrap();
        let new_terms = PolicyTerms::new(more_seats).unwrap();
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(PolicyAction::Revise {
                name: Name::parse("Pro").unwrap(),
                terms: new_terms.clone(),
            }))
            .then_expect_events(vec![PolicyEvent::Revised {
                version: 2,
                name: Name::parse("Pro").unwrap(),
                terms: new_terms,
            }]);
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(PolicyAction::Revise {
                name: Name::parse("Pro").unwrap(),
                terms: terms(),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_retired_policy_refuses_revision_and_retirement() {
        for action in [
            PolicyAction::Retire,
            PolicyAction::Revise {
                name: Name::parse("Pro").unwrap(),
                terms: terms(),
            },
        ] {
            Fw::with(())
                .given(vec![defined(), PolicyEvent::Retired {}])
                .when(cmd(action))
                .then_expect_error(DomainError::PolicyRetired(pid(1)));
        }
    }

    fn prices(ids: &[&str]) -> BTreeSet<PriceId> {
        ids.iter().map(|p| PriceId::parse(p).unwrap()).collect()
    }
    fn link(ids: &[&str], elsewhere: &[(&str, u128)]) -> PolicyAction {
        PolicyAction::LinkPrices {
            gateway: "stripe".into(),
            price_ids: prices(ids),
            linked_elsewhere: elsewhere
                .iter()
                .map(|(p, holder)| (PriceId::parse(p).unwrap(), pid(*holder)))
                .collect(),
        }
    }
    fn linked(ids: &[&str]) -> PolicyEvent {
        PolicyEvent::PricesLinked {
            gateway: "stripe".into(),
            price_ids: prices(ids),
        }
    }

    #[test]
    fn prices_replace_the_set_and_the_same_set_again_is_a_no_op() {
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(link(&["price_a", "price_b"], &[])))
            .then_expect_events(vec![linked(&["price_a", "price_b"])]);
        Fw::with(())
            .given(vec![defined(), linked(&["price_a", "price_b"])])
            .when(cmd(link(&["price_b", "price_a"], &[("price_a", 1)])))
            .then_expect_events(vec![]);
        Fw::with(())
            .given(vec![defined(), linked(&["price_a"])])
            .when(cmd(link(&[], &[])))
            .then_expect_events(vec![linked(&[])]);
        // Nothing linked, nothing to unlink.
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(link(&[], &[])))
            .then_expect_events(vec![]);
        let mut policy = Policy::default();
        for e in [defined(), linked(&["price_a"]), linked(&[])] {
            policy.apply(e);
        }
        assert!(policy.state().unwrap().prices.is_empty());
    }

    #[test]
    fn a_price_belongs_to_one_policy_and_a_retired_one_links_none() {
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(link(&["price_a", "price_b"], &[("price_b", 9)])))
            .then_expect_error(DomainError::PriceLinkedElsewhere {
                price_id: "price_b".into(),
                policy_id: pid(9),
            });
        Fw::with(())
            .given(vec![defined(), PolicyEvent::Retired {}])
            .when(cmd(link(&["price_a"], &[])))
            .then_expect_error(DomainError::PolicyRetired(pid(1)));
        for bad in ["", "price a", "price/../x", "prïce", &"p".repeat(256)] {
            assert!(PriceId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_to_an_unknown_policy_are_not_found() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(PolicyAction::Retire))
            .then_expect_error(DomainError::PolicyNotFound(pid(1)));
    }

    #[test]
    fn defining_twice_is_a_conflict() {
        Fw::with(())
            .given(vec![defined()])
            .when(cmd(PolicyAction::Define {
                product: product(),
                name: Name::parse("Pro").unwrap(),
                terms: terms(),
            }))
            .then_expect_error(DomainError::PolicyAlreadyDefined(pid(1)));
    }
}
