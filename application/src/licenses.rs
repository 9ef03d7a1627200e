//! Licenses as a use case: every License command the ledger runs goes through [`Licenses`],
//! which shows the state the command left to the in-memory validation model itself — a command
//! answered by this process is visible to `POST /v1/validate` at once, and no caller can forget
//! to tell it (the follower reading the log would catch up later, but a client validating right
//! after an activation must not see old news).
//!
//! Reads fold the license's stream (read-your-writes), or fold it "as of" an instant
//! ([`crate::asof`]).

use commands::ledger::{LicenseChange, NewLicense};
use commands::{CommandContext, Idempotency, Ledger, Loaded, Outcome};
use domain::event::Actor;
use domain::ids::{AppId, InstallationId, LicenseId, UserId};
use domain::license::{License, LicenseEvent, LicenseState};
use domain::reach::Action;
use domain::values::{DeactivationReason, Environment, Fingerprint, Label, OfflineTokenKind};
use domain::{AggregateType, ErrorCode, Timestamp};

use crate::lists::{Listed, PageRequest, Scope};
use crate::tokens::{self, Issued, SignedToken};
use crate::views::{
    DeactivationView, EventView, InstallationUse, InstallationView, LeaseView, LicenseView,
    LicenseWithKey, Written,
};
use crate::{App, AppError};
use projections::queries::{MAX_PAGE, Order};

/// A device asking for a seat.
#[derive(Clone, Debug)]
pub struct ActivationRequest {
    pub fingerprint: Fingerprint,
    pub hostname: Option<Label>,
    pub platform: Option<Label>,
    pub environment: Environment,
}

/// An activation's answer: the installation, and whether this request created it (a fingerprint
/// already active gets its installation back).
#[derive(Clone, Debug)]
pub struct Activated {
    pub created: bool,
    pub installation: InstallationView,
}

/// An assignment's answer: the license, and whether this request named the user (one named
/// already gets the license back unchanged).
#[derive(Clone, Debug)]
pub struct Assigned {
    pub created: bool,
    pub written: Written<LicenseView>,
}

/// The license use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Licenses<'a> {
    app: &'a App,
    /// The write side over the request pool, or over the jobs pool for a background job.
    ledger: &'a Ledger,
}

impl App {
    /// The license use cases (of requests: on the request pool).
    pub fn licenses(&self) -> Licenses<'_> {
        Licenses {
            app: self,
            ledger: self.ledger(),
        }
    }

    /// The license use cases of background jobs: the same, on the jobs pool.
    pub(crate) fn licenses_for_jobs(&self) -> Licenses<'_> {
        Licenses {
            app: self,
            ledger: self.jobs_ledger(),
        }
    }
}

fn license_not_found(id: LicenseId) -> AppError {
    AppError::not_found(
        ErrorCode::LicenseNotFound,
        format!("license {id} does not exist"),
    )
}

/// The state a License command left.
fn state_of(outcome: &Outcome<License>) -> Result<&LicenseState, AppError> {
    outcome
        .aggregate
        .state()
        .ok_or(AppError::Invariant("a license command left no license"))
}

