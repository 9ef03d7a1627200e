//! Reach: the rules table-tested on a small tree, and properties over generated trees checked
//! against a naive definition (walk every grant's subtree, follow every delegation).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use uuid::Uuid;

use super::*;

fn org(n: u128) -> OrganizationId {
    OrganizationId::from_uuid(Uuid::from_u128(n))
}

fn grant(role: Role, n: u128) -> Grant {
    Grant {
        role,
        organization_id: org(n),
    }
}

/// 1 vendor; 10 corporate > 11 subsidiary > 12 location; 13 a second subsidiary;
/// 20 partner > 21 partner branch; 30 another customer > 31 its child.
fn sample() -> Tree {
    let mut t = Tree::new();
    t.insert(org(1), None);
    t.insert(org(10), None);
    t.insert(org(11), Some(org(10)));
    t.insert(org(12), Some(org(11)));
    t.insert(org(13), Some(org(10)));
    t.insert(org(20), None);
    t.insert(org(21), Some(org(20)));
    t.insert(org(30), None);
    t.insert(org(31), Some(org(30)));
    t
}

#[test]
fn a_customer_role_reaches_its_organization_and_descendants_only() {
    let t = sample();
    let r = Reach::compute(&t, &[grant(Role::LicenseManager, 11)]);
    for reached in [11, 12] {
        assert!(r.may(&t, org(reached), Action::ReadLicenses), "{reached}");
        assert!(r.may(&t, org(reached), Action::AssignLicenses));
        assert!(!r.may(&t, org(reached), Action::ManageUsers));
    }
    for foreign in [1, 10, 13, 20, 21, 30, 31, 99] {
        assert!(!r.reaches(&t, org(foreign)), "{foreign}");
    }
    let listed: Vec<_> = r
        .organizations(&t)
        .iter()
        .map(|o| o.organization_id)
        .collect();
    assert_eq!(listed, vec![org(11), org(12)]);
}

#[test]
fn vendor_roles_reach_everything_with_their_actions() {
    let t = sample();
    let admin = Reach::compute(&t, &[grant(Role::VendorAdmin, 1)]);
    let support = Reach::compute(&t, &[grant(Role::VendorSupport, 1)]);
    let auditor = Reach::compute(&t, &[grant(Role::VendorAuditor, 1)]);
    for n in [1, 10, 12, 31] {
        for a in Action::ALL {
            assert!(admin.may(&t, org(n), a));
        }
        assert!(support.may(&t, org(n), Action::Support));
        assert!(support.may(&t, org(n), Action::Impersonate));
        assert!(!support.may(&t, org(n), Action::Administer));
        assert!(auditor.may(&t, org(n), Action::Audit));
        assert!(auditor.may(&t, org(n), Action::ReadLicenses));
        assert!(!auditor.may(&t, org(n), Action::Support));
    }
    assert!(!admin.everywhere().is_empty() && admin.organizations(&t).is_empty());
}

#[test]
fn the_roles_table_of_api_md() {
    use Action::*;
    let table: &[(Role, &[Action])] = &[
        (
            Role::CustomerAdmin,
            &[
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
            ],
        ),
        (
            Role::LicenseManager,
            &[ReadLicenses, AssignLicenses, ManageInstallations],
        ),
        (Role::DownloadManager, &[ReadLicenses, Download]),
        (Role::SupportContact, &[ReadOrganizations, ReadLicenses]),
        (Role::BillingAdmin, &[ReadLicenses, ReadBilling]),
        (
            Role::VendorSupport,
            &[
                ReadOrganizations,
                ReadLicenses,
                ReadUsers,
                ReadBilling,
                Support,
                Impersonate,
            ],
        ),
        (
            Role::VendorAuditor,
            &[
                ReadOrganizations,
                ReadLicenses,
                ReadUsers,
                ReadBilling,
                Audit,
            ],
        ),
    ];
    for (role, expected) in table {
        let got: Vec<Action> = role.actions().iter().collect();
        assert_eq!(&got, expected, "{role}");
        assert!(!role.actions().contains(Administer), "{role}");
    }
    assert_eq!(
        Role::VendorAdmin.actions().iter().count(),
        Action::ALL.len()
    );
}

