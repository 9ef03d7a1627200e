//! The generator's plan and run: everything that will happen is scheduled up front (so the total
//! is known before anything is written), then run in the order of its simulated instants, each
//! task handing its commands to the aggregate generators ([`super::token`],
//! [`super::catalogue`], [`super::organizations`], [`super::licenses`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use anyhow::bail;
use commands::keys::KeyHasher;
use domain::Timestamp;
use domain::event::{Actor, EventMetadata};
use domain::ids::{ApiTokenId, LicenseId, OrganizationId};
use domain::license::License;
use domain::organization::Organization;
use domain::values::OrganizationKind;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::batches::{Batch, Writer};
use super::catalogue::{POLICIES, PRODUCTS, PolicySim, ProductSim};
use super::licenses::LicenseSim;
use super::organizations::{OrgSim, OrgStep};
use super::random::{Rng, instant, parse_instant, v7};
use super::{
    HISTORY_END, HISTORY_START, KEY_PEPPER, MICROS_PER_DAY, MICROS_PER_SECOND, SEED, SeedOptions,
};

/// Something that happens at a simulated instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Task {
    Token,
    Product(usize),
    Policy(usize),
    Revise(usize),
    Retire(usize),
    Org(usize, OrgStep),
    /// The next command to license `i` (its issue first).
    License(usize),
}

/// What the generator wrote.
pub(super) struct Outcome {
    pub(super) events: u64,
    pub(super) licenses: u64,
    pub(super) organizations: u64,
    pub(super) long_license_id: Option<Uuid>,
}

/// The simulated world while the history is generated: the random source, the writer, the
/// schedule, and the state of every stream as its own aggregate folds it.
pub(super) struct Generator {
    pub(super) rng: Rng,
    pub(super) out: Writer,
    pub(super) hasher: KeyHasher,
    heap: BinaryHeap<Reverse<(i64, u64, Task)>>,
    ticket: u64,
    pub(super) planned: u64,
    pub(super) token: Option<ApiTokenId>,
    pub(super) products: Vec<ProductSim>,
    pub(super) policies: Vec<PolicySim>,
    pub(super) orgs: Vec<OrgSim>,
    pub(super) org_index: HashMap<OrganizationId, usize>,
    /// Registered customers (and, until one exists, partners): who licenses go to.
    pub(super) customers: Vec<usize>,
    pub(super) partners: Vec<usize>,
    pub(super) licenses: Vec<Option<LicenseSim>>,
    pub(super) issued: u64,
    pub(super) long_license_id: Option<Uuid>,
}

