//! Organizations: a vendor, partners and customers in a tree, registered over the history, some
//! renamed, moved, delegated to a partner or closed later; every command decided by the
//! `Organization` aggregate on facts gathered as the write side gathers them.

use cqrs_es::Aggregate as _;
use domain::Timestamp;
use domain::ids::OrganizationId;
use domain::organization::{
    Organization, OrganizationAction, OrganizationCommand, OrganizationEvent, OrganizationFacts,
    OrganizationRef,
};
use domain::values::{Name, OrganizationKind};

use super::batches::Stream;
use super::generator::Generator;

// The words organization names are made of.
const COMPANY: &[&str] = &[
    "Northwind",
    "Blue Harbor",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Tyrell",
    "Hooli",
    "Vandelay",
    "Aperture",
    "Black Mesa",
    "Massive Dynamic",
    "Nakatomi",
    "Sterling",
    "Prestige",
    "Monarch",
    "Pied Piper",
    "Wonka",
    "Soylent",
    "Virtucon",
    "Oceanic",
    "Gringotts",
    "Cobalt",
    "Silverline",
    "Redwood",
    "Granite Peak",
    "Lakeside",
    "Fjord",
    "Kestrel",
    "Meridian",
];
const TRADE: &[&str] = &[
    "Analytics",
    "Design",
    "Engineering",
    "Media",
    "Labs",
    "Studios",
    "Systems",
    "Consulting",
    "Robotics",
    "Logistics",
    "Health",
    "Energy",
    "Architects",
    "Games",
    "Pictures",
    "Research",
];
const LEGAL: &[&str] = &[
    "Ltd", "GmbH", "Inc.", "SA", "BV", "AB", "Oy", "KK", "LLC", "plc", "SAS", "Pty Ltd",
];
const CITIES: &[&str] = &[
    "Berlin",
    "Lyon",
    "Osaka",
    "Austin",
    "Leeds",
    "Porto",
    "Gdansk",
    "Toronto",
    "Melbourne",
    "Seoul",
    "Zurich",
    "Denver",
];

/// What happens to an organization at a planned instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum OrgStep {
    Register,
    Rename,
    Move,
    Delegate,
    Undelegate,
    Close,
}

/// An organization's stream and state, folded by `Organization` itself.
pub(super) struct OrgSim {
    pub(super) id: OrganizationId,
    pub(super) stream: Stream,
    pub(super) kind: OrganizationKind,
    pub(super) state: Organization,
}

impl Generator {
    pub(super) fn org_ref(&self, k: usize) -> OrganizationRef {
        let org = &self.orgs[k];
        let facts = org.state.state().map(|state| {
            let mut lineage = vec![org.id];
            let mut parent = state.parent_id;
            while let Some(id) = parent {
                lineage.push(id);
                parent = self
                    .org_index
                    .get(&id)
                    .and_then(|&q| self.orgs[q].state.state())
                    .and_then(|s| s.parent_id);
                if lineage.len() > self.orgs.len() {
                    break; // cannot happen (moves are refused on cycles), but never loop
                }
            }
            OrganizationFacts {
                kind: org.kind,
                closed: state.closed,
                lineage,
            }
        });
        OrganizationRef { id: org.id, facts }
    }

    pub(super) fn is_open(&self, k: usize) -> bool {
        self.orgs[k].state.state().is_some_and(|s| !s.closed)
    }

    fn company_name(&mut self) -> String {
        let company = *self.rng.pick(COMPANY);
        let trade = *self.rng.pick(TRADE);
        let legal = *self.rng.pick(LEGAL);
        format!("{company} {trade} {legal}")
    }

