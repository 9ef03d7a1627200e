//! The Organization aggregate: customers, partners and the vendor, in a tree
//! (corporate > subsidiary > location), with partners delegated the administration of customers.
//!
//! Decisions about *other* organizations (does the parent exist, is it closed, would a move make a
//! cycle) are taken here from [`OrganizationRef`] facts that the write side looked up and put into
//! the command; the aggregate itself never reads anything.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::OrganizationId;
use crate::stream::{AggregateType, ClaimScope};
use crate::values::{Name, OrganizationKind};

/// How deep an organization tree may be (corporate > subsidiary > location needs three): the
/// write side walks a lineage up to this many organizations, and no organization is placed below
/// one that is already this deep.
pub const MAX_DEPTH: usize = 32;

/// What the write side knows about an organization a command refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationFacts {
    pub kind: OrganizationKind,
    pub closed: bool,
    /// This organization and its ancestors, itself first, up to the root.
    pub lineage: Vec<OrganizationId>,
}

/// A reference to an organization, with its facts when it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationRef {
    pub id: OrganizationId,
    pub facts: Option<OrganizationFacts>,
}

impl OrganizationRef {
    /// The facts of an organization that exists and is open.
    ///
    /// # Errors
    /// `OrganizationNotFound` or `OrganizationClosed`.
    pub fn require_open(&self) -> Result<&OrganizationFacts, DomainError> {
        let facts = self
            .facts
            .as_ref()
            .ok_or(DomainError::OrganizationNotFound(self.id))?;
        if facts.closed {
            return Err(DomainError::OrganizationClosed(self.id));
        }
        Ok(facts)
    }

    /// This organization's facts, when it is open and an organization may be placed directly
    /// below it without the tree growing deeper than [`MAX_DEPTH`].
    ///
    /// # Errors
    /// `OrganizationNotFound`, `OrganizationClosed` or `OrganizationTooDeep`.
    pub fn require_open_parent(&self) -> Result<&OrganizationFacts, DomainError> {
        let facts = self.require_open()?;
        // `lineage` holds the parent and its ancestors (at most MAX_DEPTH of them: the write side
        // stops walking there), so a child would be at depth `lineage.len() + 1`.
        if facts.lineage.len() >= MAX_DEPTH {
            return Err(DomainError::OrganizationTooDeep { max: MAX_DEPTH });
        }
        Ok(facts)
    }
}

/// A command to an organization.
#[derive(Clone, Debug, PartialEq)]
pub struct OrganizationCommand {
    pub organization_id: OrganizationId,
    pub at: Timestamp,
    pub action: OrganizationAction,
}

/// What to do to the organization.
#[derive(Clone, Debug, PartialEq)]
pub enum OrganizationAction {
    Register {
        name: Name,
        kind: OrganizationKind,
        parent: Option<OrganizationRef>,
    },
    Rename {
        name: Name,
    },
    /// A move that counts the organization alone, as if nothing were below it: what
    /// [`OrganizationAction::MoveSubtree`] decides with `subtree_height: 0`. Kept for callers
    /// that decide without a write side (the synthetic history of `ledger-replay seed`); the
    /// write side sends `MoveSubtree`, with the subtree's height counted from the log.
    Move {
        new_parent: Option<OrganizationRef>,
    },
    /// Moves the organization, with everything below it, under `new_parent` (`None`: it becomes
    /// a root). Refused when the new parent is missing or closed, when it is the organization
    /// itself or one of its descendants (a cycle), or when the deepest descendant would end up
    /// deeper than [`MAX_DEPTH`].
    MoveSubtree {
        new_parent: Option<OrganizationRef>,
        /// How many levels lie below the organization (0: it has no children), as the write side
        /// counted them. A fact like the new parent's lineage: the aggregate knows only its own
        /// parent, never its children.
        subtree_height: usize,
    },
    GrantPartnerDelegation {
        partner: OrganizationRef,
    },
    RevokePartnerDelegation {
        partner_id: OrganizationId,
    },
    /// Closes the organization for good: it changes no more, takes no new children (registered
    /// or moved) and no license is issued or transferred to it. Closing does not cascade: its
    /// children stay where they are, open, and can still be moved away.
    Close,
    /// Records that customer `customer_id` of a payment gateway is this organization: its
    /// subscriptions' licenses are issued here. A gateway customer is one organization, for
    /// good (a unique claim); an organization may be several customers.
    LinkCustomer {
        gateway: String,
        customer_id: String,
    },
}