impl Generator {
    /// Plans the history: the catalogue, every organization's steps and every license's issue
    /// instant and event budget, so the total is known before anything is written.
    pub(super) fn plan(
        options: &SeedOptions,
        senders: Vec<mpsc::Sender<Batch>>,
    ) -> anyhow::Result<Self> {
        if options.licenses > 0 && options.organizations == 0 {
            bail!("licenses need an organization to belong to: seed at least one");
        }
        let start = parse_instant(HISTORY_START)?;
        let end = parse_instant(HISTORY_END)?;
        let span = end - start;
        let mut g = Self {
            rng: Rng(SEED),
            // Ids of events come from a generator of their own, so the history does not shift
            // with them.
            out: Writer::new(senders, options.events, Rng(SEED ^ 0x1D5_1D5_1D5)),
            hasher: KeyHasher::new(KEY_PEPPER),
            heap: BinaryHeap::new(),
            ticket: 0,
            planned: 0,
            token: None,
            products: Vec::new(),
            policies: Vec::new(),
            orgs: Vec::new(),
            org_index: HashMap::new(),
            customers: Vec::new(),
            partners: Vec::new(),
            licenses: Vec::new(),
            issued: 0,
            long_license_id: None,
        };
        let minute = 60 * MICROS_PER_SECOND;

        // The catalogue, in the first hour: token, products, policies.
        g.schedule(start, Task::Token);
        for p in 0..PRODUCTS.len() {
            g.schedule(start + (p as i64 + 1) * minute, Task::Product(p));
        }
        for (p, spec) in POLICIES.iter().enumerate() {
            g.schedule(start + (p as i64 + 10) * minute, Task::Policy(p));
            if let Some(revision) = &spec.revision {
                g.schedule(start + (span as f64 * revision.at) as i64, Task::Revise(p));
            }
            if spec.retired {
                g.schedule(start + MICROS_PER_DAY, Task::Retire(p));
            }
        }

        // Organizations: the vendor first, partners early, customers over most of the history
        // (more of them early), each with a few later steps.
        let partners = if options.organizations >= 3 {
            (options.organizations / 25).max(1)
        } else {
            0
        };
        for k in 0..options.organizations {
            let (kind, registered) = if k == 0 {
                (OrganizationKind::Vendor, start + 30 * minute)
            } else if k <= partners {
                let at = start + 40 * minute + (g.rng.unit() * 0.1 * span as f64) as i64;
                (OrganizationKind::Partner, at)
            } else if k <= partners + 5 {
                // A few customers before the first license, so it has somewhere to go.
                (OrganizationKind::Customer, start + (60 + k as i64) * minute)
            } else {
                let at = start
                    + 2 * MICROS_PER_DAY
                    + (g.rng.unit().powf(1.5) * 0.85 * span as f64) as i64;
                (OrganizationKind::Customer, at)
            };
            let id = OrganizationId::from_uuid(v7(&mut g.rng, instant(registered)));
            let stream = g.out.stream(id.to_string());
            let k = g.orgs.len();
            g.orgs.push(OrgSim {
                id,
                stream,
                kind,
                state: Organization::Unregistered,
            });
            g.org_index.insert(id, k);
            g.schedule(registered, Task::Org(k, OrgStep::Register));
            if kind == OrganizationKind::Vendor {
                continue;
            }
            let customer = kind == OrganizationKind::Customer;
            let later = |g: &mut Self, step: OrgStep, after: i64| {
                let at = after + 1 + (g.rng.unit() * (end - after) as f64 * 0.9) as i64;
                g.schedule(at, Task::Org(k, step));
                at
            };
            let mut last = registered;
            if g.rng.chance(0.06) {
                last = last.max(later(&mut g, OrgStep::Rename, registered));
            }
            if customer && g.rng.chance(0.04) {
                last = last.max(later(&mut g, OrgStep::Move, registered));
            }
            if customer && partners > 0 && g.rng.chance(0.12) {
                let granted = later(&mut g, OrgStep::Delegate, registered);
                last = last.max(granted);
                if g.rng.chance(0.35) {
                    last = last.max(later(&mut g, OrgStep::Undelegate, granted));
                }
            }
            if customer && g.rng.chance(0.015) {
                // Closing is an organization's last step: nothing changes a closed one.
                later(&mut g, OrgStep::Close, last);
            }
        }
        let fixed = g.heap.len() as u64;

        // Licenses: issue instants over the history after the first customers, and an event
        // budget each, skewed (most licenses see a few events, some many) and summing exactly to
        // what is left of the requested total.
        let long = if options.licenses > 0 && options.long_license_events > 0 {
            options.long_license_events
        } else {
            0
        };
        let normal = options.licenses - u64::from(long > 0);
        let budget_total = options.events.saturating_sub(fixed + long).max(normal);
        let mut budgets = Vec::with_capacity(usize::try_from(normal)?);
        if normal > 0 {
            let mean = budget_total as f64 / normal as f64;
            let mut sum = 0u64;
            for _ in 0..normal {
                let tail = (-(1.0 - g.rng.unit()).ln()).min(8.0);
                let n = 1 + ((mean - 1.0).max(0.0) * tail) as u64;
                sum += n;
                budgets.push(n);
            }
            let mut diff = i128::from(budget_total) - i128::from(sum);
            while diff != 0 {
                let i = g.rng.index(budgets.len());
                if diff > 0 {
                    budgets[i] += 1;
                    diff -= 1;
                } else if budgets[i] > 1 {
                    budgets[i] -= 1;
                    diff += 1;
                }
            }
        }
        let first_license = start + 2 * minute * 60;
        if long > 0 {
            // The long license runs through the whole history.
            g.add_license(first_license, long, end, true);
        }
        for budget in budgets {
            // A license is used for a while (a tenth of the history to all of it), issued so that
            // its life fits in the history: traffic stays even over time instead of piling up
            // where late licenses would squeeze their events.
            let life = ((0.1 + 0.9 * g.rng.unit()) * (end - first_license) as f64) as i64;
            let issued =
                first_license + (g.rng.unit() * (end - first_license - life) as f64) as i64;
            g.add_license(issued, budget, issued + life, false);
        }
        g.planned = fixed + long + g.licenses_budget();
        Ok(g)
    }

    fn licenses_budget(&self) -> u64 {
        self.licenses
            .iter()
            .flatten()
            .filter(|l| !l.long)
            .map(|l| l.remaining)
            .sum()
    }

    fn add_license(&mut self, issued: i64, budget: u64, until: i64, long: bool) {
        let id = LicenseId::from_uuid(v7(&mut self.rng, instant(issued)));
        let stream = self.out.stream(id.to_string());
        let i = self.licenses.len();
        self.licenses.push(Some(LicenseSim {
            id,
            stream,
            license: License::NotIssued,
            remaining: budget,
            until,
            long,
            idle: 0,
        }));
        self.schedule(issued, Task::License(i));
    }

    pub(super) fn schedule(&mut self, at: i64, task: Task) {
        self.ticket += 1;
        self.heap.push(Reverse((at, self.ticket, task)));
    }

    /// Runs the history in the order of its instants.
    pub(super) fn run(mut self) -> anyhow::Result<Outcome> {
        while let Some(Reverse((micros, _, task))) = self.heap.pop() {
            let at = instant(micros);
            match task {
                Task::Token => self.token(at)?,
                Task::Product(p) => self.product(p, at)?,
                Task::Policy(p) => self.policy(p, at)?,
                Task::Revise(p) => self.revise(p, at)?,
                Task::Retire(p) => self.retire(p, at)?,
                Task::Org(k, step) => self.org(k, step, at)?,
                Task::License(i) => self.license(i, micros)?,
            }
        }
        self.out.flush()?;
        Ok(Outcome {
            events: self.out.events,
            licenses: self.issued,
            organizations: self.orgs.len() as u64,
            long_license_id: self.long_license_id,
        })
    }

    /// The metadata of one command: who, which (synthetic) request, and when it took effect.
    pub(super) fn metadata(&mut self, actor: Actor, at: Timestamp) -> anyhow::Result<String> {
        let mut meta = EventMetadata::new(actor, format!("seed-{}", v7(&mut self.rng, at)));
        meta.effective_at = Some(at);
        Ok(serde_json::to_string(&serde_json::to_value(&meta)?)?)
    }
}
