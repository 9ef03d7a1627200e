//! The User aggregate: a natural person known through an external identity provider (issuer +
//! subject), with the roles it holds at organizations. The ledger stores no password: login,
//! MFA and SSO belong to the provider (DOMAIN.md "Users, roles and reach").
//!
//! A user starts either **registered** (linked to its identity at once) or **invited** (an email
//! and roles, claimed by the first token of a configured issuer carrying that email, verified).
//! Roles are granted and revoked one by one, so the audit trail says who gave which right when.
//! Deactivation is final and takes effect on the next request: authentication folds the user's
//! state, nothing caches a grant past it.
//!
//! Decisions about organizations (does it exist, is it open, what kind is it) are taken from the
//! [`OrganizationRef`] the write side put into the command; uniqueness of emails and identities
//! across users is the store's (unique claims in the statement that appends the event).

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{OrganizationId, UserId};
use crate::organization::OrganizationRef;
use crate::reach::Grant;
use crate::stream::{AggregateType, ClaimScope};
use crate::values::{Email, Issuer, OrganizationKind, Role, Subject};

/// An external identity: the issuer and its subject (`iss`, `sub`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    pub issuer: Issuer,
    pub subject: Subject,
}

impl Identity {
    /// The value the identity claims unique: issuer identifiers carry no `#` (no fragment), so
    /// the pair reads back unambiguously.
    pub fn claim_value(issuer: &Issuer, subject: &Subject) -> String {
        format!("{}#{}", issuer.as_str(), subject.as_str())
    }
}

/// A command to a user.
#[derive(Clone, Debug, PartialEq)]
pub struct UserCommand {
    pub user_id: UserId,
    pub at: Timestamp,
    pub action: UserAction,
}

/// What to do to the user.
#[derive(Clone, Debug, PartialEq)]
pub enum UserAction {
    /// A new user at `organization` with `roles` there: linked at once with an identity, or
    /// invited by email without one — to be claimed through `invitation_issuer` only, when
    /// given.
    Register {
        email: Email,
        organization: OrganizationRef,
        identity: Option<Identity>,
        invitation_issuer: Option<Issuer>,
        roles: BTreeSet<Role>,
    },
    /// The first token carrying the invitation's email claims it.
    ClaimInvitation {
        identity: Identity,
        email: Email,
        email_verified: bool,
    },
    /// Sets the user's roles at `organization` to exactly `roles` (grants and revokes the
    /// difference).
    SetRoles {
        organization: OrganizationRef,
        roles: BTreeSet<Role>,
    },
    Deactivate,
    /// Undoes a deactivation: the user's tokens and logins work again, with the roles it held
    /// (a deactivated user keeps its email and identity, so it cannot be invited anew).
    Reactivate,
}

/// Events of a user's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    #[serde(rename = "UserRegistered")]
    Registered {
        email: Email,
        organization_id: OrganizationId,
        issuer: Issuer,
        subject: Subject,
    },
    #[serde(rename = "UserInvited")]
    Invited {
        email: Email,
        organization_id: OrganizationId,
        roles: Vec<Role>,
        /// The only issuer whose tokens may claim the invitation (`null`: any configured one).
        /// With several providers configured, another customer's provider could otherwise
        /// vouch for this email and take the invitation.
        issuer: Option<Issuer>,
    },
    #[serde(rename = "InvitationClaimed")]
    InvitationClaimed { issuer: Issuer, subject: Subject },
    #[serde(rename = "RoleGranted")]
    RoleGranted {
        role: Role,
        organization_id: OrganizationId,
    },
    #[serde(rename = "RoleRevoked")]
    RoleRevoked {
        role: Role,
        organization_id: OrganizationId,
    },
    #[serde(rename = "UserDeactivated")]
    Deactivated {},
    #[serde(rename = "UserReactivated")]
    Reactivated {},
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered { .. } => "UserRegistered",
            Self::Invited { .. } => "UserInvited",
            Self::InvitationClaimed { .. } => "InvitationClaimed",
            Self::RoleGranted { .. } => "RoleGranted",
            Self::RoleRevoked { .. } => "RoleRevoked",
            Self::Deactivated {} => "UserDeactivated",
            Self::Reactivated {} => "UserReactivated",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for UserEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::User.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("UserRegistered", "1"),
        ("UserInvited", "1"),
        ("InvitationClaimed", "1"),
        ("RoleGranted", "1"),
        ("RoleRevoked", "1"),
        ("UserDeactivated", "1"),
        ("UserReactivated", "1"),
    ];

    /// An email belongs to one user, and an identity to one user: the second registration,
    /// invitation or claim of either is refused in the statement that would append it.
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        let email = |e: &Email| UniqueClaim {
            scope: ClaimScope::UserEmail.as_str(),
            value: e.as_str().to_owned(),
        };
        let identity = |i: &Issuer, s: &Subject| UniqueClaim {
            scope: ClaimScope::UserIdentity.as_str(),
            value: Identity::claim_value(i, s),
        };
        match self {
            Self::Registered {
                email: e,
                issuer,
                subject,
                ..
            } => vec![email(e), identity(issuer, subject)],
            Self::Invited { email: e, .. } => vec![email(e)],
            Self::InvitationClaimed { issuer, subject } => vec![identity(issuer, subject)],
            Self::RoleGranted { .. }
            | Self::RoleRevoked { .. }
            | Self::Deactivated {}
            | Self::Reactivated {} => Vec::new(),
        }
    }
}

