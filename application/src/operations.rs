//! Running the ledger: administration tokens, the audit trail, the latest signed checkpoint,
//! projector lag and readiness.

use commands::CommandContext;
use domain::Timestamp;
use domain::api_token::{ApiToken, TokenGrant};
use domain::event::Actor;
use domain::ids::{ApiTokenId, OrganizationId, UserId};
use domain::reach::Action;
use domain::values::{Name, Reason, Role};
use projections::engine::ProjectorLag;
use projections::queries::{AuditFilter, AuditRow};
use serde::Serialize;

use crate::access::{Access, Impersonation, PrincipalKind};
use crate::checkpoints::CheckpointView;
use crate::views::Written;
use crate::{App, AppError};

/// A token just minted: its secret is shown this once.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MintedToken {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub id: ApiTokenId,
    /// A vendor role (`vendor_admin`, `vendor_support`, `vendor_auditor`), or for a service
    /// token a customer role held at `organization_id`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub role: Role,
    /// The organization a service token is bound to; `null` for a vendor role.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<uuid::Uuid>))]
    pub organization_id: Option<OrganizationId>,
    /// The bearer secret (`llt_…`); `null` when this answer replays an earlier request with the
    /// same `Idempotency-Key` (the secret was shown to that request and is stored nowhere).
    pub token: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// The state a token command left.
fn token_state(
    outcome: &commands::Outcome<ApiToken>,
) -> Result<&domain::api_token::ApiTokenState, AppError> {
    outcome
        .aggregate
        .state()
        .ok_or(AppError::Invariant("a token command left no token"))
}

/// An impersonation just started: the token acting as the user, shown this once.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImpersonationView {
    /// The impersonation token's id (`POST /v1/tokens/{id}/revoke` ends it early).
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub id: ApiTokenId,
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub user_id: UserId,
    /// The bearer secret (`llt_…`); `null` when this answer replays an earlier request with the
    /// same `Idempotency-Key`.
    pub token: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// A token after revocation.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokedToken {
    #[cfg_attr(feature = "openapi", schema(value_type = uuid::Uuid))]
    pub id: ApiTokenId,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
}

/// One projector's readiness.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectorReadiness {
    pub name: String,
    #[serde(flatten)]
    pub lag: Option<LagWithin>,
    /// Set when the lag could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// A projector's lag against the bound.
#[derive(Clone, Debug, Serialize)]
pub struct LagWithin {
    pub pending_events: i64,
    pub oldest_pending_ms: i64,
    pub within_bound: bool,
}

/// Whether the server may take traffic: the database answers and every projector is within
/// `max_lag` of the log.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// The database does not answer.
    DatabaseUnreachable,
    /// Per projector; `ready` when every one is within the bound.
    Checked {
        ready: bool,
        projections: Vec<ProjectorReadiness>,
    },
}

/// The longest an impersonation lasts.
pub const MAX_IMPERSONATION: chrono::Duration = chrono::Duration::hours(1);

impl App {
    /// The role a presented bearer token holds; `None` when it does not authenticate (unknown,
    /// revoked, expired or wrong secret: the caller cannot tell which).
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn authenticate(
        &self,
        presented: &domain::keys::ApiTokenSecret,
    ) -> Result<Option<Access>, AppError> {
        let Ok(grant) = self.ledger().authenticate(presented).await? else {
            return Ok(None);
        };
        match grant {
            TokenGrant::Role {
                role,
                organization_id,
            } => Ok(Some(Access::token(presented.id(), role, organization_id))),
            // Both sides as their streams say now: the user's rights (a role revoked, or the
            // user deactivated, during the impersonation takes effect on the next request), and
            // the staff member's (deactivated, its token revoked or expired, or no more allowed
            // to impersonate: its impersonations stop with it). A user who came to hold a vendor
            // role is not acted as: support would act with staff rights.
            TokenGrant::Impersonation {
                user_id,
                started_by,
            } => self.impersonated(presented.id(), user_id, started_by).await,
        }
    }

    /// The access of impersonation `token` (of user `user_id`, started by `started_by`) now.
    async fn impersonated(
        &self,
        token: ApiTokenId,
        user_id: UserId,
        started_by: Actor,
    ) -> Result<Option<Access>, AppError> {
        if !self.may_still_impersonate(&started_by).await? {
            return Ok(None);
        }
        let user = self.ledger().user(user_id).await?;
        let Some(state) = user
            .state()
            .filter(|s| !s.deactivated && !s.grants.iter().any(|g| g.role.is_vendor()))
        else {
            return Ok(None);
        };
        Ok(Some(Access {
            kind: PrincipalKind::User {
                id: user_id,
                email: state.email.clone(),
            },
            grants: state.effective_grants(),
            impersonation: Some(Impersonation {
                token,
                by: started_by,
            }),
        }))
    }