#[test]
fn a_delegation_extends_the_partners_customer_roles_over_the_delegated_subtree() {
    let mut t = sample();
    t.delegate(org(30), org(21));
    // A role at the partner's root reaches the branch, so the delegation to the branch too.
    let at_root = Reach::compute(&t, &[grant(Role::CustomerAdmin, 20)]);
    for n in [20, 21, 30, 31] {
        assert!(at_root.may(&t, org(n), Action::ManageUsers), "{n}");
    }
    // It may not delegate onwards what was delegated to it.
    assert!(at_root.may(&t, org(21), Action::ManageDelegations));
    assert!(!at_root.may(&t, org(30), Action::ManageDelegations));
    assert!(!at_root.may(&t, org(31), Action::ManageDelegations));
    let listed = at_root.organizations(&t);
    let delegated: BTreeMap<_, _> = listed
        .iter()
        .map(|o| (o.organization_id, o.delegated))
        .collect();
    assert!(!delegated[&org(21)]);
    assert!(delegated[&org(30)]);
    assert!(delegated[&org(31)]);
    // The customer's own users are not extended anywhere by it.
    let customer = Reach::compute(&t, &[grant(Role::CustomerAdmin, 30)]);
    assert!(!customer.reaches(&t, org(21)));
    // Revoked: gone on the next computation.
    t.revoke(org(30), org(21));
    let after = Reach::compute(&t, &[grant(Role::CustomerAdmin, 20)]);
    assert!(!after.reaches(&t, org(30)));
}

#[test]
fn delegations_are_not_followed_transitively() {
    let mut t = sample();
    // 30 is delegated to partner 20; 30 delegated 10 onwards to its child 31 (as if a partner).
    t.delegate(org(30), org(20));
    t.delegate(org(10), org(31));
    let r = Reach::compute(&t, &[grant(Role::SupportContact, 20)]);
    assert!(r.reaches(&t, org(31)));
    assert!(
        !r.reaches(&t, org(10)),
        "a delegation reached only by delegation is not followed"
    );
}

#[test]
fn moving_an_organization_moves_what_reaches_it() {
    let mut t = sample();
    let r = Reach::compute(&t, &[grant(Role::CustomerAdmin, 10)]);
    assert!(r.reaches(&t, org(12)));
    t.insert(org(11), Some(org(30)));
    assert!(!r.reaches(&t, org(11)) && !r.reaches(&t, org(12)));
    let other = Reach::compute(&t, &[grant(Role::CustomerAdmin, 30)]);
    assert!(other.reaches(&t, org(12)));
    assert_eq!(t.children(org(10)), &[org(13)]);
}

#[test]
fn grants_at_unknown_organizations_and_no_grants_reach_nothing() {
    let t = sample();
    let r = Reach::compute(&t, &[grant(Role::CustomerAdmin, 77)]);
    assert!(r.organizations(&t).is_empty());
    assert!(!r.reaches(&t, org(77)));
    assert_eq!(Reach::compute(&t, &[]), Reach::nothing());
}

// ----- properties -----

/// A generated world: `parents[i]` is the parent index of organization i (always < i, so the
/// tree has no cycle by construction, as the write side guarantees), delegations (organization,
/// partner), grants (role index, organization).
#[derive(Clone, Debug)]
struct World {
    parents: Vec<Option<usize>>,
    delegations: Vec<(usize, usize)>,
    grants: Vec<(usize, usize)>,
}

const CUSTOMER_ROLES: [Role; 5] = [
    Role::CustomerAdmin,
    Role::LicenseManager,
    Role::DownloadManager,
    Role::SupportContact,
    Role::BillingAdmin,
];

fn world() -> impl Strategy<Value = World> {
    (2usize..40).prop_flat_map(|n| {
        let parents = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(None).boxed()
                } else {
                    prop_oneof![1 => Just(None), 4 => (0..i).prop_map(Some)].boxed()
                }
            })
            .collect::<Vec<_>>();
        (
            parents,
            proptest::collection::vec((0..n, 0..n), 0..6),
            proptest::collection::vec((0..CUSTOMER_ROLES.len(), 0..n), 0..4),
        )
            .prop_map(|(parents, delegations, grants)| World {
                parents,
                delegations,
                grants,
            })
    })
}