/// Events of an organization's stream. The serde names are the stored `event_type`s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OrganizationEvent {
    #[serde(rename = "OrganizationRegistered")]
    Registered {
        name: Name,
        kind: OrganizationKind,
        parent_id: Option<OrganizationId>,
    },
    #[serde(rename = "OrganizationRenamed")]
    Renamed { name: Name },
    #[serde(rename = "OrganizationMoved")]
    Moved {
        new_parent_id: Option<OrganizationId>,
    },
    #[serde(rename = "PartnerDelegationGranted")]
    PartnerDelegationGranted { partner_id: OrganizationId },
    #[serde(rename = "PartnerDelegationRevoked")]
    PartnerDelegationRevoked { partner_id: OrganizationId },
    #[serde(rename = "OrganizationClosed")]
    Closed {},
    #[serde(rename = "OrganizationCustomerLinked")]
    CustomerLinked {
        gateway: String,
        customer_id: String,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered { .. } => "OrganizationRegistered",
            Self::Renamed { .. } => "OrganizationRenamed",
            Self::Moved { .. } => "OrganizationMoved",
            Self::PartnerDelegationGranted { .. } => "PartnerDelegationGranted",
            Self::PartnerDelegationRevoked { .. } => "PartnerDelegationRevoked",
            Self::Closed {} => "OrganizationClosed",
            Self::CustomerLinked { .. } => "OrganizationCustomerLinked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for OrganizationEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::Organization.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("OrganizationRegistered", "1"),
        ("OrganizationRenamed", "1"),
        ("OrganizationMoved", "1"),
        ("PartnerDelegationGranted", "1"),
        ("PartnerDelegationRevoked", "1"),
        ("OrganizationClosed", "1"),
        ("OrganizationCustomerLinked", "1"),
    ];

    /// A gateway customer is one organization.
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        match self {
            Self::CustomerLinked {
                gateway,
                customer_id,
            } => vec![UniqueClaim {
                scope: ClaimScope::GatewayCustomer.as_str(),
                value: customer_claim(gateway, customer_id),
            }],
            _ => Vec::new(),
        }
    }
}

/// The state of a registered organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationState {
    pub name: Name,
    pub kind: OrganizationKind,
    pub parent_id: Option<OrganizationId>,
    pub delegated_partners: BTreeSet<OrganizationId>,
    pub closed: bool,
    /// The gateway customers it is: `(gateway, customer id)`.
    #[serde(default)]
    pub customers: BTreeSet<(String, String)>,
}

/// The unique claim's value of a gateway customer: `<gateway>:<customer id>`.
pub fn customer_claim(gateway: &str, customer_id: &str) -> String {
    format!("{gateway}:{customer_id}")
}

/// The Organization aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Organization {
    /// No `OrganizationRegistered` yet.
    #[default]
    Unregistered,
    Registered(OrganizationState),
}

impl Organization {
    /// The state, when registered.
    pub fn state(&self) -> Option<&OrganizationState> {
        match self {
            Self::Unregistered => None,
            Self::Registered(state) => Some(state),
        }
    }

    /// Decides a command: the events it causes, or why it is refused.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &OrganizationCommand) -> Result<Vec<OrganizationEvent>, DomainError> {
        let id = cmd.organization_id;
        let state = match (self, &cmd.action) {
            (Self::Unregistered, OrganizationAction::Register { name, kind, parent }) => {
                if let Some(parent) = parent {
                    parent.require_open_parent()?;
                }
                return Ok(vec![OrganizationEvent::Registered {
                    name: name.clone(),
                    kind: *kind,
                    parent_id: parent.as_ref().map(|p| p.id),
                }]);
            }
            (Self::Registered(_), OrganizationAction::Register { .. }) => {
                return Err(DomainError::OrganizationAlreadyRegistered(id));
            }
            (Self::Unregistered, _) => return Err(DomainError::OrganizationNotFound(id)),
            (Self::Registered(state), _) => state,
        };
        if state.closed {
            return Err(DomainError::OrganizationClosed(id));
        }
        match &cmd.action {
            OrganizationAction::Register { .. } => unreachable!("handled above"),
            OrganizationAction::Rename { name } => {
                if *name == state.name {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::Renamed { name: name.clone() }])
            }
            OrganizationAction::Move { new_parent } => {
                decide_move(id, state, new_parent.as_ref(), 0)
            }
            OrganizationAction::MoveSubtree {
                new_parent,
                subtree_height,
            } => decide_move(id, state, new_parent.as_ref(), *subtree_height),
            OrganizationAction::GrantPartnerDelegation { partner } => {
                let facts = partner.require_open()?;
                if facts.kind != OrganizationKind::Partner {
                    return Err(DomainError::NotAPartner(partner.id));
                }
                if state.delegated_partners.contains(&partner.id) {
                    return Err(DomainError::DelegationAlreadyGranted(partner.id));
                }
                Ok(vec![OrganizationEvent::PartnerDelegationGranted {
                    partner_id: partner.id,
                }])
            }
            OrganizationAction::RevokePartnerDelegation { partner_id } => {
                if !state.delegated_partners.contains(partner_id) {
                    return Err(DomainError::DelegationNotGranted(*partner_id));
                }
                Ok(vec![OrganizationEvent::PartnerDelegationRevoked {
                    partner_id: *partner_id,
                }])
            }
            OrganizationAction::Close => Ok(vec![OrganizationEvent::Closed {}]),
            OrganizationAction::LinkCustomer {
                gateway,
                customer_id,
            } => {
                if state
                    .customers
                    .contains(&(gateway.clone(), customer_id.clone()))
                {
                    return Ok(vec![]);
                }
                Ok(vec![OrganizationEvent::CustomerLinked {
                    gateway: gateway.clone(),
                    customer_id: customer_id.clone(),
                }])
            }
        }
    }
}

