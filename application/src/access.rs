//! Who is asking and what they may do: an [`Access`] is an authenticated principal (an
//! administration token or a user of an identity provider) with its role grants; every use case
//! that touches an organization's resources asks [`App::authorize`], which asks
//! `domain::reach` over the tree as the log holds it now.
//!
//! What a principal does not reach answers exactly as an unknown id ([`AppError::NotFound`] with
//! the resource's own code and wording); what it reaches but may not do answers 403.

use domain::DomainError;
use domain::event::Actor;
use domain::ids::{ApiTokenId, OrganizationId, UserId};
use domain::reach::{Action, Actions, Grant, Reach, Tree};
use domain::values::{Email, Role};

use crate::{App, AppError};

/// Who a principal is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A token (`llt_…`) holding a role: a vendor role everywhere (an administration token), or
    /// a customer role at one organization (a service token: its grant is in
    /// [`Access::grants`]).
    Token { id: ApiTokenId, role: Role },
    /// A user, authenticated by an OIDC access token.
    User { id: UserId, email: Email },
}

/// An authenticated principal and its grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub kind: PrincipalKind,
    /// The user's roles at organizations; a service token's one grant; empty for an
    /// administration token (its vendor role is global).
    pub grants: Vec<Grant>,
    /// For a user acted as through an impersonation token: the token and the vendor staff
    /// member behind it.
    pub impersonation: Option<Impersonation>,
}

/// An impersonation a principal acts through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impersonation {
    /// The impersonation token: its own scope for idempotency keys and rate limits, apart from
    /// the user's own requests.
    pub token: ApiTokenId,
    /// The staff member who started it (recorded on every event as `impersonated_by`).
    pub by: Actor,
}

impl Access {
    /// A token's access: its vendor role everywhere, or its customer role at the organization
    /// it is bound to.
    pub fn token(id: ApiTokenId, role: Role, organization_id: Option<OrganizationId>) -> Self {
        Self {
            kind: PrincipalKind::Token { id, role },
            grants: organization_id
                .map(|organization_id| Grant {
                    role,
                    organization_id,
                })
                .into_iter()
                .collect(),
            impersonation: None,
        }
    }

    /// The staff member behind an impersonation, if this is one.
    pub fn impersonated_by(&self) -> Option<&Actor> {
        self.impersonation.as_ref().map(|i| &i.by)
    }

    /// The credential this principal presents, as an actor: the impersonation token for an
    /// impersonation (so the staff member's requests do not share the user's idempotency keys
    /// or rate limit), the principal itself otherwise.
    pub fn credential(&self) -> Actor {
        match &self.impersonation {
            Some(i) => Actor::ApiToken(i.token),
            None => self.actor(),
        }
    }

    /// Who the events this principal causes name as their actor.
    pub fn actor(&self) -> Actor {
        match &self.kind {
            PrincipalKind::Token { id, .. } => Actor::ApiToken(*id),
            PrincipalKind::User { id, .. } => Actor::User(*id),
        }
    }

    /// What the principal may do everywhere (a token's vendor role, a user's vendor roles).
    pub fn everywhere(&self) -> Actions {
        // An impersonation acts with a customer's rights only (authentication refuses one whose
        // user holds a vendor role; this keeps it so should anything else build one).
        if self.impersonation.is_some() {
            return Actions::NONE;
        }
        let token = match &self.kind {
            PrincipalKind::Token { role, .. } if role.is_vendor() => role.actions(),
            PrincipalKind::Token { .. } | PrincipalKind::User { .. } => Actions::NONE,
        };
        self.grants
            .iter()
            .filter(|g| g.role.is_vendor())
            .fold(token, |acc, g| acc.union(g.role.actions()))
    }

    /// Whether the principal may do `action` everywhere (the vendor-wide routes: the catalogue,
    /// tokens, the whole license list, the audit trail).
    pub fn may_everywhere(&self, action: Action) -> bool {
        self.everywhere().contains(action)
    }

