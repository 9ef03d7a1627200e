//! The ApiToken aggregate: bearer tokens as event streams, so who held which rights when is part
//! of the audited history, and a revocation is effective on the very next request
//! (authentication folds the token's own stream; there is no cache to go stale).
//!
//! A token grants one of two things ([`TokenGrant`]):
//! - a **role**: a vendor role everywhere (administration tokens), or a customer role at one
//!   organization and its descendants (service tokens for a customer's or partner's
//!   integrations, `ApiTokenIssued` v2's `organization_id`);
//! - an **impersonation**: vendor staff acting as a user, with exactly that user's rights at
//!   each request (`ImpersonationStarted`); the staff member is recorded in the event and, by
//!   the write side, on every event the token causes (`impersonated_by`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{Actor, EventCodecError, VersionedEvent};
use crate::ids::{ApiTokenId, OrganizationId, UserId};
use crate::keys::KeyHash;
use crate::organization::OrganizationRef;
use crate::stream::AggregateType;
use crate::values::{Name, OrganizationKind, Reason, Role};

/// A command to a token.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiTokenCommand {
    pub token_id: ApiTokenId,
    pub at: Timestamp,
    pub action: ApiTokenAction,
}

/// What to do to the token.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiTokenAction {
    /// A token holding `role`: everywhere for a vendor role (no organization), at
    /// `organization` and below for a customer role.
    Issue {
        role: Role,
        label: Option<Name>,
        token_hash: KeyHash,
        expires_at: Option<Timestamp>,
        organization: Option<OrganizationRef>,
    },
    /// A token acting as user `user_id` for the staff member `started_by`.
    Impersonate {
        user_id: UserId,
        /// The user as its stream says now (looked up by the write side).
        user: ImpersonatedUser,
        reason: Reason,
        started_by: Actor,
        token_hash: KeyHash,
        expires_at: Timestamp,
    },
    Revoke,
}

/// What an impersonation decides on about the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImpersonatedUser {
    pub deactivated: bool,
    /// The user holds a vendor role somewhere: staff are not impersonated (support would act
    /// with an administrator's rights).
    pub vendor_staff: bool,
}

/// Events of a token's stream. The serde names are the stored `event_type`s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ApiTokenEvent {
    /// Version 2 added `organization_id` (a service token's organization; `null` for a vendor
    /// role); version 1 events are upcast with `null`.
    #[serde(rename = "ApiTokenIssued")]
    Issued {
        role: Role,
        label: Option<Name>,
        token_hash: KeyHash,
        issued_at: Timestamp,
        expires_at: Option<Timestamp>,
        organization_id: Option<OrganizationId>,
    },
    /// Vendor staff `started_by` acts as user `user_id` until `expires_at`, for `reason`.
    #[serde(rename = "ImpersonationStarted")]
    ImpersonationStarted {
        user_id: UserId,
        reason: Reason,
        started_by: Actor,
        token_hash: KeyHash,
        issued_at: Timestamp,
        expires_at: Timestamp,
    },
    #[serde(rename = "ApiTokenRevoked")]
    Revoked { revoked_at: Timestamp },
}

impl DomainEvent for ApiTokenEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Issued { .. } => "ApiTokenIssued",
            Self::ImpersonationStarted { .. } => "ImpersonationStarted",
            Self::Revoked { .. } => "ApiTokenRevoked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        match self {
            Self::Issued { .. } => "2",
            Self::ImpersonationStarted { .. } | Self::Revoked { .. } => "1",
        }
        .to_owned()
    }
}

impl VersionedEvent for ApiTokenEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::ApiToken.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("ApiTokenIssued", "2"),
        ("ImpersonationStarted", "1"),
        ("ApiTokenRevoked", "1"),
    ];

    /// ApiTokenIssued v1 (vendor roles only) reads as v2 with no organization. Stored v1 events
    /// are never rewritten.
    fn upcast(
        event_type: &str,
        event_version: &str,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, EventCodecError> {
        match (event_type, event_version, payload) {
            ("ApiTokenIssued", "1", serde_json::Value::Object(mut fields)) => {
                fields.insert("organization_id".to_owned(), serde_json::Value::Null);
                Ok(serde_json::Value::Object(fields))
            }
            (event_type, event_version, _) => Err(EventCodecError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                event_version: event_version.to_owned(),
            }),
        }
    }
}