    /// The access of impersonation token `id` for the web UI session of `staff`, who started
    /// it: what `authenticate` gives its bearer, without the secret (the session is the
    /// credential). `None` once it is revoked or expired, or when it is not `staff`'s.
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn impersonation_access(
        &self,
        id: ApiTokenId,
        staff: UserId,
    ) -> Result<Option<Access>, AppError> {
        let (token, _) = self.ledger().store().load::<ApiToken>(id).await?;
        let Some(state) = token.state() else {
            return Ok(None);
        };
        let live =
            state.revoked_at.is_none() && state.expires_at.is_none_or(|end| self.now() < end);
        match &state.grant {
            TokenGrant::Impersonation {
                user_id,
                started_by: started_by @ Actor::User(by),
            } if live && *by == staff => self.impersonated(id, *user_id, started_by.clone()).await,
            _ => Ok(None),
        }
    }

    /// Whether the staff member `who` may impersonate now: a live token of a vendor role that
    /// may, or an active user holding one.
    async fn may_still_impersonate(&self, who: &Actor) -> Result<bool, AppError> {
        let may = |role: Role| role.is_vendor() && role.actions().contains(Action::Impersonate);
        Ok(match who {
            Actor::ApiToken(id) => {
                let (token, _) = self.ledger().store().load::<ApiToken>(*id).await?;
                token.state().is_some_and(|s| {
                    s.revoked_at.is_none()
                        && s.expires_at.is_none_or(|end| self.now() < end)
                        && matches!(
                            s.grant,
                            TokenGrant::Role { role, organization_id: None } if may(role)
                        )
                })
            }
            Actor::User(id) => {
                let user = self.ledger().user(*id).await?;
                user.state()
                    .is_some_and(|s| s.effective_grants().iter().any(|g| may(g.role)))
            }
            _ => false,
        })
    }

    /// Mints an administration token.
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn mint_token(
        &self,
        ctx: &CommandContext,
        role: Role,
        organization_id: Option<OrganizationId>,
        label: Option<Name>,
        ttl: chrono::Duration,
    ) -> Result<Written<MintedToken>, AppError> {
        let (outcome, secret) = self
            .ledger()
            .issue_api_token(ctx, role, organization_id, label, Some(ttl))
            .await?;
        let state = token_state(&outcome)?;
        Ok(Written {
            view: MintedToken {
                id: outcome.id,
                role: state.role().unwrap_or(role),
                organization_id,
                token: secret.map(|s| s.expose().to_owned()),
                expires_at: state.expires_at,
            },
            replayed: outcome.replayed,
        })
    }

    /// Starts an impersonation of user `user_id` (vendor support or administration): a token
    /// acting with exactly the user's rights, every event it causes naming the staff member as
    /// `impersonated_by`.
    ///
    /// # Errors
    /// 403 without `Impersonate`; `USER_NOT_FOUND`, `USER_DEACTIVATED`,
    /// `STAFF_NOT_IMPERSONATED`; infrastructure errors.
    pub async fn start_impersonation(
        &self,
        ctx: &CommandContext,
        access: &Access,
        user_id: UserId,
        reason: Reason,
        ttl: chrono::Duration,
    ) -> Result<Written<ImpersonationView>, AppError> {
        self.authorize_everywhere(access, Action::Impersonate)?;
        // Bounded here for every caller: a deactivation finds the impersonations to end among
        // those recorded within this bound (`Users::deactivate`).
        if ttl > MAX_IMPERSONATION {
            return Err(AppError::InvalidField {
                field: "ttl_seconds",
                detail: "ttl_seconds: an impersonation lasts at most 3600 seconds".into(),
            });
        }
        let (outcome, secret) = self
            .ledger()
            .start_impersonation(ctx, user_id, reason, ttl)
            .await?;
        let state = token_state(&outcome)?;
        Ok(Written {
            view: ImpersonationView {
                id: outcome.id,
                user_id,
                token: secret.map(|s| s.expose().to_owned()),
                expires_at: state
                    .expires_at
                    .ok_or(AppError::Invariant("an impersonation without an end"))?,
            },
            replayed: outcome.replayed,
        })
    }