/// The state of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub email: Email,
    /// The organization the user was registered or invited at (its home in lists).
    pub organization_id: OrganizationId,
    /// `None` while an invitation waits to be claimed.
    pub identity: Option<Identity>,
    /// The issuer an invitation may be claimed through, when it names one.
    pub invitation_issuer: Option<Issuer>,
    pub grants: BTreeSet<Grant>,
    pub deactivated: bool,
}

impl UserState {
    /// The roles the user holds, for reach; none once deactivated or while invited (an
    /// invitation cannot authenticate, but nothing should rest on that alone).
    pub fn effective_grants(&self) -> Vec<Grant> {
        if self.deactivated || self.identity.is_none() {
            return Vec::new();
        }
        self.grants.iter().copied().collect()
    }
}

/// The User aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum User {
    #[default]
    Unknown,
    Known(UserState),
}

/// Refuses roles that do not belong at an organization of `kind`: vendor roles are held at the
/// vendor's own organizations, customer roles at customers' and partners'.
fn check_roles_fit(
    organization: &OrganizationRef,
    roles: &BTreeSet<Role>,
) -> Result<(), DomainError> {
    let facts = organization.require_open()?;
    for role in roles {
        let fits = if role.is_vendor() {
            facts.kind == OrganizationKind::Vendor
        } else {
            facts.kind != OrganizationKind::Vendor
        };
        if !fits {
            return Err(DomainError::RoleNotHeldThere {
                role: *role,
                kind: facts.kind,
            });
        }
    }
    Ok(())
}

