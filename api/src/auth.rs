//! Bearer authentication and authorization of the administration and portal API.
//!
//! Two kinds of bearer: an administration token (`llt_<id>_<secret>`), which names its own
//! stream (authentication folds it and compares the SHA-256 of the presented token in constant
//! time), and an OIDC access token of a configured issuer, which names a user
//! (`application::users`). Every failure answers the same 401, so a caller cannot tell an unknown
//! token from a revoked, expired, tampered or foreign one.
//!
//! What a principal may do is its [`Access`]: vendor-wide routes ask
//! [`Permission`]s of it before the body is read ([`crate::extract::Command`]); routes on an
//! organization's resources ask reach through the application.

use application::access::{Access, PrincipalKind};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use domain::event::Actor;
use domain::keys::ApiTokenSecret;
use domain::reach::Action;
use domain::values::Role;

use crate::error::ApiError;
use crate::request_id::RequestId;
use crate::state::AppState;

/// What a vendor-wide route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Read anything (vendor admin, support, auditor).
    Read,
    /// Suspend and reinstate licenses (vendor admin, support).
    Support,
    /// Everything else that changes the ledger (vendor admin).
    Admin,
}

impl Permission {
    /// The action of reach this permission is, held everywhere.
    pub const fn action(self) -> Action {
        match self {
            Self::Read => Action::ReadLicenses,
            Self::Support => Action::Support,
            Self::Admin => Action::Administer,
        }
    }
}

/// Left in a request's extensions when its bearer token did not authenticate.
#[derive(Clone, Copy, Debug)]
struct Refused;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub access: Access,
}

impl Principal {
    /// Who the events this caller causes name.
    pub fn actor(&self) -> Actor {
        self.access.actor()
    }

    /// The role whose rate limit this caller spends: a token's role; a user's first role
    /// (vendor roles first), or `support_contact`'s for a user without any.
    pub fn rate_role(&self) -> Role {
        match &self.access.kind {
            PrincipalKind::Token { role, .. } => *role,
            PrincipalKind::User { .. } => self
                .access
                .grants
                .iter()
                .map(|g| g.role)
                .min()
                .unwrap_or(Role::SupportContact),
        }
    }

    /// Checks the caller holds `permission` everywhere (vendor-wide routes).
    ///
    /// # Errors
    /// 403 when it does not.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.access.may_everywhere(permission.action()) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} may not do this",
                self.access.describe()
            )))
        }
    }

    /// Checks the caller may do `action` at some organization at least: what a route on an
    /// organization's resources asks before it reads a body.
    ///
    /// # Errors
    /// 403 when it may do it nowhere.
    pub fn require_somewhere(&self, action: Action) -> Result<(), ApiError> {
        if self.access.may_somewhere(action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} may not do this",
                self.access.describe()
            )))
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::unauthorized("the bearer token is invalid, expired or revoked")
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Self>() {
            return Ok(principal.clone());
        }
        // The rate limit authenticated this request already and the token was refused: the
        // same answer, without a second lookup.
        if parts.extensions.get::<Refused>().is_some() {
            return Err(unauthorized());
        }
        let mut headers = parts.headers.get_all(header::AUTHORIZATION).iter();
        let header = headers
            .next()
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        // Two credentials: which one is meant is anyone's guess (a proxy adding its own, a
        // client sending two), so neither is taken.
        if headers.next().is_some() {
            parts.extensions.insert(Refused);
            return Err(unauthorized());
        }
        let presented = header.to_str().ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let access = match presented {
            Some(token) => authenticate(parts, state, token).await?,
            None => None,
        };
        let Some(access) = access else {
            parts.extensions.insert(Refused);
            return Err(unauthorized());
        };
        let principal = Self { access };
        tracing::Span::current().record("actor", tracing::field::display(principal.actor()));
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// The access `token` gives, if it authenticates.
async fn authenticate(
    parts: &Parts,
    state: &AppState,
    token: &str,
) -> Result<Option<Access>, ApiError> {
    if let Ok(secret) = ApiTokenSecret::parse(token) {
        return Ok(state.app.authenticate(&secret).await?);
    }
    if !state.app.oidc().enabled() || !application::oidc::Oidc::looks_like_jwt(token) {
        return Ok(None);
    }
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map_or("unknown", |r| r.0.as_str());
    match state.app.users().authenticate(token, request_id).await? {
        Ok(access) => Ok(Some(access)),
        Err(why) => {
            // Why, for the operator (never the token): the caller gets the one 401.
            tracing::info!(reason = %why, "bearer JWT refused");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Principal::require` asks: the permission's action everywhere.
    fn granted_to(p: Permission, role: Role) -> bool {
        let id = domain::ids::ApiTokenId::from_uuid(uuid::Uuid::nil());
        Principal {
            access: Access::token(id, role, None),
        }
        .require(p)
        .is_ok()
    }

    #[test]
    fn roles_hold_exactly_their_permissions() {
        use Permission::*;
        for p in [Read, Support, Admin] {
            assert!(granted_to(p, Role::VendorAdmin));
        }
        assert!(granted_to(Read, Role::VendorSupport) && granted_to(Support, Role::VendorSupport));
        assert!(!granted_to(Admin, Role::VendorSupport));
        assert!(granted_to(Read, Role::VendorAuditor));
        assert!(
            !granted_to(Support, Role::VendorAuditor) && !granted_to(Admin, Role::VendorAuditor)
        );
        // Customer roles hold no vendor-wide permission: they act through reach.
        for role in [
            Role::CustomerAdmin,
            Role::LicenseManager,
            Role::DownloadManager,
            Role::SupportContact,
            Role::BillingAdmin,
        ] {
            for p in [Read, Support, Admin] {
                assert!(!granted_to(p, role), "{role} {p:?}");
            }
        }
    }
}
