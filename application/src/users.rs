//! Users as use cases: authenticating an OIDC access token to a user (claiming an invitation on
//! the first verified token that carries its email), inviting and registering users, setting
//! their roles, deactivating them, and `GET /v1/me`.
//!
//! Authorization: managing users at an organization needs `ManageUsers` there (reach); granting
//! a vendor role needs `Administer` everywhere (vendor_admin), so a customer administrator can
//! never hand out more than customer roles, and only within its own reach; a role at an
//! organization outside the tree of the user's home (neither above nor below it) is the vendor's
//! to give (`set_roles`). A user that the principal does not reach answers exactly as an unknown
//! one.

use std::collections::BTreeSet;

use commands::ledger::NewUser;
use commands::{CommandContext, Outcome};
use domain::DomainError;
use domain::event::Actor;
use domain::ids::{OrganizationId, UserId};
use domain::reach::Action;
use domain::user::{Identity, User, UserState};
use domain::values::{Email, Issuer, Role, Subject};
use serde::Serialize;
use uuid::Uuid;

use crate::access::{Access, PrincipalKind};
use crate::oidc::OidcRejection;
use crate::views::Written;
use crate::{App, AppError};

/// A role held at an organization, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleView {
    pub organization_id: Uuid,
    /// `customer_admin`, `license_manager`, `download_manager`, `support_contact`,
    /// `billing_admin`, or a vendor role.
    pub role: String,
}

/// A user.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    /// The organization the user was registered or invited at.
    pub organization_id: Uuid,
    /// `invited` (no identity yet), `active` or `deactivated`.
    pub status: String,
    /// The identity provider: the user's once linked, or the one an invitation is claimed
    /// through.
    pub issuer: Option<String>,
    /// The provider's subject, once linked.
    pub subject: Option<String>,
    pub roles: Vec<RoleView>,
    pub version: i64,
}

impl UserView {
    fn new(id: UserId, s: &UserState, version: i64) -> Self {
        let status = if s.deactivated {
            "deactivated"
        } else if s.identity.is_none() {
            "invited"
        } else {
            "active"
        };
        Self {
            id: id.into(),
            email: s.email.as_str().to_owned(),
            organization_id: s.organization_id.into(),
            status: status.to_owned(),
            issuer: s
                .identity
                .as_ref()
                .map(|i| &i.issuer)
                .or(s.invitation_issuer.as_ref())
                .map(|i| i.as_str().to_owned()),
            subject: s.identity.as_ref().map(|i| i.subject.as_str().to_owned()),
            roles: s
                .grants
                .iter()
                .map(|g| RoleView {
                    organization_id: g.organization_id.into(),
                    role: g.role.as_str().to_owned(),
                })
                .collect(),
            version,
        }
    }
}

impl UserView {
    /// From a row of the users' read model.
    pub fn from_row(r: projections::queries::UserRow) -> Self {
        let status = if r.deactivated {
            "deactivated"
        } else if r.subject.is_none() {
            "invited"
        } else {
            "active"
        };
        Self {
            id: r.id,
            email: r.email,
            organization_id: r.organization_id,
            status: status.to_owned(),
            issuer: r.issuer,
            subject: r.subject,
            roles: r
                .roles
                .iter()
                .filter_map(|entry| {
                    let (org, role) = entry.split_once(':')?;
                    Some(RoleView {
                        organization_id: org.parse().ok()?,
                        role: role.to_owned(),
                    })
                })
                .collect(),
            version: r.version,
        }
    }
}

/// Who is asking (`GET /v1/me`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrincipalView {
    /// `user` or `token`.
    pub kind: String,
    pub id: Uuid,
    pub email: Option<String>,
    /// Acting as this user through an impersonation: the vendor staff member behind it
    /// (`api_token:<id>` or `user:<id>`), for the portal's banner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
}

/// An organization the principal reaches.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachedOrganizationView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub parent_id: Option<Uuid>,
    pub closed: bool,
    /// Reached only through a partner delegation.
    pub delegated: bool,
}

/// `GET /v1/me`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeView {
    pub principal: PrincipalView,
    pub roles: Vec<RoleView>,
    /// Every organization the principal reaches, by id. Empty for vendor roles, which reach
    /// all of them (`all_organizations`).
    pub organizations: Vec<ReachedOrganizationView>,
    /// True for vendor roles: every organization is reached.
    pub all_organizations: bool,
}

