//! The decisions of a license: for each command, the events it causes or the rule that refuses
//! it. Deterministic: the time and every outside fact come in the command.

use chrono::{Duration, Months};

use super::{
    Assignee, IssueLicense, License, LicenseAction, LicenseCommand, LicenseEvent, LicenseIssued,
    LicenseState,
};
use crate::Timestamp;
use crate::error::DomainError;
use crate::ids::InstallationId;
use crate::validation::{self, LicenseFacts, ValidationCode};
use crate::values::{
    DeactivationReason, Environment, Fingerprint, Label, LicenseModel, OfflineTokenKind,
};

fn days(n: u32) -> Duration {
    Duration::days(i64::from(n))
}

impl License {
    /// Decides a command: the events it causes (none when it changes nothing), or why it is
    /// refused.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &LicenseCommand) -> Result<Vec<LicenseEvent>, DomainError> {
        let id = cmd.license_id;
        let state = match (self, &cmd.action) {
            (Self::NotIssued, LicenseAction::Issue(issue)) => return Self::issue(cmd.at, issue),
            (Self::Issued(_), LicenseAction::Issue(_)) => {
                return Err(DomainError::LicenseAlreadyIssued(id));
            }
            (Self::NotIssued, _) => return Err(DomainError::LicenseNotFound(id)),
            (Self::Issued(state), _) => state,
        };
        // Freeing seats is housekeeping, allowed whatever the license's state.
        match &cmd.action {
            LicenseAction::Deactivate {
                installation_id,
                reason,
            } => return Self::deactivate(state, *installation_id, *reason),
            LicenseAction::ExpireLeases => {
                return Ok(state
                    .lapsed_leases(cmd.at)
                    .into_iter()
                    .map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id })
                    .collect());
            }
            LicenseAction::Unassign { user_id } => {
                if !state.assignees.contains(user_id) {
                    return Err(DomainError::AssignmentNotFound(*user_id));
                }
                return Ok(vec![LicenseEvent::Unassigned { user_id: *user_id }]);
            }
            _ => {}
        }
        // Revocation is final: nothing else changes a revoked license.
        if state.revocation.is_some() {
            return Err(DomainError::LicenseRevoked(id));
        }
        let events = match &cmd.action {
            LicenseAction::Issue(_)
            | LicenseAction::Deactivate { .. }
            | LicenseAction::Unassign { .. }
            | LicenseAction::ExpireLeases => unreachable!("handled above"),
            LicenseAction::Assign(assignee) => return Self::assign(state, assignee),
            LicenseAction::SyncBilling { target, observed } => {
                return Ok(Self::sync_billing(state, target, observed));
            }
            LicenseAction::Activate {
                installation_id,
                fingerprint,
                hostname,
                platform,
                environment,
            } => {
                return Self::activate(
                    state,
                    cmd.at,
                    *installation_id,
                    fingerprint,
                    hostname,
                    platform,
                    *environment,
                );
            }
            LicenseAction::Heartbeat { installation_id } => {
                return Self::heartbeat(state, cmd.at, *installation_id);
            }
            LicenseAction::IssueOfflineToken {
                jti,
                kind,
                fingerprint,
            } => return Self::offline_token(state, cmd.at, *jti, *kind, fingerprint.as_ref()),
            LicenseAction::Suspend { reason } => {
                if state.suspension.is_some() {
                    return Err(DomainError::LicenseAlreadySuspended(id));
                }
                vec![LicenseEvent::Suspended {
                    reason: reason.clone(),
                }]
            }
            LicenseAction::Reinstate => {
                if state.suspension.is_none() {
                    return Err(DomainError::LicenseNotSuspended(id));
                }
                vec![LicenseEvent::Reinstated {}]
            }
            LicenseAction::Renew { expires_at } => {
                let Some(current) = state.expires_at else {
                    return Err(DomainError::LicensePerpetual(id));
                };
                if *expires_at <= cmd.at {
                    return Err(DomainError::InvalidExpiry(
                        "expires_at must be in the future".into(),
                    ));
                }
                if *expires_at <= current {
                    return Err(DomainError::InvalidExpiry(format!(
                        "a renewal must extend the license beyond its current expiry {}",
                        current.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )));
                }
                vec![LicenseEvent::Renewed {
                    expires_at: *expires_at,
                }]
            }
            LicenseAction::Transfer { organization } => {
                organization.require_open()?;
                if organization.id == state.organization_id {
                    return Err(DomainError::SameOrganization(organization.id));
                }
                // The users named on it are the former owner's: their names go with the move
                // (a license is assigned to its own organization's users).
                let mut events: Vec<LicenseEvent> = state
                    .assignees
                    .iter()
                    .map(|user_id| LicenseEvent::Unassigned { user_id: *user_id })
                    .collect();
                events.push(LicenseEvent::Transferred {
                    organization_id: organization.id,
                });
                events
            }
            LicenseAction::Revoke { reason, category } => vec![LicenseEvent::Revoked {
                reason: reason.clone(),
                category: *category,
            }],
            LicenseAction::ChangeEntitlements { features } => {
                if *features == state.features {
                    vec![]
                } else {
                    vec![LicenseEvent::EntitlementsChanged {
                        features: features.clone(),
                    }]
                }
            }
            LicenseAction::ChangeSeats { seats } => {
                let active = state.active_installations(cmd.at);
                if seats.get() < active {
                    return Err(DomainError::SeatsBelowActivations {
                        seats: seats.get(),
                        active,
                    });
                }
                let assigned = state.named_seats_used();
                if seats.get() < assigned {
                    return Err(DomainError::SeatsBelowAssignments {
                        seats: seats.get(),
                        assigned,
                    });
                }
                if *seats == state.seats {
                    vec![]
                } else {
                    vec![LicenseEvent::SeatsChanged { seats: *seats }]
                }
            }
            LicenseAction::RotateKey {
                key_hash,
                key_prefix,
            } => vec![LicenseEvent::KeyRotated {
                key_hash: *key_hash,
                key_prefix: key_prefix.clone(),
            }],
            LicenseAction::ExtendMaintenance { until } => {
                if *until <= cmd.at || state.maintenance_until.is_some_and(|m| *until <= m) {
                    return Err(DomainError::InvalidExpiry(
                        "maintenance can only be extended to a later date".into(),
                    ));
                }
                vec![LicenseEvent::MaintenanceExtended { until: *until }]
            }
        };
        Ok(events)
    }

    /// The refusal for a license that is not valid at `at` (ignoring devices and features).
    fn require_valid(state: &LicenseState, at: Timestamp) -> Result<(), DomainError> {
        let decision = validation::decide(state, at, None, &[]);
        match decision.code {
            ValidationCode::Valid | ValidationCode::TooManyActivations => Ok(()),
            code => Err(DomainError::LicenseNotValid(code)),
        }
    }

    fn activate(
        state: &LicenseState,
        at: Timestamp,
        installation_id: InstallationId,
        fingerprint: &Fingerprint,
        hostname: &Option<Label>,
        platform: &Option<Label>,
        environment: Environment,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        Self::require_valid(state, at)?;
        if state.installation_of(fingerprint.as_str(), at).is_some() {
            return Ok(vec![]); // already active: the caller answers with that installation
        }
        // Lapsed leases free their seats now, recorded before the new activation.
        let mut events: Vec<LicenseEvent> = state
            .lapsed_leases(at)
            .into_iter()
            .map(|installation_id| LicenseEvent::FloatingLeaseExpired { installation_id })
            .collect();
        if state.active_installations(at) >= state.seats.get() {
            return Err(DomainError::TooManyActivations {
                seats: state.seats.get(),
            });
        }
        events.push(LicenseEvent::InstallationActivated {
            installation_id,
            fingerprint: fingerprint.clone(),
            hostname: hostname.clone(),
            platform: platform.clone(),
            environment,
            activated_at: at,
        });
        if let (LicenseModel::Floating, Some(lease)) =
            (state.terms.model, state.terms.lease_seconds)
        {
            events.push(LicenseEvent::FloatingLeaseGranted {
                installation_id,
                expires_at: at + Duration::seconds(i64::from(lease)),
            });
        }
        Ok(events)
    }

    /// The events that record gateway fact `observed` (what `target` says) and bring the billing
    /// state to what all the license's facts give, read in the gateway's order
    /// ([`crate::billing::derive`]): none for a fact applied already; otherwise what changed,
    /// then `SubscriptionSynced` with the fact, so that a fact arriving late takes its place.
    fn sync_billing(
        state: &LicenseState,
        target: &crate::billing::BillingTarget,
        observed: &crate::billing::Observation,
    ) -> Vec<LicenseEvent> {
        let billing = &state.billing;
        let Err(place) = billing.facts.binary_search_by(|f| f.observed.cmp(observed)) else {
            return vec![]; // delivered again
        };
        let fact = crate::billing::BillingFact {
            observed: observed.clone(),
            target: target.clone(),
        };
        let mut facts = billing.facts.clone();
        facts.insert(place, fact.clone());
        let Some(d) = crate::billing::derive(&facts, state.terms.payment_grace_days) else {
            return vec![];
        };
        let mut events = Vec::new();
        let linked = (d.link.0.clone(), d.link.1.clone());
        if billing.subscription.as_ref() != Some(&linked) {
            events.push(LicenseEvent::SubscriptionLinked {
                gateway: d.link.0,
                subscription_id: d.link.1,
                customer_id: d.link.2,
            });
        }
        // The trial's end is the newest any fact showed; whether it still runs, the newest fact
        // that says how the subscription stands. Both follow from the facts, not the order.
        let mut trialing = billing.trialing;
        if let Some(ends_at) = d.trial_ends_at
            && (state.trial_ends_at != Some(ends_at) || (d.trialing && !trialing))
        {
            events.push(LicenseEvent::TrialStarted { ends_at });
            trialing = true;
        }
        if trialing && !d.trialing {
            events.push(LicenseEvent::TrialEnded {});
        }
        match (billing.paused, d.paused) {
            (true, false) => events.push(LicenseEvent::SubscriptionResumed {}),
            (false, true) => events.push(LicenseEvent::SubscriptionPaused {}),
            _ => {}
        }
        if billing.payment_grace_until != d.payment_grace_until {
            events.push(match d.payment_grace_until {
                Some(grace_until) => LicenseEvent::PaymentFailed { grace_until },
                None => LicenseEvent::PaymentRecovered {},
            });
        }
        if billing.cancel_at != d.cancel_at {
            events.push(match d.cancel_at {
                Some(at) => LicenseEvent::CancellationScheduled { at },
                None => LicenseEvent::CancellationWithdrawn {},
            });
        }
        match (billing.canceled, d.canceled) {
            (false, true) => events.push(LicenseEvent::SubscriptionCanceled {}),
            (true, false) => events.push(LicenseEvent::SubscriptionReactivated {}),
            _ => {}
        }
        if let Some(end) = d.paid_until
            && state.expires_at.is_some_and(|current| end > current)
        {
            events.push(LicenseEvent::Renewed { expires_at: end });
        }
        // Seats follow the quantity, but not below what is in use: the excess waits for
        // deactivations (or unassignments), as an administrator's change would be refused.
        // Capped at the most a license may have (not left as it was, which would make the
        // seats depend on the order the facts arrived in).
        if let Some(seats) = d
            .quantity
            .map(|q| {
                q.saturating_mul(state.terms.seats.get())
                    .min(crate::values::SeatCount::MAX)
                    .max(state.active_installations(observed.created))
                    .max(state.named_seats_used())
            })
            .and_then(|n| crate::values::SeatCount::new(n).ok())
            && seats != state.seats
        {
            events.push(LicenseEvent::SeatsChanged { seats });
        }
        events.push(LicenseEvent::SubscriptionSynced { fact });
        events
    }

    /// Names a user on the license. For a `named_user` policy the seats count assignees; for
    /// the other models an assignment is a record of who uses it and holds no seat.
    fn assign(state: &LicenseState, assignee: &Assignee) -> Result<Vec<LicenseEvent>, DomainError> {
        if state.assignees.contains(&assignee.user_id) {
            return Ok(vec![]);
        }
        if assignee.deactivated {
            return Err(DomainError::UserDeactivated(assignee.user_id));
        }
        if !assignee.lineage.contains(&state.organization_id) {
            return Err(DomainError::AssigneeOutsideOrganization {
                user_id: assignee.user_id,
                organization_id: state.organization_id,
            });
        }
        if state.terms.model == LicenseModel::NamedUser
            && state.named_seats_used() >= state.seats.get()
        {
            return Err(DomainError::TooManyAssignments {
                seats: state.seats.get(),
            });
        }
        Ok(vec![LicenseEvent::Assigned {
            user_id: assignee.user_id,
        }])
    }

    fn deactivate(
        state: &LicenseState,
        installation_id: InstallationId,
        reason: DeactivationReason,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        let activation = state
            .activations
            .get(&installation_id)
            .ok_or(DomainError::InstallationNotFound(installation_id))?;
        Ok(vec![if activation.lease_expires_at.is_some() {
            LicenseEvent::FloatingLeaseReleased { installation_id }
        } else {
            LicenseEvent::InstallationDeactivated {
                installation_id,
                reason,
            }
        }])
    }

    fn heartbeat(
        state: &LicenseState,
        at: Timestamp,
        installation_id: InstallationId,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        let activation = state
            .activations
            .get(&installation_id)
            .ok_or(DomainError::InstallationNotFound(installation_id))?;
        let (Some(lease_end), Some(lease)) =
            (activation.lease_expires_at, state.terms.lease_seconds)
        else {
            return Err(DomainError::NotFloating);
        };
        if at >= lease_end {
            return Err(DomainError::LeaseExpired(installation_id));
        }
        Self::require_valid(state, at)?;
        let lease = Duration::seconds(i64::from(lease));
        // Renew once half the lease is used: a client beating every few seconds records an
        // event per half lease, not per beat.
        if lease_end - at > lease / 2 {
            return Ok(vec![]);
        }
        Ok(vec![LicenseEvent::FloatingLeaseGranted {
            installation_id,
            expires_at: at + lease,
        }])
    }

    fn offline_token(
        state: &LicenseState,
        at: Timestamp,
        jti: uuid::Uuid,
        kind: OfflineTokenKind,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Vec<LicenseEvent>, DomainError> {
        state.check_offline_allowed()?;
        let decision = validation::decide(state, at, fingerprint.map(Fingerprint::as_str), &[]);
        if !decision.valid() {
            return Err(DomainError::LicenseNotValid(decision.code));
        }
        let installation_id = fingerprint.and_then(|fp| state.installation_of(fp.as_str(), at));
        let limit = validation::usable_until(state);
        // Valid, yet usable offline no longer: a gateway's trial in its slack past the end
        // (validated while its conversion is on its way, but no token outlives the trial).
        if limit.is_some_and(|l| l <= at) {
            return Err(DomainError::LicenseNotValid(ValidationCode::TrialExpired));
        }
        let expires_at = match kind {
            OfflineTokenKind::Offline => {
                let grace = at + days(state.terms.offline_grace_days);
                limit.map_or(grace, |l| l.min(grace))
            }
            // An air-gapped machine cannot come back for a new token: it runs to the license's
            // end, or ten years for a perpetual license.
            OfflineTokenKind::OfflineActivation => {
                if fingerprint.is_none() {
                    return Err(DomainError::LicenseNotValid(ValidationCode::NotActivated));
                }
                limit.unwrap_or(at + days(3650))
            }
        };
        Ok(vec![LicenseEvent::OfflineTokenIssued {
            jti,
            kind,
            installation_id,
            fingerprint: fingerprint.cloned(),
            issued_at: at,
            expires_at,
        }])
    }

    fn issue(at: Timestamp, issue: &IssueLicense) -> Result<Vec<LicenseEvent>, DomainError> {
        let policy = issue.policy.require_current()?;
        let product = issue.product.require()?;
        if issue.product.id != policy.product_id {
            return Err(DomainError::ProductNotFound(policy.product_id));
        }
        issue.organization.require_open()?;
        let terms = &policy.terms;
        let expires_at = match issue.expires_at {
            Some(explicit) if explicit <= at => {
                return Err(DomainError::InvalidExpiry(
                    "expires_at must be in the future".into(),
                ));
            }
            Some(explicit) => Some(explicit),
            None => terms.duration_days.map(|d| at + days(d)),
        };
        let trial_ends_at = (terms.trial_days > 0).then(|| at + days(terms.trial_days));
        let maintenance_until = terms
            .maintenance_months
            .filter(|m| *m > 0)
            .and_then(|m| at.checked_add_months(Months::new(m)));
        Ok(vec![LicenseEvent::Issued(Box::new(LicenseIssued {
            product_id: issue.product.id,
            app_id: product.app_id,
            policy_id: issue.policy.id,
            policy_version: policy.version,
            organization_id: issue.organization.id,
            key_hash: issue.key_hash,
            key_prefix: issue.key_prefix.clone(),
            seats: issue.seats.unwrap_or(terms.seats),
            features: issue
                .features
                .clone()
                .unwrap_or_else(|| terms.features.clone()),
            starts_at: at,
            expires_at,
            trial_ends_at,
            maintenance_until,
            source: issue.source,
            terms: terms.clone(),
        }))])
    }
}
