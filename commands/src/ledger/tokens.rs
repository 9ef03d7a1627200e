//! Bearer tokens (`llt_…`): administration and service tokens minted with a secret shown once,
//! impersonation tokens, revocation, and the check on every request.

use domain::api_token::{
    ApiToken, ApiTokenAction, ApiTokenCommand, ImpersonatedUser, TokenGrant, TokenRejection,
};
use domain::ids::{ApiTokenId, OrganizationId, UserId};
use domain::keys::ApiTokenSecret;
use domain::values::{Name, Reason, Role};
use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::executor::{CommandContext, Outcome};
use crate::keys;

impl Ledger {
    /// Mints an administration token; the secret is returned once. A replayed request (same
    /// `Idempotency-Key`) gets the token the first request minted and no secret: that secret was
    /// shown to the first request and is stored only as a hash, and a fresh one would open
    /// nothing.
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn issue_api_token(
        &self,
        ctx: &CommandContext,
        role: Role,
        organization_id: Option<OrganizationId>,
        label: Option<Name>,
        ttl: Option<chrono::Duration>,
    ) -> Result<(Outcome<ApiToken>, Option<ApiTokenSecret>), LedgerError> {
        let organization = match organization_id {
            Some(org) => Some(self.organization_ref(org).await?),
            None => None,
        };
        self.mint(ctx, |token_hash, now| ApiTokenAction::Issue {
            role,
            label,
            token_hash,
            expires_at: ttl.map(|ttl| now + ttl),
            organization,
        })
        .await
    }

    /// Starts an impersonation of user `user_id` by `ctx`'s actor: a token acting with the
    /// user's rights for `ttl`; the secret is returned once, as for [`Ledger::issue_api_token`].
    ///
    /// # Errors
    /// `USER_NOT_FOUND`, `USER_DEACTIVATED`, `STAFF_NOT_IMPERSONATED`; infrastructure errors.
    pub async fn start_impersonation(
        &self,
        ctx: &CommandContext,
        user_id: UserId,
        reason: Reason,
        ttl: chrono::Duration,
    ) -> Result<(Outcome<ApiToken>, Option<ApiTokenSecret>), LedgerError> {
        let user = self.user(user_id).await?;
        let state = user
            .state()
            .ok_or(domain::DomainError::UserNotFound(user_id))?;
        let user = ImpersonatedUser {
            deactivated: state.deactivated,
            vendor_staff: state.grants.iter().any(|g| g.role.is_vendor()),
        };
        self.mint(ctx, |token_hash, now| ApiTokenAction::Impersonate {
            user_id,
            user,
            reason,
            started_by: ctx.actor.clone(),
            token_hash,
            expires_at: now + ttl,
        })
        .await
    }

    /// A new token stream whose first command is `action(hash of a fresh secret, now)`; the
    /// secret is returned unless the request is a replay (it was shown to the first one).
    async fn mint(
        &self,
        ctx: &CommandContext,
        action: impl FnOnce(domain::keys::KeyHash, domain::Timestamp) -> ApiTokenAction,
    ) -> Result<(Outcome<ApiToken>, Option<ApiTokenSecret>), LedgerError> {
        let id = ApiTokenId::from_uuid(Uuid::now_v7());
        let secret = keys::generate_api_token(id)?;
        let now = self.now();
        let command = ApiTokenCommand {
            token_id: id,
            at: now,
            action: action(secret.hash(), now),
        };
        let outcome = self.store.execute_new::<ApiToken>(id, command, ctx).await?;
        let secret = (!outcome.replayed).then_some(secret);
        Ok((outcome, secret))
    }

    /// Revokes a token (ends an impersonation).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn revoke_api_token(
        &self,
        ctx: &CommandContext,
        id: ApiTokenId,
    ) -> Result<Outcome<ApiToken>, LedgerError> {
        let command = ApiTokenCommand {
            token_id: id,
            at: self.now(),
            action: ApiTokenAction::Revoke,
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }

    /// Checks a presented bearer token against its own stream.
    ///
    /// # Errors
    /// `Ok(Err(_))` when the token does not authenticate; `Err` on infrastructure errors.
    pub async fn authenticate(
        &self,
        presented: &ApiTokenSecret,
    ) -> Result<Result<TokenGrant, TokenRejection>, LedgerError> {
        let (token, _) = self.store.load::<ApiToken>(presented.id()).await?;
        Ok(token.authenticate(&presented.hash(), self.now()))
    }
}