/// A user to register or invite.
#[derive(Clone, Debug)]
pub struct UserInput {
    pub email: Email,
    pub roles: BTreeSet<Role>,
    /// The identity provider: with `subject`, the user is linked to that identity at once
    /// (vendor administrators only); alone, the one provider the invitation is claimed through.
    pub issuer: Option<Issuer>,
    pub subject: Option<Subject>,
}

/// The user use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Users<'a> {
    app: &'a App,
}

impl App {
    /// The user use cases.
    pub fn users(&self) -> Users<'_> {
        Users { app: self }
    }
}

pub(crate) fn user_not_found(id: UserId) -> AppError {
    let e = DomainError::UserNotFound(id);
    AppError::not_found(e.code(), e.to_string())
}

/// Why a bearer JWT did not authenticate (for logs; answered 401 alike).
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    #[error(transparent)]
    Token(#[from] OidcRejection),
    #[error("no user is linked to this identity, and no invitation waits for its email")]
    UnknownUser,
    #[error("the user is deactivated")]
    Deactivated,
}

impl Users<'_> {
    /// Authenticates an OIDC access token: verified, then its user found by `(iss, sub)`; the
    /// first verified token carrying an invitation's email claims it. Deactivation is read from
    /// the user's stream, so it takes effect on the next request.
    ///
    /// # Errors
    /// `Ok(Err(_))` when the token does not authenticate; `Err` on infrastructure errors.
    pub async fn authenticate(
        &self,
        token: &str,
        request_id: &str,
    ) -> Result<Result<Access, Unauthenticated>, AppError> {
        let verified = match self.app.oidc().verify(token, self.app.now()).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(e.into())),
        };
        self.resolve(&verified, request_id).await
    }

    /// The user a verified token names: by its `(iss, sub)`, or by its verified email when that
    /// claims an invitation (which links the identity). The API's bearer tokens and the web
    /// UI's ID tokens both come here, so both reach exactly the same user.
    ///
    /// # Errors
    /// Database errors; `Ok(Err(_))` for a token of no active user.
    pub async fn resolve(
        &self,
        verified: &crate::oidc::VerifiedToken,
        request_id: &str,
    ) -> Result<Result<Access, Unauthenticated>, AppError> {
        let ledger = self.app.ledger();
        let key = Identity::claim_value(&verified.issuer, &verified.subject);
        let known = self.app.identities().get(&key).copied();
        let found = match known {
            Some(id) => Some(id),
            None => {
                let found = ledger
                    .user_by_identity(&verified.issuer, &verified.subject)
                    .await?;
                if let Some(id) = found {
                    let mut identities = self.app.identities();
                    // Bounded: a full map is forgotten and filled again, one query per identity.
                    if identities.len() >= 100_000 {
                        identities.clear();
                    }
                    identities.insert(key, id);
                }
                found
            }
        };
        let id = match found {
            Some(id) => id,
            None => {
                let Some(email) = verified.email.as_ref().filter(|_| verified.email_verified)
                else {
                    return Ok(Err(Unauthenticated::UnknownUser));
                };
                let Some(id) = ledger.user_by_email(email).await? else {
                    return Ok(Err(Unauthenticated::UnknownUser));
                };
                let identity = Identity {
                    issuer: verified.issuer.clone(),
                    subject: verified.subject.clone(),
                };
                let invited = ledger.user(id).await?;
                let Some(state) = invited.state() else {
                    return Ok(Err(Unauthenticated::UnknownUser));
                };
                // Claimed a moment ago by this same identity (two first requests racing): go
                // on as the user. Claimed by another, or deactivated: not this token's user.
                if state.identity.as_ref() != Some(&identity) {
                    if state.identity.is_some() || state.deactivated {
                        return Ok(Err(Unauthenticated::UnknownUser));
                    }
                    // An invitation made while no provider was configured names none: with
                    // several configured now, any of them could vouch for its email, so it is
                    // claimed only while there is one (re-invite naming the provider otherwise).
                    if state.invitation_issuer.is_none() && self.app.oidc().issuers().len() > 1 {
                        return Ok(Err(Unauthenticated::UnknownUser));
                    }
                    let ctx = CommandContext::new(Actor::User(id), request_id.to_owned());
                    match ledger
                        .claim_invitation(&ctx, id, identity, email.clone(), true)
                        .await
                    {
                        Ok(_) => tracing::info!(user = %id, "invitation claimed"),
                        // Claimed meanwhile (by this identity or another: the linked identity is
                        // compared below), refused (deactivated meanwhile, another provider's
                        // invitation), or this identity is another user's: every bearer failure
                        // is the one 401.
                        Err(commands::LedgerError::Command(
                            commands::CommandError::Rejected(_)
                            | commands::CommandError::ClaimTaken { .. },
                        )) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                id
            }
        };
        let user = ledger.user(id).await?;
        let Some(state) = user.state() else {
            return Ok(Err(Unauthenticated::UnknownUser));
        };
        let linked = state
            .identity
            .as_ref()
            .is_some_and(|i| i.issuer == verified.issuer && i.subject == verified.subject);
        if !linked {
            return Ok(Err(Unauthenticated::UnknownUser));
        }
        if state.deactivated {
            return Ok(Err(Unauthenticated::Deactivated));
        }
        Ok(Ok(Access {
            kind: PrincipalKind::User {
                id,
                email: state.email.clone(),
            },
            grants: state.effective_grants(),
            impersonation: None,
        }))
    }

    /// A logged-in user's access now: its grants as its stream holds them, so a role revoked
    /// or a deactivation takes effect on the web UI's next request. `None` for a deactivated
    /// or unknown user.
    ///
    /// # Errors
    /// Database errors.
    pub async fn access_of(&self, id: UserId) -> Result<Option<Access>, AppError> {
        let user = self.app.ledger().user(id).await?;
        let Some(state) = user.state() else {
            return Ok(None);
        };
        if state.deactivated {
            return Ok(None);
        }
        Ok(Some(Access {
            kind: PrincipalKind::User {
                id,
                email: state.email.clone(),
            },
            grants: state.effective_grants(),
            impersonation: None,
        }))
    }

    /// `GET /v1/me`: the principal, its roles, and the organizations it reaches.
    ///
    /// # Errors
    /// Database errors.
    pub async fn me(&self, access: &Access) -> Result<MeView, AppError> {
        let principal = match &access.kind {
            PrincipalKind::Token { id, .. } => PrincipalView {
                kind: "token".into(),
                id: (*id).into(),
                email: None,
                impersonated_by: None,
            },
            PrincipalKind::User { id, email } => PrincipalView {
                kind: "user".into(),
                id: (*id).into(),
                email: Some(email.as_str().to_owned()),
                impersonated_by: access.impersonated_by().map(ToString::to_string),
            },
        };
        let roles = match &access.kind {
            // An administration token's vendor role holds everywhere (no organization); a
            // service token's is its grant, listed as a user's are.
            PrincipalKind::Token { role, .. } if access.grants.is_empty() => vec![RoleView {
                organization_id: Uuid::nil(),
                role: role.as_str().to_owned(),
            }],
            PrincipalKind::Token { .. } | PrincipalKind::User { .. } => access
                .grants
                .iter()
                .map(|g| RoleView {
                    organization_id: g.organization_id.into(),
                    role: g.role.as_str().to_owned(),
                })
                .collect(),
        };
        let all_organizations = !access.everywhere().is_empty();
        let reached = if all_organizations {
            Vec::new()
        } else {
            let tree = self.app.tree().await?;
            access.reach(tree.tree()).organizations(tree.tree())
        };
        let ids: Vec<Uuid> = reached.iter().map(|r| r.organization_id.into()).collect();
        let rows = projections::queries::organizations_by_id(self.app.pool(), &ids).await?;
        let mut organizations: Vec<ReachedOrganizationView> = rows
            .into_iter()
            .filter_map(|row| {
                let delegated = reached
                    .iter()
                    .find(|r| Uuid::from(r.organization_id) == row.id)?
                    .delegated;
                Some(ReachedOrganizationView {
                    id: row.id,
                    name: row.name,
                    kind: row.kind,
                    parent_id: row.parent_id,
                    closed: row.closed,
                    delegated,
                })
            })
            .collect();
        // Reach follows the log at once; the read model may not hold an organization registered
        // (or a delegation granted) a moment ago: those are read from their streams.
        for r in &reached {
            let id = Uuid::from(r.organization_id);
            if organizations.iter().any(|o| o.id == id) {
                continue;
            }
            let loaded = self
                .app
                .ledger()
                .store()
                .read::<domain::organization::Organization>(r.organization_id)
                .await?;
            if let Some(state) = loaded.aggregate.state() {
                organizations.push(ReachedOrganizationView {
                    id,
                    name: state.name.as_str().to_owned(),
                    kind: state.kind.as_str().to_owned(),
                    parent_id: state.parent_id.map(Uuid::from),
                    closed: state.closed,
                    delegated: r.delegated,
                });
            }
        }
        organizations.sort_by_key(|o| o.id);
        Ok(MeView {
            principal,
            roles,
            organizations,
            all_organizations,
        })
    }

    /// Registers (with an identity) or invites (without) a user at `organization_id`.
    ///
    /// # Errors
    /// 404 for an organization the principal does not reach, 403 without `ManageUsers` there or
    /// for a vendor role without `Administer`; refusals (`ROLE_NOT_HELD_THERE`,
    /// `ORGANIZATION_CLOSED`); `EMAIL_TAKEN` / `IDENTITY_TAKEN` (409); infrastructure errors.
    pub async fn create(
        &self,
        ctx: &CommandContext,
        access: &Access,
        organization_id: OrganizationId,
        input: UserInput,
    ) -> Result<Written<UserView>, AppError> {
        self.app
            .authorize_organization(access, organization_id, Action::ManageUsers)
            .await?;
        self.check_may_grant(access, &input.roles)?;
        let configured = self.app.oidc().issuers();
        if let Some(issuer) = &input.issuer
            && !configured.contains(issuer)
        {
            return Err(AppError::InvalidField {
                field: "issuer",
                detail: format!(
                    "issuer: {:?} is not an identity provider of this server (--oidc-issuer)",
                    issuer.as_str()
                ),
            });
        }
        let (identity, invitation_issuer) = match (input.issuer, input.subject) {
            (Some(issuer), Some(subject)) => {
                // Linking an identity decides who a person is across every customer: vendor
                // administration only (a customer could otherwise take someone's identity
                // into its organization before that person ever logs in).
                if !access.may_everywhere(Action::Administer) {
                    return Err(AppError::Forbidden(format!(
                        "{} may not link identities; invite by email instead",
                        access.describe()
                    )));
                }
                (Some(Identity { issuer, subject }), None)
            }
            (None, Some(_)) => {
                return Err(AppError::InvalidField {
                    field: "issuer",
                    detail: "issuer: a subject is linked together with its issuer".into(),
                });
            }
            // An invitation is bound to one provider, so another customer's provider cannot
            // vouch for the email and take it: the one named, or the only one configured.
            (Some(issuer), None) => (None, Some(issuer)),
            (None, None) => match configured {
                [] => (None, None),
                [only] => (None, Some(only.clone())),
                _ => {
                    return Err(AppError::InvalidField {
                        field: "issuer",
                        detail: "issuer: several identity providers are configured; name the one \
                                 this invitation is claimed through"
                            .into(),
                    });
                }
            },
        };
        let outcome = self
            .app
            .ledger()
            .register_user(
                ctx,
                NewUser {
                    email: input.email,
                    organization_id,
                    identity,
                    invitation_issuer,
                    roles: input.roles,
                },
            )
            .await?;
        written(outcome)
    }

    /// The users registered or invited at organization `id`, by id, a page at a time (read
    /// model: a user created a moment ago may be missing for the projector's lag).
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), 403 without `ReadUsers` there,
    /// `INVALID_CURSOR`; database errors.
    pub async fn list(
        &self,
        access: &Access,
        id: OrganizationId,
        page: crate::lists::PageRequest,
    ) -> Result<crate::lists::Listed<UserView>, AppError> {
        self.app
            .authorize_organization(access, id, Action::ReadUsers)
            .await?;
        let scope =
            crate::lists::Scope::new("organization users").with("organization_id", Some(id));
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let rows =
            projections::queries::organization_users(self.app.pool(), id.into(), &window).await?;
        let mut listed = cursors.page(&scope, &window, rows, |r| r.id, UserView::from_row);
        for view in &mut listed.items {
            self.hide_roles_out_of_reach(access, view).await?;
        }
        Ok(listed)
    }

    /// One user, as its stream says now.
    ///
    /// # Errors
    /// 404 for a user that does not exist or that the principal does not reach (its home
    /// organization, or any organization it holds a role at, with `ReadUsers`).
    pub async fn get(&self, access: &Access, id: UserId) -> Result<UserView, AppError> {
        let loaded = self.app.ledger().store().read::<User>(id).await?;
        let state = loaded.aggregate.state().ok_or_else(|| user_not_found(id))?;
        self.authorize_user(access, id, state, Action::ReadUsers)
            .await?;
        let mut view = UserView::new(id, state, loaded.version);
        self.hide_roles_out_of_reach(access, &mut view).await?;
        Ok(view)
    }

    /// Sets user `id`'s roles at `organization_id` to exactly `roles`.
    ///
    /// # Errors
    /// 404 for a user or organization out of reach, 403 without `ManageUsers` at the
    /// organization, for a vendor role without `Administer`, or for a role granted at an
    /// organization neither above nor below the user's home without `Administer`; refusals;
    /// infrastructure errors.
    pub async fn set_roles(
        &self,
        ctx: &CommandContext,
        access: &Access,
        id: UserId,
        organization_id: OrganizationId,
        roles: BTreeSet<Role>,
    ) -> Result<Written<UserView>, AppError> {
        let user = self.app.ledger().user(id).await?;
        let state = user.state().ok_or_else(|| user_not_found(id))?;
        self.authorize_user(access, id, state, Action::ReadUsers)
            .await?;
        self.app
            .authorize_organization(access, organization_id, Action::ManageUsers)
            .await?;
        // Both what is granted and what is revoked: a customer administrator may not take a
        // vendor role away either.
        let held: BTreeSet<Role> = state
            .grants
            .iter()
            .filter(|g| g.organization_id == organization_id)
            .map(|g| g.role)
            .collect();
        let changed: BTreeSet<Role> = held.symmetric_difference(&roles).copied().collect();
        self.check_may_grant(access, &changed)?;
        // A role at an organization unrelated to the user's home (neither on its lineage nor
        // below it) is a grant that organization's administrators can neither list nor revoke
        // (lists go by home): the vendor's to give. Otherwise a partner, through a delegation,
        // could grant its own people a role at the customer that outlives the customer's
        // revocation of the delegation. Within one tree it is ordinary: a corporate
        // administrator gives a location's user a role at the corporation, or its own user one
        // at a location.
        let granting = roles.iter().any(|r| !held.contains(r));
        if granting && !access.may_everywhere(Action::Administer) {
            let related = self
                .app
                .tree()
                .await?
                .tree()
                .on_one_line(organization_id, state.organization_id);
            if !related {
                return Err(AppError::Forbidden(format!(
                    "{} may grant roles only within the user's own organization's tree",
                    access.describe()
                )));
            }
        }
        let mut done = written(
            self.app
                .ledger()
                .set_user_roles(ctx, id, organization_id, roles)
                .await?,
        )?;
        self.hide_roles_out_of_reach(access, &mut done.view).await?;
        Ok(done)
    }

    /// Deactivates user `id`: its tokens stop authenticating on the next request.
    ///
    /// # Errors
    /// 404 for a user out of reach, 403 without `ManageUsers` at its organization; refusals;
    /// infrastructure errors.
    pub async fn deactivate(
        &self,
        ctx: &CommandContext,
        access: &Access,
        id: UserId,
    ) -> Result<Written<UserView>, AppError> {
        self.authorize_switch(access, id, "deactivate").await?;
        let mut done = written(self.app.ledger().deactivate_user(ctx, id).await?)?;
        self.end_everything_of(ctx, id).await?;
        self.hide_roles_out_of_reach(access, &mut done.view).await?;
        Ok(done)
    }

    /// What a deactivation ends at once, so that a reactivation brings none of it back: the
    /// user's web sessions (a session left unused would otherwise open again), and the
    /// impersonations it started or that act as it (revoked, as by their banner's "End"). A
    /// retried deactivation ends what is left.
    async fn end_everything_of(&self, ctx: &CommandContext, id: UserId) -> Result<(), AppError> {
        self.app.sessions().end_all_of(id).await?;
        let since =
            self.app.now() - crate::operations::MAX_IMPERSONATION - chrono::Duration::minutes(5);
        let tokens =
            projections::queries::unrevoked_impersonations(self.app.pool(), id.into(), since)
                .await?;
        // Each revocation is a command of its own: the deactivation's idempotency key is its.
        let mut plain = ctx.clone();
        plain.idempotency = None;
        for token in tokens {
            match self
                .app
                .ledger()
                .revoke_api_token(&plain, domain::ids::ApiTokenId::from_uuid(token))
                .await
            {
                // Revoked meanwhile (its banner's "End", or a concurrent deactivation).
                Err(commands::LedgerError::Command(commands::CommandError::Rejected(
                    DomainError::ApiTokenAlreadyRevoked(_),
                ))) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Reactivates user `id`: its tokens and logins work again, with the roles it held. An
    /// active user is answered unchanged.
    ///
    /// # Errors
    /// As [`Users::deactivate`].
    pub async fn reactivate(
        &self,
        ctx: &CommandContext,
        access: &Access,
        id: UserId,
    ) -> Result<Written<UserView>, AppError> {
        self.authorize_switch(access, id, "reactivate").await?;
        let mut done = written(self.app.ledger().reactivate_user(ctx, id).await?)?;
        self.hide_roles_out_of_reach(access, &mut done.view).await?;
        Ok(done)
    }

    /// Whether `access` may deactivate or reactivate (`verb`) user `id`: either takes or gives
    /// back every role the user holds, so the caller must manage users wherever it holds one
    /// (an administrator of a location must not lock out its parent's, nor bring back one its
    /// parent's locked out) and may grant each of them.
    async fn authorize_switch(
        &self,
        access: &Access,
        id: UserId,
        verb: &str,
    ) -> Result<(), AppError> {
        let user = self.app.ledger().user(id).await?;
        let state = user.state().ok_or_else(|| user_not_found(id))?;
        self.authorize_user(access, id, state, Action::ManageUsers)
            .await?;
        for grant in &state.grants {
            self.app
                .authorize_at(access, grant.organization_id, Action::ManageUsers, || {
                    AppError::Forbidden(format!(
                        "{} may not {verb} a user who holds roles where it does not manage users",
                        access.describe()
                    ))
                })
                .await?;
        }
        self.check_may_grant(access, &state.grants.iter().map(|g| g.role).collect())
    }

    /// Leaves in `view` only the roles at organizations the principal reaches: a user homed in
    /// its subtree may hold roles elsewhere, which are not the principal's to see.
    async fn hide_roles_out_of_reach(
        &self,
        access: &Access,
        view: &mut UserView,
    ) -> Result<(), AppError> {
        if !access.everywhere().is_empty() {
            return Ok(());
        }
        let tree = self.app.tree().await?;
        let reach = access.reach(tree.tree());
        view.roles
            .retain(|r| reach.reaches(tree.tree(), OrganizationId::from_uuid(r.organization_id)));
        Ok(())
    }

    /// A user is reached through its home organization.
    async fn authorize_user(
        &self,
        access: &Access,
        id: UserId,
        state: &UserState,
        action: Action,
    ) -> Result<(), AppError> {
        self.app
            .authorize_at(access, state.organization_id, action, || user_not_found(id))
            .await
    }

    /// Vendor roles are granted (and revoked) by vendor administrators only.
    fn check_may_grant(&self, access: &Access, roles: &BTreeSet<Role>) -> Result<(), AppError> {
        if roles.iter().any(|r| r.is_vendor()) && !access.may_everywhere(Action::Administer) {
            return Err(AppError::Forbidden(format!(
                "{} may not grant or revoke vendor roles",
                access.describe()
            )));
        }
        Ok(())
    }
}

fn written(o: Outcome<User>) -> Result<Written<UserView>, AppError> {
    let state = o
        .aggregate
        .state()
        .ok_or(AppError::Invariant("a user command left no state"))?;
    Ok(Written {
        view: UserView::new(o.id, state, o.version),
        replayed: o.replayed,
    })
}
