//! A license's life after its issue: the lifecycle and client commands (activations, leases,
//! offline tokens, renewals, suspensions, seat and entitlement changes, transfers, key rotations,
//! revocation), drawn by weight among those that apply to its state and decided by the `License`
//! aggregate.

use anyhow::Context;
use chrono::{Duration, Months};
use domain::Timestamp;
use domain::event::Actor;
use domain::ids::InstallationId;
use domain::license::{LicenseAction, LicenseCommand, LicenseState};
use domain::validation::LicenseFacts as _;
use domain::values::{
    DeactivationReason, Environment, Fingerprint, Label, OfflineTokenKind, Reason,
    RevocationCategory, SeatCount,
};

use super::generator::Generator;
use super::licenses::LicenseSim;
use super::random::{Rng, v7};

// What devices, suspensions and revocations are called.
const HOSTS: &[&str] = &["ws", "laptop", "build", "render", "design", "dev", "lab"];
const PLATFORMS: &[&str] = &[
    "windows-x86_64",
    "macos-aarch64",
    "macos-x86_64",
    "linux-x86_64",
    "linux-aarch64",
];
const SUSPENSIONS: &[&str] = &[
    "payment overdue",
    "license audit in progress",
    "suspected key sharing",
    "customer request",
];
const REVOCATIONS: &[(&str, RevocationCategory)] = &[
    ("chargeback", RevocationCategory::Fraud),
    ("key published on a forum", RevocationCategory::Fraud),
    ("refund granted", RevocationCategory::Refund),
    ("contract ended", RevocationCategory::ContractEnded),
    ("duplicate license", RevocationCategory::Unspecified),
];

/// What a license command can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Activate,
    Deactivate,
    Heartbeat,
    ExpireLeases,
    OfflineToken,
    Renew,
    Suspend,
    Reinstate,
    Seats,
    Entitlements,
    Transfer,
    RotateKey,
    Maintenance,
    Revoke,
}

impl Generator {
    /// One lifecycle or client command: candidates are drawn by weight and decided by the
    /// aggregate until one records something within the license's remaining budget. Returns
    /// whether an event was written.
    pub(super) fn change(&mut self, sim: &mut LicenseSim, at: Timestamp) -> anyhow::Result<bool> {
        let Some((events, actor)) = self.decide_change(sim, at)? else {
            return Ok(false);
        };
        self.write_license(sim, events, actor, at)?;
        Ok(true)
    }

    fn decide_change(
        &mut self,
        sim: &LicenseSim,
        at: Timestamp,
    ) -> anyhow::Result<Option<(Vec<domain::license::LicenseEvent>, Actor)>> {
        let state = sim.license.state().context("the license is issued")?;
        let floating = state.terms.lease_seconds.is_some();
        let devices = !state.activations.is_empty();
        let monthly = state.terms.duration_days.is_some_and(|d| d <= 31);
        let mut candidates: Vec<(u64, Change)> = Vec::with_capacity(14);
        // Revocation is final, so it can only be a license's last event.
        if sim.remaining == 1 && !sim.long && self.rng.chance(0.06) {
            candidates.push((1_000, Change::Revoke));
        }
        candidates.push((28, Change::Activate));
        if devices {
            candidates.push((10, Change::Deactivate));
        }
        if floating && devices {
            candidates.push((8, Change::Heartbeat));
            candidates.push((3, Change::ExpireLeases));
        }
        if state.terms.offline_allowed {
            candidates.push((6, Change::OfflineToken));
        }
        if state.expires_at.is_some() {
            candidates.push((if monthly { 30 } else { 9 }, Change::Renew));
        }
        if state.suspension.is_some() {
            candidates.push((40, Change::Reinstate));
        } else {
            candidates.push((if sim.long { 10 } else { 3 }, Change::Suspend));
        }
        candidates.push((4, Change::Seats));
        candidates.push((3, Change::Entitlements));
        candidates.push((2, Change::Transfer));
        candidates.push((2, Change::RotateKey));
        if state.maintenance_until.is_some() {
            candidates.push((3, Change::Maintenance));
        }
        while !candidates.is_empty() {
            let total: u64 = candidates.iter().map(|(w, _)| w).sum();
            let mut r = self.rng.below(total);
            let mut chosen = 0;
            for (i, (w, _)) in candidates.iter().enumerate() {
                if r < *w {
                    chosen = i;
                    break;
                }
                r -= w;
            }
            let (_, change) = candidates.swap_remove(chosen);
            let Some((action, actor)) = self.change_action(change, state, at)? else {
                continue;
            };
            let command = LicenseCommand {
                license_id: sim.id,
                at,
                action,
            };
            // A refusal (not valid now, no free seat, lease lapsed) is real traffic that records
            // nothing: try the next candidate.
            if let Ok(events) = sim.license.decide(&command)
                && !events.is_empty()
                && events.len() as u64 <= sim.remaining
            {
                return Ok(Some((events, actor)));
            }
        }
        Ok(None)
    }

