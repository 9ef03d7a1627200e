//! Administration tokens: minted with a secret shown once, revoked, and checked on every request.

use domain::api_token::{ApiToken, ApiTokenAction, ApiTokenCommand, TokenRejection};
use domain::ids::ApiTokenId;
use domain::keys::ApiTokenSecret;
use domain::values::{Name, Role};
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
        label: Option<Name>,
        ttl: Option<chrono::Duration>,
    ) -> Result<(Outcome<ApiToken>, Option<ApiTokenSecret>), LedgerError> {
        let id = ApiTokenId::from_uuid(Uuid::now_v7());
        let secret = keys::generate_api_token(id)?;
        let now = self.now();
        let command = ApiTokenCommand {
            token_id: id,
            at: now,
            action: ApiTokenAction::Issue {
                role,
                label,
                token_hash: secret.hash(),
                expires_at: ttl.map(|ttl| now + ttl),
            },
        };
        let outcome = self.store.execute_new::<ApiToken>(id, command, ctx).await?;
        let secret = (!outcome.replayed).then_some(secret);
        Ok((outcome, secret))
    }

    /// Revokes an administration token.
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
    ) -> Result<Result<Role, TokenRejection>, LedgerError> {
        let (token, _) = self.store.load::<ApiToken>(presented.id()).await?;
        Ok(token.authenticate(&presented.hash(), self.now()))
    }
}