impl World {
    fn tree(&self) -> Tree {
        let mut t = Tree::new();
        for (i, p) in self.parents.iter().enumerate() {
            t.insert(org(i as u128), p.map(|p| org(p as u128)));
        }
        for (o, p) in &self.delegations {
            t.delegate(org(*o as u128), org(*p as u128));
        }
        t
    }
    fn grants(&self) -> Vec<Grant> {
        self.grants
            .iter()
            .map(|(r, o)| grant(CUSTOMER_ROLES[*r], *o as u128))
            .collect()
    }
    fn is_ancestor_or_self(&self, a: usize, mut b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.parents[b] {
                Some(p) => b = p,
                None => return false,
            }
        }
    }
    /// The naive definition: what each organization gets, from grants directly and through the
    /// delegations to partners those grants reach directly.
    fn expected(&self) -> BTreeMap<usize, Actions> {
        let n = self.parents.len();
        let mut out: BTreeMap<usize, Actions> = BTreeMap::new();
        for (r, g) in &self.grants {
            let actions = CUSTOMER_ROLES[*r].actions();
            for o in 0..n {
                if self.is_ancestor_or_self(*g, o) {
                    let e = out.entry(o).or_default();
                    *e = e.union(actions);
                }
            }
            for (d, p) in &self.delegations {
                if self.is_ancestor_or_self(*g, *p) {
                    for o in 0..n {
                        if self.is_ancestor_or_self(*d, o) {
                            let e = out.entry(o).or_default();
                            *e = e.union(actions.without(Action::ManageDelegations));
                        }
                    }
                }
            }
        }
        out
    }
}

proptest! {
    #[test]
    fn reach_is_exactly_the_grants_subtrees_and_their_delegations(w in world()) {
        let t = w.tree();
        let r = Reach::compute(&t, &w.grants());
        let expected = w.expected();
        for o in 0..w.parents.len() {
            let got = r.at(&t, org(o as u128));
            prop_assert_eq!(got, expected.get(&o).copied().unwrap_or_default(), "organization {}", o);
        }
        let listed: BTreeSet<usize> = r
            .organizations(&t)
            .iter()
            .map(|x| x.organization_id.as_uuid().as_u128() as usize)
            .collect();
        let reached: BTreeSet<usize> = expected.keys().copied().collect();
        prop_assert_eq!(listed, reached);
    }

    #[test]
    fn no_principal_reaches_outside_its_roots_subtrees_and_delegations(w in world()) {
        let t = w.tree();
        let r = Reach::compute(&t, &w.grants());
        for reached in r.organizations(&t) {
            let o = reached.organization_id.as_uuid().as_u128() as usize;
            let inside = w.grants.iter().any(|(_, g)| w.is_ancestor_or_self(*g, o))
                || w.delegations.iter().any(|(d, _)| w.is_ancestor_or_self(*d, o));
            prop_assert!(inside, "organization {} reached from nowhere", o);
        }
    }

    #[test]
    fn moving_a_subtree_moves_its_reach(w in world(), pick in 0usize..40, to in 0usize..40) {
        // Move organization `m` under `p` when that makes no cycle; then the reach of a grant at
        // `p` covers m's whole subtree, and a grant at m's old parent no longer does (unless it
        // is also an ancestor of p).
        let n = w.parents.len();
        let (m, p) = (pick % n, to % n);
        prop_assume!(!w.is_ancestor_or_self(m, p));
        let mut moved = w.clone();
        moved.delegations.clear();
        let old = moved.parents[m];
        moved.parents[m] = Some(p);
        let mut t = World { delegations: Vec::new(), ..w.clone() }.tree();
        t.insert(org(m as u128), Some(org(p as u128)));
        let at_p = Reach::compute(&t, &[grant(Role::SupportContact, p as u128)]);
        for o in 0..n {
            if moved.is_ancestor_or_self(m, o) {
                prop_assert!(at_p.reaches(&t, org(o as u128)));
            }
        }
        if let Some(old) = old
            && !moved.is_ancestor_or_self(old, p)
        {
            let at_old = Reach::compute(&t, &[grant(Role::SupportContact, old as u128)]);
            prop_assert!(!at_old.reaches(&t, org(m as u128)));
        }
    }
}

#[test]
fn organizations_on_one_line_of_descent() {
    let t = sample();
    assert!(
        t.on_one_line(org(12), org(10)),
        "a location and its corporation"
    );
    assert!(t.on_one_line(org(10), org(12)), "either way round");
    assert!(t.on_one_line(org(11), org(11)));
    assert!(!t.on_one_line(org(12), org(13)), "cousins");
    assert!(!t.on_one_line(org(10), org(20)), "separate trees");
    assert!(!t.on_one_line(org(10), org(99)), "unknown");
}
