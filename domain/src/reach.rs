//! Reach: what a principal may do where. One pure function of the organization tree, the partner
//! delegations and the principal's role grants; every route asks it, none decides access by
//! itself (DOMAIN.md "Users, roles and reach").
//!
//! The rules:
//! - A vendor role (`vendor_admin`, `vendor_support`, `vendor_auditor`) reaches every
//!   organization, with that role's actions.
//! - A customer role held *at* an organization reaches that organization and all its descendants.
//! - A delegation of organization D to partner P extends the customer roles that reach P
//!   *directly* (held at P or at one of its ancestors) over D and D's descendants, marked
//!   delegated, except delegating onwards (`ManageDelegations`): the customer granted P, not
//!   P's partners, and a re-delegation would outlive the customer's revocation. Delegations are
//!   not followed transitively either: a partner's users do not reach what the delegated
//!   customer delegated onwards.
//! - Moving an organization moves what reaches it: reach is computed from the tree as it is now,
//!   nothing is copied into grants.
//!
//! [`Reach::compute`] keeps only the *roots* of what a principal reaches (its grants' organizations
//! and the delegated organizations), so asking about one organization walks its lineage (at most
//! [`MAX_DEPTH`](crate::organization::MAX_DEPTH) steps) instead of materializing a subtree; the
//! full set is enumerated only for `GET /v1/me` and lists ([`Reach::organizations`]).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ids::OrganizationId;
use crate::organization::MAX_DEPTH;
use crate::values::Role;

/// Something a route does, as reach grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Action {
    /// Read organizations (names, tree, delegations).
    ReadOrganizations = 1 << 0,
    /// Read licenses, their installations and entitlements.
    ReadLicenses = 1 << 1,
    /// Read users and their roles.
    ReadUsers = 1 << 2,
    /// Invite and deactivate users, grant and revoke roles.
    ManageUsers = 1 << 3,
    /// Create sub-organizations, rename them.
    ManageOrganizations = 1 << 4,
    /// Grant and revoke partner delegations.
    ManageDelegations = 1 << 5,
    /// Assign licenses to named users.
    AssignLicenses = 1 << 6,
    /// Deactivate installations.
    ManageInstallations = 1 << 7,
    /// List releases and create download links.
    Download = 1 << 8,
    /// Read subscriptions and billing state.
    ReadBilling = 1 << 9,
    /// Suspend and reinstate licenses (vendor support).
    Support = 1 << 10,
    /// Act as a user (vendor support).
    Impersonate = 1 << 11,
    /// Read the audit trail and export it.
    Audit = 1 << 12,
    /// Everything else that changes the ledger: the catalogue, issuing and changing licenses,
    /// tokens, moving and closing organizations (vendor administration).
    Administer = 1 << 13,
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Self; 14] = [
        Self::ReadOrganizations,
        Self::ReadLicenses,
        Self::ReadUsers,
        Self::ManageUsers,
        Self::ManageOrganizations,
        Self::ManageDelegations,
        Self::AssignLicenses,
        Self::ManageInstallations,
        Self::Download,
        Self::ReadBilling,
        Self::Support,
        Self::Impersonate,
        Self::Audit,
        Self::Administer,
    ];
}

/// A set of [`Action`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Actions(u32);

impl Actions {
    /// No action.
    pub const NONE: Self = Self(0);

    /// A set of the given actions.
    pub const fn of(actions: &[Action]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < actions.len() {
            bits |= actions[i] as u32;
            i += 1;
        }
        Self(bits)
    }

    /// Whether `action` is in the set.
    pub const fn contains(self, action: Action) -> bool {
        self.0 & action as u32 != 0
    }