    /// The principal's reach over `tree`.
    pub fn reach(&self, tree: &Tree) -> Reach {
        match &self.kind {
            PrincipalKind::Token { role, .. } if role.is_vendor() => {
                Reach::compute(tree, &[vendor_grant(*role)])
            }
            PrincipalKind::Token { .. } | PrincipalKind::User { .. } => {
                Reach::compute(tree, &self.grants)
            }
        }
    }

    /// Whether the principal may do `action` *somewhere*: what a route checks before it reads a
    /// body, so a principal that could never do it is refused 403 without the body's details.
    pub fn may_somewhere(&self, action: Action) -> bool {
        self.may_everywhere(action)
            || self
                .grants
                .iter()
                .filter(|g| self.impersonation.is_none() || !g.role.is_vendor())
                .any(|g| g.role.actions().contains(action))
    }

    /// A short description for messages (`the role vendor_auditor`, `user ana@…`).
    pub fn describe(&self) -> String {
        match &self.kind {
            PrincipalKind::Token { role, .. } => format!("the role {role}"),
            PrincipalKind::User { .. } => "your roles".to_owned(),
        }
    }
}

/// A vendor role as a grant (vendor roles reach everything: the organization is not read).
fn vendor_grant(role: Role) -> Grant {
    Grant {
        role,
        organization_id: OrganizationId::from_uuid(uuid::Uuid::nil()),
    }
}

/// The answer for an organization the principal does not reach: exactly an unknown one's.
pub fn organization_not_found(id: OrganizationId) -> AppError {
    let e = DomainError::OrganizationNotFound(id);
    AppError::not_found(e.code(), e.to_string())
}

impl App {
    /// Checks `access` may do `action` at organization `id`.
    ///
    /// # Errors
    /// `not_found(id)` (the caller's own answer for an unknown resource) when the principal
    /// does not reach the organization; 403 when it reaches it but may not do this there.
    pub async fn authorize_at(
        &self,
        access: &Access,
        id: OrganizationId,
        action: Action,
        not_found: impl FnOnce() -> AppError,
    ) -> Result<(), AppError> {
        let everywhere = access.everywhere();
        if everywhere.contains(action) {
            return Ok(());
        }
        let actions = {
            let tree = self.tree().await?;
            access.reach(tree.tree()).at(tree.tree(), id)
        };
        if actions.is_empty() {
            return Err(not_found());
        }
        if !actions.contains(action) {
            return Err(AppError::Forbidden(format!(
                "{} may not do this here",
                access.describe()
            )));
        }
        Ok(())
    }

    /// Checks organization `id` exists and `access` may do `action` there, an unknown
    /// organization's answer standing for one it does not reach.
    ///
    /// Reach answers for what a principal reaches only through the tree, which holds existing
    /// organizations; a vendor role reaches every id, so for it the organization's stream is
    /// read (the write side's answer: one registered a moment ago on another server exists).
    ///
    /// # Errors
    /// As [`App::authorize_at`]; `ORGANIZATION_NOT_FOUND` for an unknown id.
    pub async fn authorize_organization(
        &self,
        access: &Access,
        id: OrganizationId,
        action: Action,
    ) -> Result<(), AppError> {
        self.authorize_at(access, id, action, || organization_not_found(id))
            .await?;
        if access.everywhere().contains(action) {
            let exists = self
                .ledger()
                .store()
                .read::<domain::organization::Organization>(id)
                .await?
                .exists();
            if !exists {
                return Err(organization_not_found(id));
            }
        }
        Ok(())
    }

    /// Checks `access` may do `action` everywhere (vendor-wide routes).
    ///
    /// # Errors
    /// 403 when it may not.
    pub fn authorize_everywhere(&self, access: &Access, action: Action) -> Result<(), AppError> {
        if access.may_everywhere(action) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "{} may not do this",
                access.describe()
            )))
        }
    }
}