    /// The command for `change` on `state` as the write side would build it (fresh ids, keys
    /// and facts), and who issues it; `None` when it does not apply.
    fn change_action(
        &mut self,
        change: Change,
        state: &LicenseState,
        at: Timestamp,
    ) -> anyhow::Result<Option<(LicenseAction, Actor)>> {
        let admin = self.admin();
        let pick_installation = |rng: &mut Rng, leased_only: bool| {
            let ids: Vec<InstallationId> = state
                .activations
                .iter()
                .filter(|(_, a)| !leased_only || a.lease_expires_at.is_some())
                .map(|(id, _)| *id)
                .collect();
            (!ids.is_empty()).then(|| ids[rng.index(ids.len())])
        };
        let action = match change {
            Change::Activate => {
                let fingerprint = Fingerprint::parse(&hex::encode(self.rng.bytes::<16>()))?;
                let hostname = if self.rng.chance(0.8) {
                    let host = *self.rng.pick(HOSTS);
                    Some(Label::parse(&format!(
                        "{host}-{:04}",
                        self.rng.below(10_000)
                    ))?)
                } else {
                    None
                };
                let platform = *self.rng.pick(PLATFORMS);
                let platform = Some(Label::parse(platform)?);
                let environment = if self.rng.chance(0.1) {
                    Environment::Test
                } else {
                    Environment::Production
                };
                (
                    LicenseAction::Activate {
                        installation_id: InstallationId::from_uuid(v7(&mut self.rng, at)),
                        fingerprint,
                        hostname,
                        platform,
                        environment,
                    },
                    Actor::Client,
                )
            }
            Change::Deactivate => {
                let Some(installation_id) = pick_installation(&mut self.rng, false) else {
                    return Ok(None);
                };
                let r = self.rng.unit();
                let (reason, actor) = if r < 0.6 {
                    (DeactivationReason::Client, Actor::Client)
                } else if r < 0.9 {
                    (DeactivationReason::Admin, admin)
                } else {
                    (DeactivationReason::OfflineRequest, Actor::Client)
                };
                (
                    LicenseAction::Deactivate {
                        installation_id,
                        reason,
                    },
                    actor,
                )
            }
            Change::Heartbeat => {
                let Some(installation_id) = pick_installation(&mut self.rng, true) else {
                    return Ok(None);
                };
                (LicenseAction::Heartbeat { installation_id }, Actor::Client)
            }
            Change::ExpireLeases => (LicenseAction::ExpireLeases, Actor::System),
            Change::OfflineToken => {
                let active: Vec<&Fingerprint> = state
                    .activations
                    .values()
                    .filter(|a| a.active_at(at))
                    .map(|a| &a.fingerprint)
                    .collect();
                let device = (!active.is_empty() && self.rng.chance(0.6))
                    .then(|| active[self.rng.index(active.len())].clone());
                let kind = if device.is_some() && self.rng.chance(0.5) {
                    OfflineTokenKind::OfflineActivation
                } else {
                    OfflineTokenKind::Offline
                };
                (
                    LicenseAction::IssueOfflineToken {
                        jti: v7(&mut self.rng, at),
                        kind,
                        fingerprint: device,
                    },
                    Actor::Client,
                )
            }
            Change::Renew => {
                let Some(current) = state.expires_at else {
                    return Ok(None);
                };
                let days = state.terms.duration_days.unwrap_or(365);
                (
                    LicenseAction::Renew {
                        expires_at: current.max(at) + Duration::days(i64::from(days)),
                    },
                    admin,
                )
            }
            Change::Suspend => {
                let reason = *self.rng.pick(SUSPENSIONS);
                (
                    LicenseAction::Suspend {
                        reason: Reason::parse(reason)?,
                    },
                    admin,
                )
            }
            Change::Reinstate => (LicenseAction::Reinstate, admin),
            Change::Seats => {
                let active = state.active_installations(at).max(1);
                let current = state.seats.get();
                let high = (current * 2 + 2).max(active + 1);
                let mut seats =
                    active + u32::try_from(self.rng.below(u64::from(high - active) + 1))?;
                if seats == current {
                    seats += 1;
                }
                (
                    LicenseAction::ChangeSeats {
                        seats: SeatCount::new(seats)?,
                    },
                    admin,
                )
            }
            Change::Entitlements => {
                let product = self.product_of(state)?;
                (
                    LicenseAction::ChangeEntitlements {
                        features: self.features(product)?,
                    },
                    admin,
                )
            }
            Change::Transfer => {
                let Some(k) = self.pick_org(Some(state.organization_id)) else {
                    return Ok(None);
                };
                (
                    LicenseAction::Transfer {
                        organization: self.org_ref(k),
                    },
                    admin,
                )
            }
            Change::RotateKey => {
                let (key_hash, key_prefix) = self.key(self.product_of(state)?)?;
                (
                    LicenseAction::RotateKey {
                        key_hash,
                        key_prefix,
                    },
                    admin,
                )
            }
            Change::Maintenance => {
                let Some(current) = state.maintenance_until else {
                    return Ok(None);
                };
                let Some(until) = current.max(at).checked_add_months(Months::new(12)) else {
                    return Ok(None);
                };
                (LicenseAction::ExtendMaintenance { until }, admin)
            }
            Change::Revoke => {
                let (reason, category) = *self.rng.pick(REVOCATIONS);
                (
                    LicenseAction::Revoke {
                        reason: Reason::parse(reason)?,
                        category,
                    },
                    admin,
                )
            }
        };
        Ok(Some(action))
    }
}