    /// Revokes a token: it stops working on the next request. Vendor administrators revoke any;
    /// an impersonation is also ended by the staff member who started it, or from within itself
    /// (the portal's banner).
    ///
    /// # Errors
    /// 403 for anyone else (whether the token exists or not); `TOKEN_NOT_FOUND`,
    /// `TOKEN_ALREADY_REVOKED`, infrastructure errors.
    pub async fn revoke_token(
        &self,
        ctx: &CommandContext,
        access: &Access,
        id: ApiTokenId,
    ) -> Result<Written<RevokedToken>, AppError> {
        if !access.may_everywhere(Action::Administer) {
            let own = access.impersonation.as_ref().is_some_and(|i| i.token == id) || {
                let (token, _) = self.ledger().store().load::<ApiToken>(id).await?;
                token.state().is_some_and(|s| {
                    matches!(&s.grant, TokenGrant::Impersonation { started_by, .. }
                        if *started_by == access.actor())
                })
            };
            if !own {
                return Err(AppError::Forbidden(format!(
                    "{} may revoke only the impersonations it started",
                    access.describe()
                )));
            }
        }
        let outcome = self.ledger().revoke_api_token(ctx, id).await?;
        Ok(Written {
            view: RevokedToken {
                id,
                revoked_at: outcome.aggregate.state().and_then(|s| s.revoked_at),
            },
            replayed: outcome.replayed,
        })
    }

    /// Audit rows that pass `filter`, a page of them by log position.
    ///
    /// # Errors
    /// `INVALID_CURSOR`; database errors.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        page: crate::lists::PageRequest,
    ) -> Result<crate::lists::Listed<AuditRow>, AppError> {
        let scope = crate::lists::Scope::new("audit")
            .with("from", filter.from.map(|t| t.to_rfc3339()))
            .with("to", filter.to.map(|t| t.to_rfc3339()))
            .with("license_id", filter.license_id)
            .with("actor", filter.actor.as_deref())
            .with(
                "organizations",
                filter.organizations.as_ref().map(|o| {
                    o.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            );
        let cursors = self.cursors();
        let window = cursors.window(&scope, &page)?;
        let rows = projections::queries::audit(self.pool(), filter, &window).await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.position, |r| r))
    }

    /// The latest signed checkpoint of the log.
    ///
    /// # Errors
    /// `NO_CHECKPOINT` before the first; database errors.
    pub async fn latest_checkpoint(&self) -> Result<CheckpointView, AppError> {
        crate::checkpoints::latest(self.pool())
            .await?
            .ok_or_else(|| {
                AppError::not_found(
                    domain::ErrorCode::NoCheckpoint,
                    "no checkpoint has been signed yet",
                )
            })
    }

    /// How far behind the log each projector is.
    ///
    /// # Errors
    /// Database errors.
    pub async fn projector_lags(&self) -> Result<Vec<ProjectorLag>, AppError> {
        let mut lags = Vec::new();
        for p in self.projections() {
            lags.push(projections::engine::lag(self.pool(), p.as_ref()).await?);
        }
        Ok(lags)
    }

    /// Waits until every projector has applied every committed event, or `within` has passed:
    /// the web UI calls it after a change, so the page it shows next reads what the person
    /// just did from the read models (which trail the log by milliseconds). Under a write load
    /// that never lets the projectors be idle, the deadline ends the wait.
    ///
    /// # Errors
    /// Database errors.
    pub async fn settle(&self, within: std::time::Duration) -> Result<(), AppError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let lags = self.projector_lags().await?;
            if lags.iter().all(|l| l.pending_events == 0) || tokio::time::Instant::now() >= deadline
            {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether the server may take traffic (`/readyz`).
    pub async fn readiness(&self, max_lag: std::time::Duration) -> Readiness {
        let pool = self.pool();
        if !commands::db::ping(pool).await {
            return Readiness::DatabaseUnreachable;
        }
        let bound_ms = i64::try_from(max_lag.as_millis()).unwrap_or(i64::MAX);
        let mut ready = true;
        let mut report = Vec::new();
        for p in self.projections() {
            match projections::engine::lag(pool, p.as_ref()).await {
                Ok(lag) => {
                    let within = lag.oldest_pending_ms <= bound_ms;
                    ready &= within;
                    report.push(ProjectorReadiness {
                        name: lag.name,
                        lag: Some(LagWithin {
                            pending_events: lag.pending_events,
                            oldest_pending_ms: lag.oldest_pending_ms,
                            within_bound: within,
                        }),
                        error: None,
                    });
                }
                Err(e) => {
                    ready = false;
                    tracing::warn!(projector = p.name(), error = %e, "cannot read projector lag");
                    report.push(ProjectorReadiness {
                        name: p.name().to_owned(),
                        lag: None,
                        error: Some("lag unavailable"),
                    });
                }
            }
        }
        Readiness::Checked {
            ready,
            projections: report,
        }
    }
}