impl Licenses<'_> {
    /// The one place License outcomes reach the validation model.
    fn observed(&self, outcome: Outcome<License>) -> Outcome<License> {
        if let Some(state) = outcome.aggregate.state() {
            self.app
                .validation()
                .observe(outcome.id, state, outcome.version);
        }
        outcome
    }

    /// The view of what a command left, with the status derived now.
    fn view(&self, outcome: &Outcome<License>) -> Result<LicenseView, AppError> {
        Ok(LicenseView::new(
            outcome.id.into(),
            state_of(outcome)?,
            outcome.created_at,
            outcome.updated_at,
            outcome.version,
            self.app.now(),
        ))
    }

    /// The answer of a command that minted a key: the view, and the key this once (`None` on
    /// a replay: the key was shown to the first request and is stored nowhere).
    fn with_key(
        &self,
        outcome: Outcome<License>,
        key: Option<domain::keys::LicenseKey>,
    ) -> Result<Written<LicenseWithKey>, AppError> {
        let outcome = self.observed(outcome);
        Ok(Written {
            view: LicenseWithKey {
                license: self.view(&outcome)?,
                key: key.map(|k| k.expose().to_owned()),
            },
            replayed: outcome.replayed,
        })
    }

    // ----- billing (the inbox's consumer, on the jobs pool) -----

    /// Issues license `id` (derived from what provisions it: provisioning twice issues once).
    ///
    /// # Errors
    /// `LICENSE_ALREADY_ISSUED` the second time; refusals and infrastructure errors.
    pub(crate) async fn issue_as(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
        input: NewLicense,
    ) -> Result<(), AppError> {
        let (outcome, _key) = self.ledger.issue_license_as(ctx, id, input).await?;
        self.observed(outcome);
        Ok(())
    }

    /// Records a payment gateway's fact on license `id`.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND`, `LICENSE_REVOKED`; infrastructure errors.
    pub(crate) async fn sync_billing(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
        target: domain::billing::BillingTarget,
        observed: domain::billing::Observation,
    ) -> Result<usize, AppError> {
        let outcome = self.ledger.sync_billing(ctx, id, target, observed).await?;
        let appended = outcome.events.len();
        self.observed(outcome);
        Ok(appended)
    }

    // ----- administration -----

    /// Issues a license; the answer carries its key this once.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn issue(
        &self,
        ctx: &CommandContext,
        input: NewLicense,
    ) -> Result<Written<LicenseWithKey>, AppError> {
        let (outcome, key) = self.ledger.issue_license(ctx, input).await?;
        self.with_key(outcome, key)
    }

    /// Applies a lifecycle change.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn change(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
        change: LicenseChange,
    ) -> Result<Written<LicenseView>, AppError> {
        let outcome = self.ledger.change_license(ctx, id, change).await?;
        let outcome = self.observed(outcome);
        Ok(Written {
            view: self.view(&outcome)?,
            replayed: outcome.replayed,
        })
    }

    /// Names user `user_id` on license `id`, for a principal that may assign licenses at the
    /// license's organization. The user must be one the principal reaches (any other answers
    /// exactly as an unknown user) and of the license's organization or below.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` or `USER_NOT_FOUND` (unknown or out of reach), 403 without
    /// `AssignLicenses` there; refusals (`TOO_MANY_ASSIGNMENTS`, `USER_DEACTIVATED`,
    /// `ASSIGNEE_OUTSIDE_ORGANIZATION`, `LICENSE_REVOKED`); infrastructure errors.
    pub async fn assign(
        &self,
        ctx: &CommandContext,
        access: &crate::access::Access,
        id: LicenseId,
        user_id: UserId,
    ) -> Result<Assigned, AppError> {
        self.authorize(access, id, Action::AssignLicenses, || license_not_found(id))
            .await?;
        let user = self.ledger.user(user_id).await?;
        let state = user
            .state()
            .ok_or_else(|| crate::users::user_not_found(user_id))?;
        // Reaching the user's home organization at all is what makes it known to the caller.
        self.app
            .authorize_at(access, state.organization_id, Action::ReadLicenses, || {
                crate::users::user_not_found(user_id)
            })
            .await?;
        let outcome = self.ledger.assign(ctx, id, user_id, state).await?;
        let outcome = self.observed(outcome);
        Ok(Assigned {
            created: !outcome.events.is_empty(),
            written: Written {
                view: self.view(&outcome)?,
                replayed: outcome.replayed,
            },
        })
    }

    /// Takes user `user_id`'s name off license `id`.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` (unknown or out of reach), 403 without `AssignLicenses` there,
    /// `ASSIGNMENT_NOT_FOUND`; infrastructure errors.
    pub async fn unassign(
        &self,
        ctx: &CommandContext,
        access: &crate::access::Access,
        id: LicenseId,
        user_id: UserId,
    ) -> Result<Written<LicenseView>, AppError> {
        self.authorize(access, id, Action::AssignLicenses, || license_not_found(id))
            .await?;
        let outcome = self.ledger.unassign(ctx, id, user_id).await?;
        let outcome = self.observed(outcome);
        Ok(Written {
            view: self.view(&outcome)?,
            replayed: outcome.replayed,
        })
    }

    /// Ends installation `installation_id` from the portal (moving a machine): for a principal
    /// that may manage installations at its license's organization. The license is found
    /// through the log, so an installation activated a moment ago is found at once.
    ///
    /// # Errors
    /// `INSTALLATION_NOT_FOUND` (unknown, ended already, or out of reach), 403 without
    /// `ManageInstallations` there; infrastructure errors.
    pub async fn deactivate_installation(
        &self,
        ctx: &CommandContext,
        access: &crate::access::Access,
        installation_id: InstallationId,
    ) -> Result<DeactivationView, AppError> {
        let not_found = || {
            let e = domain::DomainError::InstallationNotFound(installation_id);
            AppError::not_found(e.code(), e.to_string())
        };
        let license_id =
            projections::queries::license_of_installation(self.app.pool(), installation_id.into())
                .await?
                .map(LicenseId::from_uuid)
                .ok_or_else(not_found)?;
        self.authorize(access, license_id, Action::ManageInstallations, not_found)
            .await?;
        self.deactivate(ctx, license_id, installation_id, DeactivationReason::Admin)
            .await
    }

    /// Checks `access` may manage installations of license `id` (at its organization now): who
    /// may answer its offline request files besides vendor support.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` (unknown or out of reach), 403 without `ManageInstallations` there;
    /// database errors.
    pub async fn authorize_installations(
        &self,
        access: &crate::access::Access,
        id: LicenseId,
    ) -> Result<(), AppError> {
        self.authorize(access, id, Action::ManageInstallations, || {
            license_not_found(id)
        })
        .await
        .map(|_| ())
    }

    /// Checks `access` may do `action` on license `id` at its organization now; a license it
    /// does not reach answers `not_found` (for the license itself: exactly as an unknown one).
    /// Returns the license as read.
    async fn authorize(
        &self,
        access: &crate::access::Access,
        id: LicenseId,
        action: Action,
        not_found: impl Fn() -> AppError,
    ) -> Result<LicenseView, AppError> {
        let now = self.get(id).await.map_err(|e| match e {
            AppError::NotFound { .. } => not_found(),
            other => other,
        })?;
        self.app
            .authorize_at(
                access,
                domain::ids::OrganizationId::from_uuid(now.organization_id),
                action,
                not_found,
            )
            .await?;
        Ok(now)
    }

    /// Replaces the license's key; the answer carries the new key this once.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn rotate_key(
        &self,
        ctx: &CommandContext,
        id: LicenseId,
    ) -> Result<Written<LicenseWithKey>, AppError> {
        let (outcome, key) = self.ledger.rotate_license_key(ctx, id).await?;
        self.with_key(outcome, key)
    }

    /// The license now, folded from its stream.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND`; database and decoding errors.
    pub async fn get(&self, id: LicenseId) -> Result<LicenseView, AppError> {
        let loaded: Loaded<License> = self.ledger.store().read(id).await?;
        let license = loaded
            .aggregate
            .state()
            .ok_or_else(|| license_not_found(id))?;
        Ok(LicenseView::new(
            id.into(),
            license,
            loaded.created_at,
            loaded.updated_at,
            loaded.version,
            self.app.now(),
        ))
    }

    /// The license now, or as it stood at `as_of`, for a principal that may read licenses at its
    /// organization now and, when it was held by another organization at `as_of`, at that one
    /// too (a license transferred away is no more the former owner's to read, at any instant;
    /// one transferred in shows its new owner nothing of its time with the former); any other
    /// answers exactly as an unknown license.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` (unknown or out of reach), 403 where it may not read licenses;
    /// database and decoding errors.
    pub async fn get_for(
        &self,
        access: &crate::access::Access,
        id: LicenseId,
        as_of: Option<Timestamp>,
    ) -> Result<LicenseView, AppError> {
        let now = self
            .authorize(access, id, Action::ReadLicenses, || license_not_found(id))
            .await?;
        let Some(at) = as_of else {
            return Ok(now);
        };
        // Vendors learn when a license did not exist yet; a customer reaching it learns
        // nothing it could not read from its history.
        let then = self.get_as_of(id, at).await?;
        // A license transferred in: its past under its former owner is the former owner's. A
        // caller who does not reach the organization that held it at `at` gets it as unknown
        // then, as the former owner gets it now (vendor roles reach every organization).
        if then.organization_id != now.organization_id {
            self.app
                .authorize_at(
                    access,
                    domain::ids::OrganizationId::from_uuid(then.organization_id),
                    Action::ReadLicenses,
                    || license_not_found(id),
                )
                .await?;
        }
        Ok(then)
    }

    /// The license as it stood at `at` (the fold `ledger-replay state` shows too).
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` when it did not exist then; database and decoding errors.
    pub async fn get_as_of(&self, id: LicenseId, at: Timestamp) -> Result<LicenseView, AppError> {
        crate::asof::license_view(self.app.pool(), id, at)
            .await?
            .ok_or_else(|| {
                AppError::not_found(
                    ErrorCode::LicenseNotFound,
                    format!("license {id} does not exist at {}", at.to_rfc3339()),
                )
            })
    }

    /// A page of the license's events by sequence, each linked to the hash before it in the
    /// stream (the page's first one too: the window reads its predecessor). A long-lived
    /// floating license holds tens of thousands of heartbeats: a page reads its own rows only.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` (on the first page), `INVALID_CURSOR`; database errors.
    pub async fn events(
        &self,
        id: LicenseId,
        page: PageRequest,
    ) -> Result<Listed<EventView>, AppError> {
        let scope = Scope::new("license_events").with("license_id", Some(id));
        let cursors = self.app.cursors();
        let window = cursors.window::<i64>(&scope, &page)?;
        let shown = window.limit.clamp(1, MAX_PAGE);
        let descending = window.order == Order::Desc;
        let store = self.ledger.store();
        let stream = id.to_string();
        let views = if descending {
            // Newest first: each event's predecessor is the row after it; one row more than
            // shown says whether more follow and links the last shown one. Sequences start at 1
            // without gaps, so a page that reaches the start ends at the genesis hash.
            let from = window.after.unwrap_or(i64::MAX);
            let rows = store
                .stream_window(AggregateType::License, &stream, from, true, shown + 1)
                .await?;
            let genesis = hex::encode(domain::integrity::GENESIS_HASH);
            rows.iter()
                .enumerate()
                .map(|(i, e)| {
                    let previous = rows
                        .get(i + 1)
                        .map_or_else(|| genesis.clone(), |p| hex::encode(&p.hash));
                    EventView::linked(e, previous)
                })
                .collect::<Vec<_>>()
        } else {
            // Oldest first from the cursor's sequence: that event itself comes first (the
            // predecessor of the page), then the page and one more.
            let from = window.after.unwrap_or(0);
            let mut rows = store
                .stream_window(AggregateType::License, &stream, from, false, shown + 2)
                .await?;
            let previous = match rows.first() {
                Some(first) if first.sequence == from => rows.remove(0).hash,
                _ => domain::integrity::GENESIS_HASH.to_vec(),
            };
            EventView::chain_after(&previous, &rows)
        };
        if views.is_empty() && window.after.is_none() {
            return Err(license_not_found(id));
        }
        Ok(cursors.page(&scope, &window, views, |v| v.sequence, |v| v))
    }

    // ----- client applications -----

    /// Activates a device (or finds it active).
    ///
    /// # Errors
    /// `TOO_MANY_ACTIVATIONS`, the validation code of a license that is not valid,
    /// infrastructure errors.
    pub async fn activate(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        request: ActivationRequest,
    ) -> Result<Activated, AppError> {
        let fingerprint = request.fingerprint.clone();
        let outcome = self
            .ledger
            .activate(
                ctx,
                license_id,
                request.fingerprint,
                request.hostname,
                request.platform,
                request.environment,
            )
            .await?;
        let outcome = self.observed(outcome);
        let license = state_of(&outcome)?;
        let installation = license
            .installation_of(fingerprint.as_str(), self.app.now())
            .ok_or(AppError::Invariant("an activation left no installation"))?;
        let details = InstallationUse::of(license, installation)
            .ok_or(AppError::Invariant("an activated installation vanished"))?;
        Ok(Activated {
            created: !outcome.appended.is_empty(),
            installation: InstallationView {
                installation_id: installation.into(),
                license_id: license_id.into(),
                details,
            },
        })
    }

    /// Ends an installation.
    ///
    /// # Errors
    /// `INSTALLATION_NOT_FOUND`, infrastructure errors.
    pub async fn deactivate(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        installation_id: InstallationId,
        reason: DeactivationReason,
    ) -> Result<DeactivationView, AppError> {
        let before: Loaded<License> = self.ledger.store().read(license_id).await?;
        let details = before
            .aggregate
            .state()
            .and_then(|s| InstallationUse::of(s, installation_id));
        let outcome = self
            .ledger
            .deactivate(ctx, license_id, installation_id, reason)
            .await?;
        let outcome = self.observed(outcome);
        Ok(DeactivationView {
            installation_id: installation_id.into(),
            license_id: license_id.into(),
            details,
            deactivated_at: outcome.updated_at,
        })
    }

    /// Extends a floating installation's lease.
    ///
    /// # Errors
    /// `LEASE_EXPIRED`, `NOT_FLOATING`, the validation code, infrastructure errors.
    pub async fn heartbeat(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        installation_id: InstallationId,
    ) -> Result<LeaseView, AppError> {
        let outcome = self
            .ledger
            .heartbeat(ctx, license_id, installation_id)
            .await?;
        let outcome = self.observed(outcome);
        let lease_expires_at = outcome
            .aggregate
            .state()
            .and_then(|s| s.activations.get(&installation_id))
            .and_then(|a| a.lease_expires_at);
        Ok(LeaseView {
            installation_id: installation_id.into(),
            lease_expires_at,
        })
    }

    /// Records the license's lapsed floating leases (the lease-expiry job).
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn expire_leases(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
    ) -> Result<(), AppError> {
        let outcome = self.ledger.expire_leases(ctx, license_id).await?;
        self.observed(outcome);
        Ok(())
    }

    /// Records and signs an offline token of `kind`.
    ///
    /// # Errors
    /// `OFFLINE_NOT_ALLOWED`, the validation code, infrastructure errors.
    pub async fn offline_token(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        kind: OfflineTokenKind,
        fingerprint: Option<Fingerprint>,
    ) -> Result<SignedToken, AppError> {
        let outcome = self
            .ledger
            .record_offline_token(ctx, license_id, kind, fingerprint)
            .await?;
        let outcome = self.observed(outcome);
        let license = state_of(&outcome)?;
        let Some(LicenseEvent::OfflineTokenIssued {
            jti,
            kind,
            installation_id,
            fingerprint,
            issued_at,
            expires_at,
        }) = outcome
            .events
            .iter()
            .find(|e| matches!(e, LicenseEvent::OfflineTokenIssued { .. }))
        else {
            return Err(AppError::Invariant("the offline token was not recorded"));
        };
        let issued = Issued {
            jti: *jti,
            kind: *kind,
            installation_id: *installation_id,
            fingerprint: fingerprint.as_ref(),
            issued_at: *issued_at,
            expires_at: *expires_at,
        };
        let claims = tokens::license_claims(self.app.issuer(), license_id, license, &issued);
        tokens::sign(&self.app.signing().current(), &claims, *expires_at)
    }

    /// Activates an air-gapped machine from its request file and answers with its token of kind
    /// `offline_activation`.
    ///
    /// # Errors
    /// See [`Licenses::activate`] and [`Licenses::offline_token`].
    pub async fn activate_offline(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        request: ActivationRequest,
    ) -> Result<SignedToken, AppError> {
        let fingerprint = request.fingerprint.clone();
        // Two commands, each recording a key of its own: the request's key on the activation,
        // which runs first, and a key derived from it on the token's event (the same key on
        // both would make the token command find it taken and answer the activation's
        // outcome); derived with a space, which no client's key holds. So a key another request
        // used is refused before anything is activated, and a retry the server's memory no
        // longer holds activates nothing, even after the device was freed since (ADR 0019).
        let activation = ctx.clone();
        let token = CommandContext {
            idempotency: ctx.idempotency.as_ref().map(|idem| Idempotency {
                key: token_key(&idem.key),
                request_hash: idem.request_hash.clone(),
            }),
            ..ctx.clone()
        };
        // Refused before a seat is taken: the token's own condition, checked first (the
        // activation took a seat and the token was then refused, found by an attacker).
        let loaded: Loaded<License> = self.ledger.store().read(license_id).await?;
        if let Some(state) = loaded.aggregate.state() {
            state.check_offline_allowed()?;
        }
        if !self.ran_before(ctx).await? {
            self.activate(&activation, license_id, request).await?;
        }
        self.offline_token(
            &token,
            license_id,
            OfflineTokenKind::OfflineActivation,
            Some(fingerprint),
        )
        .await
    }

    /// Whether an offline activation with this request's key ran before: its activation or its
    /// token recorded the key (or the derived one). An activation of a device already active
    /// records nothing, so the token's key is looked up too: without it, a retry after the device
    /// was freed activated it again (found by an attacker). Another request's use of the key is
    /// refused here, before anything is activated.
    async fn ran_before(&self, ctx: &CommandContext) -> Result<bool, AppError> {
        let Some(idem) = &ctx.idempotency else {
            return Ok(false);
        };
        let store = self.ledger.store();
        Ok(store.recorded(ctx, &idem.key).await?
            || store.recorded(ctx, &token_key(&idem.key)).await?)
    }

    /// Frees an air-gapped machine's seat from its request file and answers with a signed receipt.
    ///
    /// # Errors
    /// `INSTALLATION_NOT_FOUND` when the fingerprint is not active; infrastructure errors.
    pub async fn deactivate_offline(
        &self,
        ctx: &CommandContext,
        license_id: LicenseId,
        app: &AppId,
        fingerprint: &Fingerprint,
    ) -> Result<SignedToken, AppError> {
        let now = self.app.now();
        let loaded: Loaded<License> = self.ledger.store().read(license_id).await?;
        let installation_id = loaded
            .aggregate
            .state()
            .and_then(|s| s.installation_of(fingerprint.as_str(), now))
            .ok_or_else(|| {
                AppError::not_found(
                    ErrorCode::InstallationNotFound,
                    "this fingerprint is not activated on the license",
                )
            })?;
        let outcome = self
            .ledger
            .deactivate(
                ctx,
                license_id,
                installation_id,
                DeactivationReason::OfflineRequest,
            )
            .await?;
        let outcome = self.observed(outcome);
        let at = outcome.updated_at.unwrap_or(now);
        let claims = tokens::receipt_claims(
            self.app.issuer(),
            license_id,
            app,
            installation_id,
            fingerprint,
            at,
        );
        let expires = claims.exp.map_or(at, |exp| {
            chrono::DateTime::from_timestamp(exp, 0).unwrap_or(at)
        });
        tokens::sign(&self.app.signing().current(), &claims, expires)
    }
}

/// The context of a command a client application causes (activations, offline tokens).
pub fn client_context(request_id: impl Into<String>) -> CommandContext {
    CommandContext::new(Actor::Client, request_id)
}

/// The key an offline activation's token records, derived from the request's (which its
/// activation records): with a space, which no client's key holds.
fn token_key(key: &str) -> String {
    format!("{key} token")
}