/// What a token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenGrant {
    /// A vendor role everywhere (`organization_id` none), or a customer role at an organization
    /// and its descendants.
    Role {
        role: Role,
        organization_id: Option<OrganizationId>,
    },
    /// Acting as a user, with that user's rights at each request.
    Impersonation { user_id: UserId, started_by: Actor },
}

/// The state of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenState {
    pub grant: TokenGrant,
    pub label: Option<Name>,
    /// Why the impersonation was started.
    pub reason: Option<Reason>,
    pub token_hash: KeyHash,
    pub issued_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiTokenState {
    /// The role, for a role token.
    pub fn role(&self) -> Option<Role> {
        match &self.grant {
            TokenGrant::Role { role, .. } => Some(*role),
            TokenGrant::Impersonation { .. } => None,
        }
    }
}

/// Why a presented token does not authenticate (never told to the caller: every refusal is the
/// same 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("unknown token")]
    Unknown,
    #[error("token does not match")]
    Mismatch,
    #[error("token revoked")]
    Revoked,
    #[error("token expired")]
    Expired,
}

/// The ApiToken aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiToken {
    #[default]
    NotIssued,
    Issued(ApiTokenState),
}

impl ApiToken {
    /// The state, when issued.
    pub fn state(&self) -> Option<&ApiTokenState> {
        match self {
            Self::NotIssued => None,
            Self::Issued(s) => Some(s),
        }
    }

    /// What the token grants, if `presented` (the keyed hash of the presented secret) matches
    /// and the token is live at `now`. The hash comparison is constant-time.
    ///
    /// # Errors
    /// The [`TokenRejection`].
    pub fn authenticate(
        &self,
        presented: &KeyHash,
        now: Timestamp,
    ) -> Result<TokenGrant, TokenRejection> {
        let state = self.state().ok_or(TokenRejection::Unknown)?;
        if !state.token_hash.ct_eq(presented) {
            return Err(TokenRejection::Mismatch);
        }
        if state.revoked_at.is_some() {
            return Err(TokenRejection::Revoked);
        }
        if state.expires_at.is_some_and(|e| now >= e) {
            return Err(TokenRejection::Expired);
        }
        Ok(state.grant.clone())
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &ApiTokenCommand) -> Result<Vec<ApiTokenEvent>, DomainError> {
        match (self, &cmd.action) {
            (
                Self::NotIssued,
                ApiTokenAction::Issue {
                    role,
                    label,
                    token_hash,
                    expires_at,
                    organization,
                },
            ) => {
                let organization_id = Self::bind(*role, organization.as_ref())?;
                Ok(vec![ApiTokenEvent::Issued {
                    role: *role,
                    label: label.clone(),
                    token_hash: *token_hash,
                    issued_at: cmd.at,
                    expires_at: *expires_at,
                    organization_id,
                }])
            }
            (
                Self::NotIssued,
                ApiTokenAction::Impersonate {
                    user_id,
                    user,
                    reason,
                    started_by,
                    token_hash,
                    expires_at,
                },
            ) => {
                if user.deactivated {
                    return Err(DomainError::UserDeactivated(*user_id));
                }
                if user.vendor_staff {
                    return Err(DomainError::StaffNotImpersonated(*user_id));
                }
                if *expires_at <= cmd.at {
                    return Err(DomainError::InvalidExpiry(
                        "an impersonation must end in the future".into(),
                    ));
                }
                Ok(vec![ApiTokenEvent::ImpersonationStarted {
                    user_id: *user_id,
                    reason: reason.clone(),
                    started_by: started_by.clone(),
                    token_hash: *token_hash,
                    issued_at: cmd.at,
                    expires_at: *expires_at,
                }])
            }
            (
                Self::Issued(_),
                ApiTokenAction::Issue { .. } | ApiTokenAction::Impersonate { .. },
            ) => Err(DomainError::ApiTokenAlreadyIssued(cmd.token_id)),
            (Self::NotIssued, ApiTokenAction::Revoke) => {
                Err(DomainError::ApiTokenNotFound(cmd.token_id))
            }
            (Self::Issued(state), ApiTokenAction::Revoke) => {
                if state.revoked_at.is_some() {
                    return Err(DomainError::ApiTokenAlreadyRevoked(cmd.token_id));
                }
                Ok(vec![ApiTokenEvent::Revoked { revoked_at: cmd.at }])
            }
        }
    }

