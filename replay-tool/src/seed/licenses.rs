//! Licenses: each issued at its planned instant under a policy drawn by weight, to an open
//! organization, with a real key; then its next command scheduled while its event budget lasts
//! (which command: [`super::lifecycle`]).

use anyhow::Context;
use chrono::Duration;
use domain::Timestamp;
use domain::event::Actor;
use domain::ids::{LicenseId, OrganizationId};
use domain::keys::LicenseKey;
use domain::license::{IssueLicense, License, LicenseAction, LicenseCommand, LicenseState};
use domain::policy::{PolicyRef, PolicyState};
use domain::values::{FeatureSet, LicenseSource, SeatCount};
use uuid::Uuid;

use super::MICROS_PER_SECOND;
use super::batches::Stream;
use super::catalogue::{LONG_LICENSE_POLICY, POLICIES, PRODUCTS};
use super::generator::{Generator, Task};
use super::random::instant;

/// A license's stream and state, folded by `License` itself, and what is left of its plan.
pub(super) struct LicenseSim {
    pub(super) id: LicenseId,
    pub(super) stream: Stream,
    pub(super) license: License,
    /// Events still to write.
    pub(super) remaining: u64,
    /// When its last command is due: commands spread over the time left until then.
    pub(super) until: i64,
    pub(super) long: bool,
    /// Commands that found nothing to do in a row.
    pub(super) idle: u32,
}

impl Generator {
    /// The next command to license `i`, at `micros`; schedules the one after while its budget
    /// lasts.
    pub(super) fn license(&mut self, i: usize, micros: i64) -> anyhow::Result<()> {
        let mut sim = self.licenses[i]
            .take()
            .context("a license has one pending command at a time")?;
        let at = instant(micros);
        let wrote = if sim.license.state().is_none() {
            self.issue(&mut sim, at)?;
            true
        } else {
            self.change(&mut sim, at)?
        };
        sim.idle = if wrote { 0 } else { sim.idle + 1 };
        // A license that finds nothing to do five times running stops short of its budget
        // (cannot happen while key rotation is always possible, but never loop forever).
        if sim.remaining > 0 && sim.idle < 5 {
            let next = micros + self.gap(&sim, micros);
            self.schedule(next, Task::License(i));
            self.licenses[i] = Some(sim);
        }
        Ok(())
    }

    /// Time to a license's next command: mostly around the time left divided by the events left
    /// (so a license ends near its due instant whatever happened before), sometimes a burst of
    /// client traffic minutes later, and for a floating license with leases often within the
    /// second half of a lease (when a heartbeat renews it). The long license keeps to the steady
    /// pace, so its events spread over the whole history.
    fn gap(&mut self, sim: &LicenseSim, now: i64) -> i64 {
        let mean = (sim.until - now) as f64 / sim.remaining.max(1) as f64;
        // The last command anywhere in the time left, so none falls after the due instant.
        let pace = if sim.remaining > 1 {
            0.2 + 1.6 * self.rng.unit()
        } else {
            self.rng.unit()
        };
        let steady = ((mean * pace) as i64).max(MICROS_PER_SECOND);
        if sim.long {
            return steady;
        }
        let lease = sim.license.state().and_then(|s| {
            s.terms
                .lease_seconds
                .filter(|_| s.activations.values().any(|a| a.lease_expires_at.is_some()))
        });
        if let Some(lease) = lease
            && self.rng.chance(0.5)
        {
            return (f64::from(lease) * (0.55 + 0.4 * self.rng.unit()) * 1e6) as i64;
        }
        if self.rng.chance(0.15) {
            return (5 + self.rng.below(10)) as i64 * 60 * MICROS_PER_SECOND;
        }
        steady
    }

    fn pick_policy(&mut self) -> usize {
        let total: u64 = POLICIES
            .iter()
            .filter(|p| !p.retired)
            .map(|p| u64::from(p.weight))
            .sum();
        let mut r = self.rng.below(total.max(1));
        for (p, spec) in POLICIES.iter().enumerate() {
            if spec.retired {
                continue;
            }
            let w = u64::from(spec.weight);
            if r < w {
                return p;
            }
            r -= w;
        }
        0
    }