    pub(super) fn org(&mut self, k: usize, step: OrgStep, at: Timestamp) -> anyhow::Result<()> {
        if step == OrgStep::Register {
            return self.register(k, at);
        }
        let action = match step {
            OrgStep::Register => unreachable!("handled above"),
            OrgStep::Rename => None,
            OrgStep::Move => {
                let has_parent = self.orgs[k]
                    .state
                    .state()
                    .is_some_and(|s| s.parent_id.is_some());
                if has_parent && self.rng.chance(0.5) {
                    Some(OrganizationAction::Move { new_parent: None })
                } else if self.customers.is_empty() {
                    None
                } else {
                    let q = *self.rng.pick(&self.customers);
                    Some(OrganizationAction::Move {
                        new_parent: Some(self.org_ref(q)),
                    })
                }
            }
            OrgStep::Delegate if !self.partners.is_empty() => {
                let q = *self.rng.pick(&self.partners);
                Some(OrganizationAction::GrantPartnerDelegation {
                    partner: self.org_ref(q),
                })
            }
            OrgStep::Delegate => None,
            OrgStep::Undelegate => self.orgs[k]
                .state
                .state()
                .and_then(|s| s.delegated_partners.iter().next().copied())
                .map(|partner_id| OrganizationAction::RevokePartnerDelegation { partner_id }),
            OrgStep::Close => Some(OrganizationAction::Close),
        };
        let decided = action.map(|action| {
            let org = &self.orgs[k];
            org.state.decide(&OrganizationCommand {
                organization_id: org.id,
                at,
                action,
            })
        });
        let events = match decided {
            Some(Ok(events)) if !events.is_empty() => events,
            // Refused (a move that would make a cycle, a partner already delegated) or nothing
            // to do: the administrator renames the organization instead, so the planned count
            // holds.
            _ => {
                let mut name = self.company_name();
                let org = &self.orgs[k];
                if org.state.state().is_some_and(|s| s.name.as_str() == name) {
                    name.push_str(" Group");
                }
                org.state.decide(&OrganizationCommand {
                    organization_id: org.id,
                    at,
                    action: OrganizationAction::Rename {
                        name: Name::parse(&name)?,
                    },
                })?
            }
        };
        self.org_events(k, events, at)
    }

    fn register(&mut self, k: usize, at: Timestamp) -> anyhow::Result<()> {
        let kind = self.orgs[k].kind;
        let (name, parent) = match kind {
            OrganizationKind::Vendor => ("Acme Software GmbH".to_owned(), None),
            OrganizationKind::Partner => {
                let company = *self.rng.pick(COMPANY);
                (format!("{company} Software Partners"), None)
            }
            OrganizationKind::Customer => {
                // A quarter of the customers are subsidiaries or locations (three levels at
                // most) of an open customer.
                let parent = if !self.customers.is_empty() && self.rng.chance(0.25) {
                    let q = *self.rng.pick(&self.customers);
                    let parent = self.org_ref(q);
                    parent
                        .facts
                        .as_ref()
                        .is_some_and(|f| !f.closed && f.lineage.len() < 3)
                        .then_some((q, parent))
                } else {
                    None
                };
                match parent {
                    Some((q, parent)) => {
                        let base = self.orgs[q]
                            .state
                            .state()
                            .map(|s| s.name.as_str().to_owned())
                            .unwrap_or_default();
                        (format!("{base} {}", self.rng.pick(CITIES)), Some(parent))
                    }
                    None => (self.company_name(), None),
                }
            }
        };
        let org = &self.orgs[k];
        let events = org.state.decide(&OrganizationCommand {
            organization_id: org.id,
            at,
            action: OrganizationAction::Register {
                name: Name::parse(&name)?,
                kind,
                parent,
            },
        })?;
        match kind {
            OrganizationKind::Customer => self.customers.push(k),
            OrganizationKind::Partner => self.partners.push(k),
            OrganizationKind::Vendor => {}
        }
        self.org_events(k, events, at)
    }

    /// Writes an organization's events and folds them into its state with `Organization`'s own
    /// `apply`.
    fn org_events(
        &mut self,
        k: usize,
        events: Vec<OrganizationEvent>,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(self.admin(), at)?;
        let org = &mut self.orgs[k];
        self.out.emit(&mut org.stream, &events, &meta, at)?;
        for event in events {
            org.state.apply(event);
        }
        Ok(())
    }
}