impl User {
    /// The state, when the user exists.
    pub fn state(&self) -> Option<&UserState> {
        match self {
            Self::Unknown => None,
            Self::Known(state) => Some(state),
        }
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &UserCommand) -> Result<Vec<UserEvent>, DomainError> {
        let id = cmd.user_id;
        let state = match (self, &cmd.action) {
            (
                Self::Unknown,
                UserAction::Register {
                    email,
                    organization,
                    identity,
                    invitation_issuer,
                    roles,
                },
            ) => {
                check_roles_fit(organization, roles)?;
                let organization_id = organization.id;
                let mut events = Vec::with_capacity(roles.len() + 1);
                match identity {
                    Some(identity) => {
                        events.push(UserEvent::Registered {
                            email: email.clone(),
                            organization_id,
                            issuer: identity.issuer.clone(),
                            subject: identity.subject.clone(),
                        });
                        events.extend(roles.iter().map(|role| UserEvent::RoleGranted {
                            role: *role,
                            organization_id,
                        }));
                    }
                    None => events.push(UserEvent::Invited {
                        email: email.clone(),
                        organization_id,
                        roles: roles.iter().copied().collect(),
                        issuer: invitation_issuer.clone(),
                    }),
                }
                return Ok(events);
            }
            (Self::Known(_), UserAction::Register { .. }) => {
                return Err(DomainError::UserAlreadyRegistered(id));
            }
            (Self::Unknown, _) => return Err(DomainError::UserNotFound(id)),
            (Self::Known(state), _) => state,
        };
        if matches!(cmd.action, UserAction::Reactivate) {
            // Reactivating an active user changes nothing.
            return Ok(if state.deactivated {
                vec![UserEvent::Reactivated {}]
            } else {
                Vec::new()
            });
        }
        if state.deactivated {
            return Err(DomainError::UserDeactivated(id));
        }
        match &cmd.action {
            UserAction::Register { .. } => unreachable!("handled above"),
            UserAction::ClaimInvitation {
                identity,
                email,
                email_verified,
            } => {
                if state.identity.is_some() {
                    return Err(DomainError::InvitationAlreadyClaimed(id));
                }
                if !email_verified || *email != state.email {
                    return Err(DomainError::InvitationEmailUnverified);
                }
                if state
                    .invitation_issuer
                    .as_ref()
                    .is_some_and(|i| *i != identity.issuer)
                {
                    return Err(DomainError::InvitationIssuerMismatch);
                }
                Ok(vec![UserEvent::InvitationClaimed {
                    issuer: identity.issuer.clone(),
                    subject: identity.subject.clone(),
                }])
            }
            UserAction::SetRoles {
                organization,
                roles,
            } => {
                let organization_id = organization.id;
                let held: BTreeSet<Role> = state
                    .grants
                    .iter()
                    .filter(|g| g.organization_id == organization_id)
                    .map(|g| g.role)
                    .collect();
                // Revoking needs no open organization (a closed one's grants may still be
                // cleared); granting does.
                let granted: BTreeSet<Role> = roles.difference(&held).copied().collect();
                if !granted.is_empty() {
                    check_roles_fit(organization, &granted)?;
                }
                let mut events: Vec<UserEvent> = held
                    .difference(roles)
                    .map(|role| UserEvent::RoleRevoked {
                        role: *role,
                        organization_id,
                    })
                    .collect();
                events.extend(granted.into_iter().map(|role| UserEvent::RoleGranted {
                    role,
                    organization_id,
                }));
                Ok(events)
            }
            UserAction::Deactivate => Ok(vec![UserEvent::Deactivated {}]),
            UserAction::Reactivate => unreachable!("handled above"),
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = AggregateType::User.as_str();
    type Command = UserCommand;
    type Event = UserEvent;
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
            UserEvent::Registered {
                email,
                organization_id,
                issuer,
                subject,
            } => {
                *self = Self::Known(UserState {
                    email,
                    organization_id,
                    identity: Some(Identity { issuer, subject }),
                    invitation_issuer: None,
                    grants: BTreeSet::new(),
                    deactivated: false,
                });
            }
            UserEvent::Invited {
                email,
                organization_id,
                roles,
                issuer,
            } => {
                *self = Self::Known(UserState {
                    email,
                    organization_id,
                    identity: None,
                    invitation_issuer: issuer,
                    grants: roles
                        .into_iter()
                        .map(|role| Grant {
                            role,
                            organization_id,
                        })
                        .collect(),
                    deactivated: false,
                });
            }
            other => {
                let Self::Known(state) = self else { return };
                match other {
                    UserEvent::Registered { .. } | UserEvent::Invited { .. } => {}
                    UserEvent::InvitationClaimed { issuer, subject } => {
                        state.identity = Some(Identity { issuer, subject });
                    }
                    UserEvent::RoleGranted {
                        role,
                        organization_id,
                    } => {
                        state.grants.insert(Grant {
                            role,
                            organization_id,
                        });
                    }
                    UserEvent::RoleRevoked {
                        role,
                        organization_id,
                    } => {
                        state.grants.remove(&Grant {
                            role,
                            organization_id,
                        });
                    }
                    UserEvent::Deactivated {} => state.deactivated = true,
                    UserEvent::Reactivated {} => state.deactivated = false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organization::OrganizationFacts;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    type Framework = TestFramework<User>;

    fn uid() -> UserId {
        UserId::from_uuid(Uuid::from_u128(1))
    }
    fn org(n: u128) -> OrganizationId {
        OrganizationId::from_uuid(Uuid::from_u128(n))
    }
    fn open(n: u128, kind: OrganizationKind) -> OrganizationRef {
        OrganizationRef {
            id: org(n),
            facts: Some(OrganizationFacts {
                kind,
                closed: false,
                lineage: vec![org(n)],
            }),
        }
    }
    fn at() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }
    fn cmd(action: UserAction) -> UserCommand {
        UserCommand {
            user_id: uid(),
            at: at(),
            action,
        }
    }
    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }
    fn identity(sub: &str) -> Identity {
        Identity {
            issuer: Issuer::parse("https://login.example.com").unwrap(),
            subject: Subject::parse(sub).unwrap(),
        }
    }
    fn roles(r: &[Role]) -> BTreeSet<Role> {
        r.iter().copied().collect()
    }
    fn invited() -> UserEvent {
        UserEvent::Invited {
            email: email("ana@acme.example"),
            organization_id: org(5),
            roles: vec![Role::CustomerAdmin],
            issuer: None,
        }
    }

    #[test]
    fn a_user_with_an_identity_is_registered_with_its_roles() {
        Framework::with(())
            .given_no_previous_events()
            .when(cmd(UserAction::Register {
                email: email("Ana@Acme.example"),
                organization: open(5, OrganizationKind::Customer),
                identity: Some(identity("ana")),
                invitation_issuer: None,
                roles: roles(&[Role::LicenseManager, Role::CustomerAdmin]),
            }))
            .then_expect_events(vec![
                UserEvent::Registered {
                    email: email("ana@acme.example"),
                    organization_id: org(5),
                    issuer: identity("ana").issuer,
                    subject: identity("ana").subject,
                },
                UserEvent::RoleGranted {
                    role: Role::CustomerAdmin,
                    organization_id: org(5),
                },
                UserEvent::RoleGranted {
                    role: Role::LicenseManager,
                    organization_id: org(5),
                },
            ]);
    }

    #[test]
    fn without_an_identity_it_is_an_invitation() {
        Framework::with(())
            .given_no_previous_events()
            .when(cmd(UserAction::Register {
                email: email("ana@acme.example"),
                organization: open(5, OrganizationKind::Customer),
                identity: None,
                invitation_issuer: None,
                roles: roles(&[Role::CustomerAdmin]),
            }))
            .then_expect_events(vec![invited()]);
    }

    #[test]
    fn roles_must_fit_the_organization() {
        Framework::with(())
            .given_no_previous_events()
            .when(cmd(UserAction::Register {
                email: email("ana@acme.example"),
                organization: open(5, OrganizationKind::Customer),
                identity: None,
                invitation_issuer: None,
                roles: roles(&[Role::VendorAdmin]),
            }))
            .then_expect_error(DomainError::RoleNotHeldThere {
                role: Role::VendorAdmin,
                kind: OrganizationKind::Customer,
            });
        Framework::with(())
            .given_no_previous_events()
            .when(cmd(UserAction::Register {
                email: email("ana@vendor.example"),
                organization: open(1, OrganizationKind::Vendor),
                identity: None,
                invitation_issuer: None,
                roles: roles(&[Role::CustomerAdmin]),
            }))
            .then_expect_error(DomainError::RoleNotHeldThere {
                role: Role::CustomerAdmin,
                kind: OrganizationKind::Vendor,
            });
    }

    #[test]
    fn an_unknown_or_closed_organization_refuses_the_user() {
        let unknown = OrganizationRef {
            id: org(9),
            facts: None,
        };
        Framework::with(())
            .given_no_previous_events()
            .when(cmd(UserAction::Register {
                email: email("ana@acme.example"),
                organization: unknown,
                identity: None,
                invitation_issuer: None,
                roles: roles(&[]),
            }))
            .then_expect_error(DomainError::OrganizationNotFound(org(9)));
    }

    #[test]
    fn an_invitation_is_claimed_once_by_a_verified_matching_email() {
        Framework::with(())
            .given(vec![invited()])
            .when(cmd(UserAction::ClaimInvitation {
                identity: identity("ana"),
                email: email("ANA@acme.example"),
                email_verified: true,
            }))
            .then_expect_events(vec![UserEvent::InvitationClaimed {
                issuer: identity("ana").issuer,
                subject: identity("ana").subject,
            }]);
        Framework::with(())
            .given(vec![invited()])
            .when(cmd(UserAction::ClaimInvitation {
                identity: identity("ana"),
                email: email("ana@acme.example"),
                email_verified: false,
            }))
            .then_expect_error(DomainError::InvitationEmailUnverified);
        Framework::with(())
            .given(vec![
                invited(),
                UserEvent::InvitationClaimed {
                    issuer: identity("ana").issuer,
                    subject: identity("ana").subject,
                },
            ])
            .when(cmd(UserAction::ClaimInvitation {
                identity: identity("mallory"),
                email: email("ana@acme.example"),
                email_verified: true,
            }))
            .then_expect_error(DomainError::InvitationAlreadyClaimed(uid()));
    }

    #[test]
    fn an_invitation_bound_to_an_issuer_is_claimed_through_it_only() {
        let bound = UserEvent::Invited {
            email: email("ana@acme.example"),
            organization_id: org(5),
            roles: vec![Role::CustomerAdmin],
            issuer: Some(Issuer::parse("https://login.acme.example").unwrap()),
        };
        Framework::with(())
            .given(vec![bound.clone()])
            .when(cmd(UserAction::ClaimInvitation {
                identity: identity("ana"),
                email: email("ana@acme.example"),
                email_verified: true,
            }))
            .then_expect_error(DomainError::InvitationIssuerMismatch);
        Framework::with(())
            .given(vec![bound])
            .when(cmd(UserAction::ClaimInvitation {
                identity: Identity {
                    issuer: Issuer::parse("https://login.acme.example").unwrap(),
                    subject: Subject::parse("ana").unwrap(),
                },
                email: email("ana@acme.example"),
                email_verified: true,
            }))
            .then_expect_events(vec![UserEvent::InvitationClaimed {
                issuer: Issuer::parse("https://login.acme.example").unwrap(),
                subject: Subject::parse("ana").unwrap(),
            }]);
    }

    #[test]
    fn set_roles_grants_and_revokes_the_difference() {
        Framework::with(())
            .given(vec![invited()])
            .when(cmd(UserAction::SetRoles {
                organization: open(5, OrganizationKind::Customer),
                roles: roles(&[Role::LicenseManager, Role::BillingAdmin]),
            }))
            .then_expect_events(vec![
                UserEvent::RoleRevoked {
                    role: Role::CustomerAdmin,
                    organization_id: org(5),
                },
                UserEvent::RoleGranted {
                    role: Role::LicenseManager,
                    organization_id: org(5),
                },
                UserEvent::RoleGranted {
                    role: Role::BillingAdmin,
                    organization_id: org(5),
                },
            ]);
        // Nothing to change: no event.
        Framework::with(())
            .given(vec![invited()])
            .when(cmd(UserAction::SetRoles {
                organization: open(5, OrganizationKind::Customer),
                roles: roles(&[Role::CustomerAdmin]),
            }))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_deactivated_user_changes_no_more_and_holds_nothing() {
        Framework::with(())
            .given(vec![invited(), UserEvent::Deactivated {}])
            .when(cmd(UserAction::Deactivate))
            .then_expect_error(DomainError::UserDeactivated(uid()));
        let mut user = User::default();
        user.apply(invited());
        user.apply(UserEvent::InvitationClaimed {
            issuer: identity("ana").issuer,
            subject: identity("ana").subject,
        });
        assert_eq!(user.state().unwrap().effective_grants().len(), 1);
        user.apply(UserEvent::Deactivated {});
        assert!(user.state().unwrap().effective_grants().is_empty());
    }

    #[test]
    fn a_reactivated_user_holds_its_roles_again() {
        Framework::with(())
            .given(vec![invited(), UserEvent::Deactivated {}])
            .when(cmd(UserAction::Reactivate))
            .then_expect_events(vec![UserEvent::Reactivated {}]);
        // An active user: nothing to undo.
        Framework::with(())
            .given(vec![invited()])
            .when(cmd(UserAction::Reactivate))
            .then_expect_events(vec![]);
        let mut user = User::default();
        user.apply(invited());
        user.apply(UserEvent::InvitationClaimed {
            issuer: identity("ana").issuer,
            subject: identity("ana").subject,
        });
        user.apply(UserEvent::Deactivated {});
        assert!(user.state().unwrap().effective_grants().is_empty());
        user.apply(UserEvent::Reactivated {});
        assert!(!user.state().unwrap().deactivated);
        assert_eq!(user.state().unwrap().effective_grants().len(), 1);
    }

    #[test]
    fn emails_and_identities_are_claimed_unique() {
        let claims = UserEvent::Registered {
            email: email("ana@acme.example"),
            organization_id: org(5),
            issuer: identity("ana").issuer,
            subject: identity("ana").subject,
        }
        .unique_claims();
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].value, "ana@acme.example");
        assert_eq!(claims[1].value, "https://login.example.com#ana");
    }
}