    /// An open organization for a license (customers; partners until a customer exists; the
    /// vendor as a last resort for a new license), other than `except`.
    pub(super) fn pick_org(&mut self, except: Option<OrganizationId>) -> Option<usize> {
        let pool = if self.customers.is_empty() {
            &self.partners
        } else {
            &self.customers
        };
        for _ in 0..20 {
            if pool.is_empty() {
                break;
            }
            let k = pool[self.rng.index(pool.len())];
            if self.is_open(k) && Some(self.orgs[k].id) != except {
                return Some(k);
            }
        }
        (except.is_none() && !self.orgs.is_empty() && self.is_open(0)).then_some(0)
    }

    /// A non-empty random subset of a product's entitlements.
    pub(super) fn features(&mut self, product: usize) -> anyhow::Result<FeatureSet> {
        let all = PRODUCTS[product].features;
        let mut chosen: Vec<&str> = all
            .iter()
            .copied()
            .filter(|_| self.rng.chance(0.5))
            .collect();
        if chosen.is_empty() {
            chosen.push(all[0]);
        }
        Ok(FeatureSet::parse(&chosen)?)
    }

    pub(super) fn product_of(&self, state: &LicenseState) -> anyhow::Result<usize> {
        self.products
            .iter()
            .position(|p| p.id == state.product_id)
            .context("a license's product is in the catalogue")
    }

    /// A fresh key for product `p`: its hash and support prefix, as `commands` stores them.
    pub(super) fn key(&mut self, p: usize) -> anyhow::Result<(domain::keys::KeyHash, String)> {
        let prefix = self.products[p]
            .facts
            .as_ref()
            .map(|f| f.key_prefix.clone())
            .context("the product is defined")?;
        let key = LicenseKey::from_entropy(&prefix, &self.rng.bytes::<20>());
        Ok((self.hasher.hash(&key), key.support_prefix()))
    }

    fn issue(&mut self, sim: &mut LicenseSim, at: Timestamp) -> anyhow::Result<()> {
        let p = if sim.long {
            LONG_LICENSE_POLICY
        } else {
            self.pick_policy()
        };
        let spec = &POLICIES[p];
        let policy = PolicyRef {
            id: self.policies[p].id,
            facts: self.policies[p].state.state().map(PolicyState::facts),
        };
        let product = self.product_ref(spec.product);
        let k = self
            .pick_org(None)
            .context("no open organization to issue a license to")?;
        let (key_hash, key_prefix) = self.key(spec.product)?;
        // Most licenses take the policy's terms; some are negotiated.
        let seats = if self.rng.chance(0.15) {
            Some(SeatCount::new(spec.seats * *self.rng.pick(&[2, 5, 10]))?)
        } else {
            None
        };
        let features = if self.rng.chance(0.1) {
            Some(self.features(spec.product)?)
        } else {
            None
        };
        let expires_at = (spec.duration_days.is_some() && self.rng.chance(0.05))
            .then(|| at + Duration::days(730));
        let source = if self.rng.chance(0.15) {
            LicenseSource::Import
        } else {
            LicenseSource::Admin
        };
        let command = LicenseCommand {
            license_id: sim.id,
            at,
            action: LicenseAction::Issue(Box::new(IssueLicense {
                policy,
                product,
                organization: self.org_ref(k),
                key_hash,
                key_prefix,
                seats,
                features,
                expires_at,
                source,
            })),
        };
        let events = sim
            .license
            .decide(&command)
            .with_context(|| format!("issuing license {}", sim.id))?;
        self.write_license(sim, events, self.admin(), at)?;
        self.issued += 1;
        if sim.long {
            self.long_license_id = Some(Uuid::from(sim.id));
        }
        Ok(())
    }

    pub(super) fn write_license(
        &mut self,
        sim: &mut LicenseSim,
        events: Vec<domain::license::LicenseEvent>,
        actor: Actor,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(actor, at)?;
        self.out.emit(&mut sim.stream, &events, &meta, at)?;
        sim.remaining = sim.remaining.saturating_sub(events.len() as u64);
        for event in events {
            sim.license.fold(event);
        }
        Ok(())
    }
}