    /// Both sets together.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The set without `action`.
    #[must_use]
    pub const fn without(self, action: Action) -> Self {
        Self(self.0 & !(action as u32))
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in [`Action::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

const READ_EVERYTHING: Actions = Actions::of(&[
    Action::ReadOrganizations,
    Action::ReadLicenses,
    Action::ReadUsers,
    Action::ReadBilling,
]);

impl Role {
    /// Whether the role is held by vendor staff (it reaches everything).
    pub const fn is_vendor(self) -> bool {
        matches!(
            self,
            Self::VendorAdmin | Self::VendorSupport | Self::VendorAuditor
        )
    }

    /// What the role may do where it reaches (API.md's table of roles).
    pub const fn actions(self) -> Actions {
        use Action::*;
        match self {
            Self::VendorAdmin => Actions(u32::MAX),
            Self::VendorSupport => READ_EVERYTHING.union(Actions::of(&[Support, Impersonate])),
            Self::VendorAuditor => READ_EVERYTHING.union(Actions::of(&[Audit])),
            Self::CustomerAdmin => Actions::of(&[
                ReadOrganizations,
                ReadLicenses,
                ReadUsers,
                ManageUsers,
                ManageOrganizations,
                ManageDelegations,
                AssignLicenses,
                ManageInstallations,
                Download,
                ReadBilling,
            ]),
            Self::LicenseManager => {
                Actions::of(&[ReadLicenses, AssignLicenses, ManageInstallations])
            }
            Self::DownloadManager => Actions::of(&[ReadLicenses, Download]),
            Self::SupportContact => Actions::of(&[ReadOrganizations, ReadLicenses]),
            Self::BillingAdmin => Actions::of(&[ReadLicenses, ReadBilling]),
        }
    }
}

/// A role held at an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub organization_id: OrganizationId,
}

/// The organization tree and the delegations, as reach needs them.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    parent: HashMap<OrganizationId, Option<OrganizationId>>,
    children: HashMap<OrganizationId, Vec<OrganizationId>>,
    /// Partner → the organizations delegated to it.
    delegated_to: HashMap<OrganizationId, Vec<OrganizationId>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or re-parents) `id` under `parent`.
    pub fn insert(&mut self, id: OrganizationId, parent: Option<OrganizationId>) {
        if let Some(Some(old)) = self.parent.insert(id, parent)
            && let Some(siblings) = self.children.get_mut(&old)
        {
            siblings.retain(|c| *c != id);
        }
        if let Some(p) = parent {
            self.children.entry(p).or_default().push(id);
        }
    }

    /// Records that `organization` is delegated to `partner`.
    pub fn delegate(&mut self, organization: OrganizationId, partner: OrganizationId) {
        let list = self.delegated_to.entry(partner).or_default();
        if !list.contains(&organization) {
            list.push(organization);
        }
    }

    /// Ends the delegation of `organization` to `partner`.
    pub fn revoke(&mut self, organization: OrganizationId, partner: OrganizationId) {
        if let Some(list) = self.delegated_to.get_mut(&partner) {
            list.retain(|o| *o != organization);
        }
    }

    /// Whether `id` is an organization of the tree.
    pub fn contains(&self, id: OrganizationId) -> bool {
        self.parent.contains_key(&id)
    }

    /// The parent of `id`, if it has one.
    pub fn parent(&self, id: OrganizationId) -> Option<OrganizationId> {
        self.parent.get(&id).copied().flatten()
    }

    /// The direct children of `id`.
    pub fn children(&self, id: OrganizationId) -> &[OrganizationId] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    /// `id` and its ancestors, itself first. Bounded by [`MAX_DEPTH`]: the write side keeps trees
    /// shallower, and a corrupt tree with a cycle must not hang a request.
    pub fn lineage(&self, id: OrganizationId) -> impl Iterator<Item = OrganizationId> + '_ {
        let mut next = self.contains(id).then_some(id);
        std::iter::from_fn(move || {
            let current = next?;
            next = self.parent(current);
            Some(current)
        })
        .take(MAX_DEPTH + 1)
    }

    /// Whether `a` and `b` stand on one line of descent: one is the other, or an ancestor of
    /// it. Siblings, cousins and separate trees are not.
    pub fn on_one_line(&self, a: OrganizationId, b: OrganizationId) -> bool {
        self.lineage(a).any(|o| o == b) || self.lineage(b).any(|o| o == a)
    }

    /// `id` and all its descendants, breadth first.
    pub fn subtree(&self, id: OrganizationId) -> impl Iterator<Item = OrganizationId> + '_ {
        let mut queue: VecDeque<OrganizationId> =
            self.contains(id).then_some(id).into_iter().collect();
        let mut seen = HashSet::new();
        std::iter::from_fn(move || {
            loop {
                let current = queue.pop_front()?;
                if seen.insert(current) {
                    queue.extend(self.children(current).iter().copied());
                    return Some(current);
                }
            }
        })
    }

    /// The number of organizations.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    /// Whether the tree holds no organization.
    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
}

/// Where a principal's actions start: an organization and what may be done over its subtree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Root {
    pub organization_id: OrganizationId,
    pub actions: Actions,
    /// Reached through a partner delegation.
    pub delegated: bool,
}

/// What one organization is to a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reached {
    pub organization_id: OrganizationId,
    pub actions: Actions,
    /// Reached only through a partner delegation (no grant of the principal's own covers it).
    pub delegated: bool,
}

/// What a principal may do where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    /// Actions everywhere (vendor roles).
    everywhere: Actions,
    roots: Vec<Root>,
}

impl Reach {
    /// Nothing anywhere (a deactivated user, a principal with no grant).
    pub fn nothing() -> Self {
        Self {
            everywhere: Actions::NONE,
            roots: Vec::new(),
        }
    }

    /// Reach of a principal holding `grants`, over `tree`. Grants at organizations the tree does
    /// not hold reach nothing.
    pub fn compute(tree: &Tree, grants: &[Grant]) -> Self {
        let mut everywhere = Actions::NONE;
        let mut roots: Vec<Root> = Vec::new();
        for grant in grants {
            if grant.role.is_vendor() {
                everywhere = everywhere.union(grant.role.actions());
            } else if tree.contains(grant.organization_id) {
                roots.push(Root {
                    organization_id: grant.organization_id,
                    actions: grant.role.actions(),
                    delegated: false,
                });
            }
        }
        // Delegations: every partner a direct root reaches passes the root's actions over the
        // organizations delegated to it. Found from the delegations' side (there are few
        // partners), asking for each partner whether one of its ancestors is a direct root.
        let direct = roots.clone();
        let mut delegated: Vec<Root> = Vec::new();
        for (partner, organizations) in &tree.delegated_to {
            if organizations.is_empty() {
                continue;
            }
            // Minus delegating onwards: what the customer handed its partner is not the
            // partner's to hand on (it would outlive the customer's revocation).
            let actions = tree
                .lineage(*partner)
                .flat_map(|o| direct.iter().filter(move |r| r.organization_id == o))
                .fold(Actions::NONE, |acc, r| acc.union(r.actions))
                .without(Action::ManageDelegations);
            if actions.is_empty() {
                continue;
            }
            for organization in organizations {
                if tree.contains(*organization) {
                    delegated.push(Root {
                        organization_id: *organization,
                        actions,
                        delegated: true,
                    });
                }
            }
        }
        roots.extend(delegated);
        roots.sort_by_key(|r| (r.organization_id, r.delegated));
        Self { everywhere, roots }
    }

    /// What the principal may do everywhere (vendor roles).
    pub const fn everywhere(&self) -> Actions {
        self.everywhere
    }

    /// What the principal may do at `organization` (nothing when it does not reach it).
    pub fn at(&self, tree: &Tree, organization: OrganizationId) -> Actions {
        if !tree.contains(organization) {
            return self.everywhere;
        }
        let mut actions = self.everywhere;
        if self.roots.is_empty() {
            return actions;
        }
        for ancestor in tree.lineage(organization) {
            for root in self.roots.iter().filter(|r| r.organization_id == ancestor) {
                actions = actions.union(root.actions);
            }
        }
        actions
    }

    /// Whether the principal reaches `organization` at all (may do anything there). What it does
    /// not reach answers exactly as an unknown id.
    pub fn reaches(&self, tree: &Tree, organization: OrganizationId) -> bool {
        !self.at(tree, organization).is_empty()
    }

    /// Whether the principal may do `action` at `organization`.
    pub fn may(&self, tree: &Tree, organization: OrganizationId, action: Action) -> bool {
        self.at(tree, organization).contains(action)
    }

    /// Every organization the principal reaches through its roots, with what it may do there;
    /// a vendor role's global reach is not enumerated (ask [`Self::is_global`]).
    pub fn organizations(&self, tree: &Tree) -> Vec<Reached> {
        let mut found: HashMap<OrganizationId, Reached> = HashMap::new();
        for root in &self.roots {
            for organization in tree.subtree(root.organization_id) {
                let entry = found.entry(organization).or_insert(Reached {
                    organization_id: organization,
                    actions: self.everywhere,
                    delegated: true,
                });
                entry.actions = entry.actions.union(root.actions);
                entry.delegated &= root.delegated;
            }
        }
        let mut all: Vec<Reached> = found.into_values().collect();
        all.sort_by_key(|r| r.organization_id);
        all
    }
}

#[cfg(test)]
mod tests;