    /// Where a role token's role holds: a vendor role everywhere (bound to no organization), a
    /// customer role at an open customer's or partner's organization.
    fn bind(
        role: Role,
        organization: Option<&OrganizationRef>,
    ) -> Result<Option<OrganizationId>, DomainError> {
        match (role.is_vendor(), organization) {
            (true, None) => Ok(None),
            (true, Some(_)) => Err(DomainError::VendorRoleBound(role)),
            (false, None) => Err(DomainError::CustomerRoleUnbound(role)),
            (false, Some(organization)) => {
                let facts = organization.require_open()?;
                if facts.kind == OrganizationKind::Vendor {
                    return Err(DomainError::RoleNotHeldThere {
                        role,
                        kind: facts.kind,
                    });
                }
                Ok(Some(organization.id))
            }
        }
    }
}

impl Aggregate for ApiToken {
    const TYPE: &'static str = AggregateType::ApiToken.as_str();
    type Command = ApiTokenCommand;
    type Event = ApiTokenEvent;
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
            ApiTokenEvent::Issued {
                role,
                label,
                token_hash,
                issued_at,
                expires_at,
                organization_id,
            } => {
                *self = Self::Issued(ApiTokenState {
                    grant: TokenGrant::Role {
                        role,
                        organization_id,
                    },
                    label,
                    reason: None,
                    token_hash,
                    issued_at,
                    expires_at,
                    revoked_at: None,
                });
            }
            ApiTokenEvent::ImpersonationStarted {
                user_id,
                reason,
                started_by,
                token_hash,
                issued_at,
                expires_at,
            } => {
                *self = Self::Issued(ApiTokenState {
                    grant: TokenGrant::Impersonation {
                        user_id,
                        started_by,
                    },
                    label: None,
                    reason: Some(reason),
                    token_hash,
                    issued_at,
                    expires_at: Some(expires_at),
                    revoked_at: None,
                });
            }
            ApiTokenEvent::Revoked { revoked_at } => {
                if let Self::Issued(state) = self {
                    state.revoked_at = Some(revoked_at);
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

    fn tid() -> ApiTokenId {
        ApiTokenId::from_uuid(Uuid::from_u128(1))
    }
    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }
    fn issued(expires_at: Option<Timestamp>) -> ApiTokenEvent {
        ApiTokenEvent::Issued {
            role: Role::VendorAdmin,
            label: None,
            token_hash: KeyHash::from_bytes([1; 32]),
            issued_at: now(),
            expires_at,
            organization_id: None,
        }
    }
    fn token(events: Vec<ApiTokenEvent>) -> ApiToken {
        let mut t = ApiToken::default();
        for e in events {
            t.apply(e);
        }
        t
    }

    #[test]
    fn a_matching_live_token_grants_its_role() {
        let t = token(vec![issued(None)]);
        assert_eq!(
            t.authenticate(&KeyHash::from_bytes([1; 32]), now()),
            Ok(TokenGrant::Role {
                role: Role::VendorAdmin,
                organization_id: None
            })
        );
    }

    #[test]
    fn wrong_revoked_expired_and_unknown_tokens_are_refused() {
        let hash = KeyHash::from_bytes([1; 32]);
        assert_eq!(
            token(vec![issued(None)]).authenticate(&KeyHash::from_bytes([2; 32]), now()),
            Err(TokenRejection::Mismatch)
        );
        assert_eq!(
            token(vec![
                issued(None),
                ApiTokenEvent::Revoked { revoked_at: now() }
            ])
            .authenticate(&hash, now()),
            Err(TokenRejection::Revoked)
        );
        assert_eq!(
            token(vec![issued(Some(now()))]).authenticate(&hash, now()),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            ApiToken::default().authenticate(&hash, now()),
            Err(TokenRejection::Unknown)
        );
    }

    #[test]
    fn revoking_twice_or_an_unknown_token_is_refused() {
        let revoke = ApiTokenCommand {
            token_id: tid(),
            at: now(),
            action: ApiTokenAction::Revoke,
        };
        TestFramework::<ApiToken>::with(())
            .given(vec![
                issued(None),
                ApiTokenEvent::Revoked { revoked_at: now() },
            ])
            .when(revoke.clone())
            .then_expect_error(DomainError::ApiTokenAlreadyRevoked(tid()));
        TestFramework::<ApiToken>::with(())
            .given_no_previous_events()
            .when(revoke.clone())
            .then_expect_error(DomainError::ApiTokenNotFound(tid()));
        TestFramework::<ApiToken>::with(())
            .given(vec![issued(None)])
            .when(revoke)
            .then_expect_events(vec![ApiTokenEvent::Revoked { revoked_at: now() }]);
    }

    fn org(kind: OrganizationKind, closed: bool) -> OrganizationRef {
        let id = OrganizationId::from_uuid(Uuid::from_u128(10));
        OrganizationRef {
            id,
            facts: Some(crate::organization::OrganizationFacts {
                kind,
                closed,
                lineage: vec![id],
            }),
        }
    }
    fn issue(role: Role, organization: Option<OrganizationRef>) -> ApiTokenCommand {
        ApiTokenCommand {
            token_id: tid(),
            at: now(),
            action: ApiTokenAction::Issue {
                role,
                label: None,
                token_hash: KeyHash::from_bytes([1; 32]),
                expires_at: None,
                organization,
            },
        }
    }

    #[test]
    fn a_service_token_holds_a_customer_role_at_an_open_customer_organization() {
        let customer = org(OrganizationKind::Customer, false);
        let events = ApiToken::NotIssued
            .decide(&issue(Role::LicenseManager, Some(customer.clone())))
            .unwrap();
        let t = token(events);
        assert_eq!(
            t.authenticate(&KeyHash::from_bytes([1; 32]), now()),
            Ok(TokenGrant::Role {
                role: Role::LicenseManager,
                organization_id: Some(customer.id)
            })
        );
        let refused = |role, organization| {
            ApiToken::NotIssued
                .decide(&issue(role, organization))
                .unwrap_err()
        };
        assert_eq!(
            refused(Role::LicenseManager, None),
            DomainError::CustomerRoleUnbound(Role::LicenseManager)
        );
        assert_eq!(
            refused(Role::VendorAdmin, Some(customer.clone())),
            DomainError::VendorRoleBound(Role::VendorAdmin)
        );
        assert_eq!(
            refused(
                Role::CustomerAdmin,
                Some(org(OrganizationKind::Vendor, false))
            ),
            DomainError::RoleNotHeldThere {
                role: Role::CustomerAdmin,
                kind: OrganizationKind::Vendor
            }
        );
        assert_eq!(
            refused(
                Role::CustomerAdmin,
                Some(org(OrganizationKind::Partner, true))
            ),
            DomainError::OrganizationClosed(customer.id)
        );
    }

    #[test]
    fn an_impersonation_acts_as_a_live_customer_user_until_it_ends() {
        let user_id = UserId::from_uuid(Uuid::from_u128(50));
        let staff = Actor::ApiToken(ApiTokenId::from_uuid(Uuid::from_u128(60)));
        let start = |user: ImpersonatedUser, minutes: i64| ApiTokenCommand {
            token_id: tid(),
            at: now(),
            action: ApiTokenAction::Impersonate {
                user_id,
                user,
                reason: Reason::parse("ticket 1").unwrap(),
                started_by: staff.clone(),
                token_hash: KeyHash::from_bytes([3; 32]),
                expires_at: now() + chrono::Duration::minutes(minutes),
            },
        };
        let live = ImpersonatedUser {
            deactivated: false,
            vendor_staff: false,
        };
        let t = token(ApiToken::NotIssued.decide(&start(live, 15)).unwrap());
        let hash = KeyHash::from_bytes([3; 32]);
        assert_eq!(
            t.authenticate(&hash, now()),
            Ok(TokenGrant::Impersonation {
                user_id,
                started_by: staff.clone()
            })
        );
        assert_eq!(
            t.authenticate(&hash, now() + chrono::Duration::minutes(15)),
            Err(TokenRejection::Expired)
        );
        let decide = |user, minutes| ApiToken::NotIssued.decide(&start(user, minutes));
        assert_eq!(
            decide(
                ImpersonatedUser {
                    deactivated: true,
                    ..live
                },
                15
            ),
            Err(DomainError::UserDeactivated(user_id))
        );
        assert_eq!(
            decide(
                ImpersonatedUser {
                    vendor_staff: true,
                    ..live
                },
                15
            ),
            Err(DomainError::StaffNotImpersonated(user_id))
        );
        assert!(matches!(
            decide(live, 0),
            Err(DomainError::InvalidExpiry(_))
        ));
    }
}
