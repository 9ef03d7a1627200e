//! Users: registered or invited at an organization, their invitations claimed, their roles set,
//! deactivated; and looked up by identity or email through the unique claims their events made
//! (written in the statement that appended them, so never stale: a deactivation or a new grant
//! is seen by the very next request).

use std::collections::BTreeSet;

use domain::ids::{OrganizationId, UserId};
use domain::stream::{AggregateType, ClaimScope, id_from_claim_stream};
use domain::user::{Identity, User, UserAction, UserCommand};
use domain::values::{Email, Issuer, Role, Subject};
use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::executor::{CommandContext, Outcome};

/// A new user: linked to `identity` at once, or invited by `email` without one.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: Email,
    pub organization_id: OrganizationId,
    pub identity: Option<Identity>,
    /// Without an identity: the only issuer whose tokens may claim the invitation.
    pub invitation_issuer: Option<Issuer>,
    pub roles: BTreeSet<Role>,
}

impl Ledger {
    /// Registers or invites a user.
    ///
    /// # Errors
    /// Refusals, an email or identity another user has ([`CommandError::ClaimTaken`]),
    /// infrastructure errors.
    ///
    /// [`CommandError::ClaimTaken`]: crate::executor::CommandError::ClaimTaken
    pub async fn register_user(
        &self,
        ctx: &CommandContext,
        input: NewUser,
    ) -> Result<Outcome<User>, LedgerError> {
        let id = UserId::from_uuid(Uuid::now_v7());
        let organization = self.organization_ref(input.organization_id).await?;
        let command = UserCommand {
            user_id: id,
            at: self.now(),
            action: UserAction::Register {
                email: input.email,
                organization,
                identity: input.identity,
                invitation_issuer: input.invitation_issuer,
                roles: input.roles,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    /// Claims user `id`'s invitation for the identity a verified token carries.
    ///
    /// # Errors
    /// Refusals (claimed already, email not verified or not the invitation's), an identity
    /// another user has, infrastructure errors.
    pub async fn claim_invitation(
        &self,
        ctx: &CommandContext,
        id: UserId,
        identity: Identity,
        email: Email,
        email_verified: bool,
    ) -> Result<Outcome<User>, LedgerError> {
        let command = UserCommand {
            user_id: id,
            at: self.now(),
            action: UserAction::ClaimInvitation {
                identity,
                email,
                email_verified,
            },
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }

    /// Sets user `id`'s roles at `organization_id` to exactly `roles`.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn set_user_roles(
        &self,
        ctx: &CommandContext,
        id: UserId,
        organization_id: OrganizationId,
        roles: BTreeSet<Role>,
    ) -> Result<Outcome<User>, LedgerError> {
        let organization = self.organization_ref(organization_id).await?;
        let command = UserCommand {
            user_id: id,
            at: self.now(),
            action: UserAction::SetRoles {
                organization,
                roles,
            },
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }

    /// Deactivates user `id`: its tokens stop authenticating on the next request.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn deactivate_user(
        &self,
        ctx: &CommandContext,
        id: UserId,
    ) -> Result<Outcome<User>, LedgerError> {
        self.switch_user(ctx, id, UserAction::Deactivate).await
    }

    /// Reactivates user `id`: its tokens authenticate again, with the roles it held.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn reactivate_user(
        &self,
        ctx: &CommandContext,
        id: UserId,
    ) -> Result<Outcome<User>, LedgerError> {
        self.switch_user(ctx, id, UserAction::Reactivate).await
    }

    /// Runs `action` (deactivate or reactivate: no facts to look up) on user `id`.
    async fn switch_user(
        &self,
        ctx: &CommandContext,
        id: UserId,
        action: UserAction,
    ) -> Result<Outcome<User>, LedgerError> {
        let command = UserCommand {
            user_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }

    /// User `id` as its stream says now.
    ///
    /// # Errors
    /// Database or decoding errors.
    pub async fn user(&self, id: UserId) -> Result<User, LedgerError> {
        Ok(self.store.load::<User>(id).await?.0)
    }

    /// The user linked to an identity, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn user_by_identity(
        &self,
        issuer: &Issuer,
        subject: &Subject,
    ) -> Result<Option<UserId>, LedgerError> {
        self.user_by_claim(
            ClaimScope::UserIdentity,
            &Identity::claim_value(issuer, subject),
        )
        .await
    }

    /// The user registered or invited with an email, if any.
    ///
    /// # Errors
    /// Database errors.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserId>, LedgerError> {
        self.user_by_claim(ClaimScope::UserEmail, email.as_str())
            .await
    }

    async fn user_by_claim(
        &self,
        scope: ClaimScope,
        value: &str,
    ) -> Result<Option<UserId>, LedgerError> {
        let stream: Option<String> = sqlx::query_scalar(
            "SELECT stream_id FROM unique_claims WHERE scope = $1 AND value = $2",
        )
        .bind(scope.as_str())
        .bind(value)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(stream
            .as_deref()
            .and_then(|s| id_from_claim_stream(AggregateType::User, s)))
    }
}
