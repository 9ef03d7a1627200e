//! Bearer-token authentication and role-based authorization of the administration API.
//!
//! A token (`llt_<id>_<secret>`) names its own stream; authentication folds that stream and
//! compares the SHA-256 of the presented token in constant time. Every failure answers the same
//! 401, so a caller cannot tell an unknown token from a revoked or expired one.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use domain::ids::ApiTokenId;
use domain::keys::ApiTokenSecret;
use domain::values::Role;

use crate::error::ApiError;
use crate::state::AppState;

/// What a route needs.
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
    /// Whether `role` holds this permission.
    pub const fn granted_to(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::VendorAdmin)
                | (Self::Read | Self::Support, Role::VendorSupport)
                | (Self::Read, Role::VendorAuditor)
        )
    }
}

/// Left in a request's extensions when its bearer token did not authenticate.
#[derive(Clone, Copy, Debug)]
struct Refused;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub token_id: ApiTokenId,
    pub role: Role,
}

impl Principal {
    /// Checks the caller holds `permission`.
    ///
    /// # Errors
    /// 403 when it does not.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.granted_to(self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the role {} may not do this",
                self.role.as_str()
            )))
        }
    }
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
            return Err(ApiError::unauthorized(
                "the bearer token is invalid, expired or revoked",
            ));
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .and_then(|token| ApiTokenSecret::parse(token).ok());
        let role = match presented.as_ref() {
            Some(presented) => state.app.authenticate(presented).await?,
            None => None,
        };
        let (Some(presented), Some(role)) = (presented, role) else {
            parts.extensions.insert(Refused);
            return Err(ApiError::unauthorized(
                "the bearer token is invalid, expired or revoked",
            ));
        };
        let principal = Self {
            token_id: presented.id(),
            role,
        };
        tracing::Span::current().record("actor", tracing::field::display(principal.token_id));
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_hold_exactly_their_permissions() {
        use Permission::*;
        for p in [Read, Support, Admin] {
            assert!(p.granted_to(Role::VendorAdmin));
        }
        assert!(Read.granted_to(Role::VendorSupport) && Support.granted_to(Role::VendorSupport));
        assert!(!Admin.granted_to(Role::VendorSupport));
        assert!(Read.granted_to(Role::VendorAuditor));
        assert!(!Support.granted_to(Role::VendorAuditor) && !Admin.granted_to(Role::VendorAuditor));
    }
}