/// Moves organization `id` (in `state`, with `subtree_height` levels below it) under
/// `new_parent`, or makes it a root.
fn decide_move(
    id: OrganizationId,
    state: &OrganizationState,
    new_parent: Option<&OrganizationRef>,
    subtree_height: usize,
) -> Result<Vec<OrganizationEvent>, DomainError> {
    let new_parent_id = match new_parent {
        None => None,
        Some(parent) => {
            let facts = parent.require_open()?;
            // The lineage names every ancestor of the new parent as long as it is shorter than
            // MAX_DEPTH (the write side stops walking there): the organization among them, or
            // the parent itself, would make the organization its own ancestor. A lineage cut at
            // MAX_DEPTH may miss it, but then the depth check below refuses the move anyway.
            // The cycle is checked first: it is the reason a move under a descendant fails,
            // whatever the depths.
            if parent.id == id || facts.lineage.contains(&id) {
                return Err(DomainError::OrganizationCycle(parent.id));
            }
            // The organization lands at depth `lineage.len() + 1` (a root is at depth 1), its
            // deepest descendant `subtree_height` levels below that.
            if facts.lineage.len() + 1 + subtree_height > MAX_DEPTH {
                return Err(DomainError::OrganizationTooDeep { max: MAX_DEPTH });
            }
            Some(parent.id)
        }
    };
    if new_parent_id == state.parent_id {
        return Ok(vec![]);
    }
    Ok(vec![OrganizationEvent::Moved { new_parent_id }])
}

impl Aggregate for Organization {
    const TYPE: &'static str = AggregateType::Organization.as_str();
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
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
            OrganizationEvent::Registered {
                name,
                kind,
                parent_id,
            } => {
                *self = Self::Registered(OrganizationState {
                    name,
                    kind,
                    parent_id,
                    delegated_partners: BTreeSet::new(),
                    closed: false,
                    customers: BTreeSet::new(),
                });
            }
            other => {
                let Self::Registered(state) = self else {
                    return; // an event before registration cannot be stored (sequence 1 is always Registered)
                };
                match other {
                    OrganizationEvent::Registered { .. } => {}
                    OrganizationEvent::Renamed { name } => state.name = name,
                    OrganizationEvent::Moved { new_parent_id } => state.parent_id = new_parent_id,
                    OrganizationEvent::PartnerDelegationGranted { partner_id } => {
                        state.delegated_partners.insert(partner_id);
                    }
                    OrganizationEvent::PartnerDelegationRevoked { partner_id } => {
                        state.delegated_partners.remove(&partner_id);
                    }
                    OrganizationEvent::Closed {} => state.closed = true,
                    OrganizationEvent::CustomerLinked {
                        gateway,
                        customer_id,
                    } => {
                        state.customers.insert((gateway, customer_id));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type Fw = TestFramework<Organization>;

    fn id(n: u128) -> OrganizationId {
        OrganizationId::from_uuid(Uuid::from_u128(n))
    }
    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }
    fn at() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }
    fn cmd(action: OrganizationAction) -> OrganizationCommand {
        OrganizationCommand {
            organization_id: id(1),
            at: at(),
            action,
        }
    }
    fn open(n: u128, kind: OrganizationKind, lineage: &[u128]) -> OrganizationRef {
        OrganizationRef {
            id: id(n),
            facts: Some(OrganizationFacts {
                kind,
                closed: false,
                lineage: lineage.iter().copied().map(id).collect(),
            }),
        }
    }
    fn registered() -> OrganizationEvent {
        OrganizationEvent::Registered {
            name: name("Acme"),
            kind: OrganizationKind::Customer,
            parent_id: None,
        }
    }

    #[test]
    fn registering_a_new_organization_records_it() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("Acme"),
                kind: OrganizationKind::Customer,
                parent: None,
            }))
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn registering_under_a_parent_names_the_parent() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("Acme Berlin"),
                kind: OrganizationKind::Customer,
                parent: Some(open(2, OrganizationKind::Customer, &[2])),
            }))
            .then_expect_events(vec![OrganizationEvent::Registered {
                name: name("Acme Berlin"),
                kind: OrganizationKind::Customer,
                parent_id: Some(id(2)),
            }]);
    }

    #[test]
    fn no_organization_is_placed_deeper_than_the_maximum_depth() {
        // A parent at depth MAX_DEPTH - 1 (its lineage: itself and its ancestors) takes a child.
        let lineage: Vec<u128> = (2..).take(MAX_DEPTH - 1).collect();
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("deepest"),
                kind: OrganizationKind::Customer,
                parent: Some(open(2, OrganizationKind::Customer, &lineage)),
            }))
            .then_expect_events(vec![OrganizationEvent::Registered {
                name: name("deepest"),
                kind: OrganizationKind::Customer,
                parent_id: Some(id(2)),
            }]);
        // One at MAX_DEPTH takes none, and nothing moves below it either.
        let lineage: Vec<u128> = (2..).take(MAX_DEPTH).collect();
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("too deep"),
                kind: OrganizationKind::Customer,
                parent: Some(open(2, OrganizationKind::Customer, &lineage)),
            }))
            .then_expect_error(DomainError::OrganizationTooDeep { max: MAX_DEPTH });
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Move {
                new_parent: Some(open(2, OrganizationKind::Customer, &lineage)),
            }))
            .then_expect_error(DomainError::OrganizationTooDeep { max: MAX_DEPTH });
    }

    #[test]
    fn registering_under_a_missing_or_closed_parent_is_refused() {
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("x"),
                kind: OrganizationKind::Customer,
                parent: Some(OrganizationRef {
                    id: id(9),
                    facts: None,
                }),
            }))
            .then_expect_error(DomainError::OrganizationNotFound(id(9)));
        let mut closed = open(2, OrganizationKind::Customer, &[2]);
        closed.facts.as_mut().unwrap().closed = true;
        Fw::with(())
            .given_no_previous_events()
            .when(cmd(OrganizationAction::Register {
                name: name("x"),
                kind: OrganizationKind::Customer,
                parent: Some(closed),
            }))
            .then_expect_error(DomainError::OrganizationClosed(id(2)));
    }

    #[test]
    fn registering_twice_is_a_conflict() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Register {
                name: name("Acme"),
                kind: OrganizationKind::Customer,
                parent: None,
            }))
            .then_expect_error(DomainError::OrganizationAlreadyRegistered(id(1)));
    }

    #[test]
    fn commands_to_an_unknown_organization_are_not_found() {
        for action in [
            OrganizationAction::Rename { name: name("b") },
            OrganizationAction::Close,
            OrganizationAction::Move { new_parent: None },
        ] {
            Fw::with(())
                .given_no_previous_events()
                .when(cmd(action))
                .then_expect_error(DomainError::OrganizationNotFound(id(1)));
        }
    }

    #[test]
    fn renaming_records_the_new_name_and_the_same_name_is_a_no_op() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Rename {
                name: name("Acme AG"),
            }))
            .then_expect_events(vec![OrganizationEvent::Renamed {
                name: name("Acme AG"),
            }]);
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Rename { name: name("Acme") }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn moving_under_a_descendant_is_a_cycle() {
        // 3's lineage is [3, 1]: 1 is an ancestor of 3, so 1 cannot move under 3.
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Move {
                new_parent: Some(open(3, OrganizationKind::Customer, &[3, 1])),
            }))
            .then_expect_error(DomainError::OrganizationCycle(id(3)));
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Move {
                new_parent: Some(open(1, OrganizationKind::Customer, &[1])),
            }))
            .then_expect_error(DomainError::OrganizationCycle(id(1)));
    }

    #[test]
    fn moving_under_another_tree_records_the_move() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::Move {
                new_parent: Some(open(4, OrganizationKind::Customer, &[4, 5])),
            }))
            .then_expect_events(vec![OrganizationEvent::Moved {
                new_parent_id: Some(id(4)),
            }]);
    }

    #[test]
    fn a_moved_subtree_must_fit_below_the_new_parent() {
        let subtree = |lineage: &[u128], subtree_height| {
            cmd(OrganizationAction::MoveSubtree {
                new_parent: Some(open(2, OrganizationKind::Customer, lineage)),
                subtree_height,
            })
        };
        // A parent at depth 10: the organization lands at 11, its deepest descendant
        // MAX_DEPTH - 11 levels below fits exactly, one more level does not.
        let lineage: Vec<u128> = (2..12).collect();
        Fw::with(())
            .given(vec![registered()])
            .when(subtree(&lineage, MAX_DEPTH - 11))
            .then_expect_events(vec![OrganizationEvent::Moved {
                new_parent_id: Some(id(2)),
            }]);
        Fw::with(())
            .given(vec![registered()])
            .when(subtree(&lineage, MAX_DEPTH - 10))
            .then_expect_error(DomainError::OrganizationTooDeep { max: MAX_DEPTH });
        // A move under a descendant is a cycle, however deep the subtree.
        Fw::with(())
            .given(vec![registered()])
            .when(subtree(&[2, 1], MAX_DEPTH))
            .then_expect_error(DomainError::OrganizationCycle(id(2)));
        // A root takes any subtree that exists (it was within MAX_DEPTH where it stood).
        Fw::with(())
            .given(vec![OrganizationEvent::Registered {
                name: name("Acme"),
                kind: OrganizationKind::Customer,
                parent_id: Some(id(2)),
            }])
            .when(cmd(OrganizationAction::MoveSubtree {
                new_parent: None,
                subtree_height: MAX_DEPTH - 1,
            }))
            .then_expect_events(vec![OrganizationEvent::Moved {
                new_parent_id: None,
            }]);
    }

    #[test]
    fn a_move_to_where_the_organization_is_changes_nothing() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::MoveSubtree {
                new_parent: None,
                subtree_height: 3,
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_move_under_a_missing_or_closed_parent_is_refused() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::MoveSubtree {
                new_parent: Some(OrganizationRef {
                    id: id(9),
                    facts: None,
                }),
                subtree_height: 0,
            }))
            .then_expect_error(DomainError::OrganizationNotFound(id(9)));
        let mut closed = open(2, OrganizationKind::Customer, &[2]);
        closed.facts.as_mut().unwrap().closed = true;
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::MoveSubtree {
                new_parent: Some(closed),
                subtree_height: 0,
            }))
            .then_expect_error(DomainError::OrganizationClosed(id(2)));
    }

    #[test]
    fn only_partners_can_be_delegated_and_only_once() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::GrantPartnerDelegation {
                partner: open(7, OrganizationKind::Customer, &[7]),
            }))
            .then_expect_error(DomainError::NotAPartner(id(7)));
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::GrantPartnerDelegation {
                partner: open(7, OrganizationKind::Partner, &[7]),
            }))
            .then_expect_events(vec![OrganizationEvent::PartnerDelegationGranted {
                partner_id: id(7),
            }]);
        Fw::with(())
            .given(vec![
                registered(),
                OrganizationEvent::PartnerDelegationGranted { partner_id: id(7) },
            ])
            .when(cmd(OrganizationAction::GrantPartnerDelegation {
                partner: open(7, OrganizationKind::Partner, &[7]),
            }))
            .then_expect_error(DomainError::DelegationAlreadyGranted(id(7)));
    }

    #[test]
    fn revoking_a_delegation_needs_one() {
        Fw::with(())
            .given(vec![registered()])
            .when(cmd(OrganizationAction::RevokePartnerDelegation {
                partner_id: id(7),
            }))
            .then_expect_error(DomainError::DelegationNotGranted(id(7)));
        Fw::with(())
            .given(vec![
                registered(),
                OrganizationEvent::PartnerDelegationGranted { partner_id: id(7) },
            ])
            .when(cmd(OrganizationAction::RevokePartnerDelegation {
                partner_id: id(7),
            }))
            .then_expect_events(vec![OrganizationEvent::PartnerDelegationRevoked {
                partner_id: id(7),
            }]);
    }

    #[test]
    fn a_closed_organization_refuses_every_change() {
        let history = vec![registered(), OrganizationEvent::Closed {}];
        for action in [
            OrganizationAction::Rename { name: name("b") },
            OrganizationAction::Close,
            OrganizationAction::Move { new_parent: None },
        ] {
            Fw::with(())
                .given(history.clone())
                .when(cmd(action))
                .then_expect_error(DomainError::OrganizationClosed(id(1)));
        }
    }
}
