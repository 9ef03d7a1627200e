//! Issue #15: what authorizing one request costs in `domain::reach`, which every route asks and
//! which keeps nothing materialized (ADR 0020): `Reach::compute(&tree, &grants)` then
//! `reach.at(&tree, org)`, per call, over a generated tree of the shape customers have (a few
//! hundred roots of very different sizes, corporate > subsidiary > ... > location, up to six
//! levels, partner organizations with a few dozen delegations), for random principals (one to
//! three customer grants each) and random organizations. Side by side with what a fully
//! materialized cache would cost: one `HashMap` lookup of a precomputed
//! `(principal, organization) → actions` table. Plus `Reach::organizations` (the `GET /v1/me`
//! enumeration) for a principal at the biggest root, next to cloning that answer precomputed.
//!
//! Pure computation, no database. Per-call times are taken with `Instant` around each call (its
//! own cost, measured and printed, is in both arms); the mean per call is also taken over whole
//! loops without a clock per call.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use domain::ids::OrganizationId;
use domain::reach::{Actions, Grant, Reach, Reached, Tree};
use domain::values::Role;

use crate::harness::median;

/// What to generate and how many calls to measure.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Organizations in the tree, roots included.
    #[arg(long, default_value_t = 10_000)]
    organizations: usize,
    /// Root organizations (corporations and partners).
    #[arg(long, default_value_t = 300)]
    roots: usize,
    /// How many of the roots are partners (the smallest ones by rank).
    #[arg(long, default_value_t = 20)]
    partners: usize,
    /// Partner delegations (a customer organization delegated to a partner organization).
    #[arg(long, default_value_t = 40)]
    delegations: usize,
    /// Principals, each with 1–3 customer grants.
    #[arg(long, default_value_t = 1_000)]
    principals: usize,
    /// Measured `compute + at` calls (half at a random organization, half at one the principal
    /// reaches).
    #[arg(long, default_value_t = 100_000)]
    calls: usize,
    /// Measured enumerations for the principal at the biggest root.
    #[arg(long, default_value_t = 2_000)]
    enumerations: usize,
    /// Seed of the generator (the same seed, the same tree and principals).
    #[arg(long, default_value_t = 15)]
    seed: u64,
}

/// The deepest level below a root (0): six levels in all.
const DEEPEST: u8 = 5;

/// SplitMix64: a small deterministic generator (the bench has no `rand`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible here).
    #[allow(clippy::cast_possible_truncation)]
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn id(&mut self) -> OrganizationId {
        let hi = u128::from(self.next());
        let lo = u128::from(self.next());
        OrganizationId::from_uuid(uuid::Uuid::from_u128(hi << 64 | lo))
    }
}

/// A generated tree with what the measurement draws from.
struct World {
    tree: Tree,
    /// Every organization, with its depth below its root and whether it belongs to a partner.
    organizations: Vec<(OrganizationId, u8, bool)>,
    /// Customer roots, biggest first.
    customer_roots: Vec<OrganizationId>,
    /// Indices into `organizations` of the customers' and the partners' organizations.
    customer: Vec<usize>,
    partner: Vec<usize>,
    delegations: usize,
}

/// Root sizes follow 1/rank (a few large corporations, a long tail of small ones); partners are
/// the roots of rank ≡ 14 (mod 15), from the tail. Inside a root every organization picks its
/// parent as the shallower of two random organizations above the deepest level, which gives
/// broad, shallow trees (the histogram is printed).
fn generate(o: &Options, rng: &mut Rng) -> World {
    let mut tree = Tree::new();
    let roots = o.roots.clamp(1, o.organizations);
    let extra = o.organizations - roots;
    #[allow(clippy::cast_precision_loss)]
    let weights: Vec<f64> = (0..roots).map(|i| 1.0 / (i + 1) as f64).collect();
    let total: f64 = weights.iter().sum();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|w| (extra as f64 * w / total) as usize)
        .collect();
    let left = extra - sizes.iter().sum::<usize>();
    for i in 0..left {
        sizes[i % roots] += 1;
    }
    let partner_every = (roots / o.partners.max(1)).max(1);
    let is_partner_root = |rank: usize| o.partners > 0 && rank % partner_every == partner_every - 1;

    let mut organizations = Vec::with_capacity(o.organizations);
    let mut customer_roots = Vec::new();
    for (rank, size) in sizes.iter().enumerate() {
        let partner = is_partner_root(rank);
        let root = rng.id();
        tree.insert(root, None);
        if !partner {
            customer_roots.push(root);
        }
        let first = organizations.len();
        organizations.push((root, 0u8, partner));
        // Members of this root that may still take children.
        let mut open = vec![first];
        for _ in 0..*size {
            let a = open[rng.below(open.len())];
            let b = open[rng.below(open.len())];
            let parent = if organizations[a].1 <= organizations[b].1 {
                a
            } else {
                b
            };
            let (parent_id, depth, _) = organizations[parent];
            let id = rng.id();
            tree.insert(id, Some(parent_id));
            organizations.push((id, depth + 1, partner));
            if depth + 1 < DEEPEST {
                open.push(organizations.len() - 1);
            }
        }
    }
    let customer: Vec<usize> = (0..organizations.len())
        .filter(|i| !organizations[*i].2)
        .collect();
    let partner: Vec<usize> = (0..organizations.len())
        .filter(|i| organizations[*i].2)
        .collect();
    let mut delegations = 0;
    if !partner.is_empty() && !customer.is_empty() {
        for _ in 0..o.delegations {
            let delegated = organizations[customer[rng.below(customer.len())]].0;
            // Mostly to a partner's root, sometimes to one of its branches.
            let mut to = partner[rng.below(partner.len())];
            if rng.chance(60) {
                while organizations[to].1 > 0 {
                    to -= 1;
                }
            }
            tree.delegate(delegated, organizations[to].0);
            delegations += 1;
        }
    }
    World {
        tree,
        organizations,
        customer_roots,
        customer,
        partner,
        delegations,
    }
}

const CUSTOMER_ROLES: [Role; 5] = [
    Role::CustomerAdmin,
    Role::LicenseManager,
    Role::DownloadManager,
    Role::SupportContact,
    Role::BillingAdmin,
];

/// 1–3 customer grants: a fifth of them at a partner's organization (a partner's staff, whose
/// reach follows delegations), a quarter at a customer root, the rest anywhere in a customer's
/// tree.
fn principal(world: &World, rng: &mut Rng) -> Vec<Grant> {
    (0..=rng.below(3))
        .map(|_| {
            let organization_id = if rng.chance(20) && !world.partner.is_empty() {
                world.organizations[world.partner[rng.below(world.partner.len())]].0
            } else if rng.chance(25) {
                world.customer_roots[rng.below(world.customer_roots.len())]
            } else {
                world.organizations[world.customer[rng.below(world.customer.len())]].0
            };
            Grant {
                role: CUSTOMER_ROLES[rng.below(CUSTOMER_ROLES.len())],
                organization_id,
            }
        })
        .collect()
}

/// p50, p99 and max of `ns`, in µs.
#[allow(clippy::cast_precision_loss)]
fn percentiles(ns: &mut [u64]) -> (f64, f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((ns.len() - 1) as f64 * q).round() as usize;
        ns[i] as f64 / 1e3
    };
    (at(0.50), at(0.99), at(1.0))
}

fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Generates the world, measures and prints Markdown tables.
///
/// # Errors
/// When the cache baseline disagrees with reach (it must not).
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub fn run(o: &Options) -> anyhow::Result<()> {
    let mut rng = Rng(o.seed);
    let started = Instant::now();
    let world = generate(o, &mut rng);
    let build = started.elapsed();
    let tree = &world.tree;
    let mut depths = [0usize; DEEPEST as usize + 1];
    for (_, depth, _) in &world.organizations {
        depths[*depth as usize] += 1;
    }
    let biggest = world.customer_roots[0];
    println!(
        "\n# Tree: {} organizations, {} roots ({} partners), {} delegations; organizations per level below a root {:?}; biggest root's subtree {}; built in {:.1} ms",
        tree.len(),
        o.roots,
        world
            .organizations
            .iter()
            .filter(|x| x.2 && x.1 == 0)
            .count(),
        world.delegations,
        depths,
        tree.subtree(biggest).count(),
        build.as_secs_f64() * 1e3
    );

    let principals: Vec<Vec<Grant>> = (0..o.principals)
        .map(|_| principal(&world, &mut rng))
        .collect();
    // The materialized cache: every (principal, organization reached) with its actions.
    let started = Instant::now();
    let mut table: HashMap<(u32, OrganizationId), Actions> = HashMap::new();
    let mut reached: Vec<Vec<OrganizationId>> = Vec::with_capacity(principals.len());
    for (p, grants) in principals.iter().enumerate() {
        let all = Reach::compute(tree, grants).organizations(tree);
        let p = u32::try_from(p)?;
        for r in &all {
            table.insert((p, r.organization_id), r.actions);
        }
        reached.push(all.iter().map(|r| r.organization_id).collect());
    }
    let table_build = started.elapsed();
    let grants_total: usize = principals.iter().map(Vec::len).sum();
    println!(
        "# {} principals ({grants_total} grants); the materialized table holds {} (principal, organization) entries, built in {:.0} ms",
        principals.len(),
        table.len(),
        table_build.as_secs_f64() * 1e3
    );

    // The calls: (principal, organization, drawn from its reach?).
    let calls: Vec<(u32, OrganizationId, bool)> = (0..o.calls)
        .map(|i| {
            let p = rng.below(principals.len());
            let own = &reached[p];
            let from_reach = i % 2 == 1 && !own.is_empty();
            let org = if from_reach {
                own[rng.below(own.len())]
            } else {
                world.organizations[rng.below(world.organizations.len())].0
            };
            (u32::try_from(p).unwrap_or(0), org, from_reach)
        })
        .collect();
    let ours =
        |p: u32, org: OrganizationId| Reach::compute(tree, &principals[p as usize]).at(tree, org);
    let cached = |p: u32, org: OrganizationId| table.get(&(p, org)).copied().unwrap_or_default();

    // Warm-up, and the two agree on every call.
    for &(p, org, _) in &calls {
        if ours(p, org) != cached(p, org) {
            anyhow::bail!("reach and the materialized table disagree for principal {p} at {org}");
        }
    }

    // The clock's own cost per measured call.
    let mut clock = Vec::with_capacity(calls.len());
    for _ in 0..calls.len() {
        let t = Instant::now();
        clock.push(elapsed_ns(black_box(t)));
    }
    let (clock_p50, _, _) = percentiles(&mut clock);

    // Per call, both arms on the same (principal, organization), the first arm alternating.
    let (mut ours_random, mut ours_reached, mut base_random, mut base_reached) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &(p, org, from_reach)) in calls.iter().enumerate() {
        let time_ours = || {
            let t = Instant::now();
            black_box(ours(black_box(p), black_box(org)));
            elapsed_ns(t)
        };
        let time_base = || {
            let t = Instant::now();
            black_box(cached(black_box(p), black_box(org)));
            elapsed_ns(t)
        };
        let (a, b) = if i % 4 < 2 {
            let a = time_ours();
            (a, time_base())
        } else {
            let b = time_base();
            (time_ours(), b)
        };
        if from_reach {
            ours_reached.push(a);
            base_reached.push(b);
        } else {
            ours_random.push(a);
            base_random.push(b);
        }
    }
    let mut ours_all: Vec<u64> = ours_random.iter().chain(&ours_reached).copied().collect();
    let mut base_all: Vec<u64> = base_random.iter().chain(&base_reached).copied().collect();

    // Mean per call over whole loops (no clock per call), the arms in turn, five rounds each;
    // `compute` alone too, to see what `at` adds.
    let (mut mean_ours, mut mean_base, mut mean_compute) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..15 {
        let t = Instant::now();
        match round % 3 {
            0 => {
                for &(p, org, _) in &calls {
                    black_box(ours(black_box(p), black_box(org)));
                }
                mean_ours.push(t.elapsed().as_secs_f64() * 1e9 / calls.len() as f64);
            }
            1 => {
                for &(p, org, _) in &calls {
                    black_box(cached(black_box(p), black_box(org)));
                }
                mean_base.push(t.elapsed().as_secs_f64() * 1e9 / calls.len() as f64);
            }
            _ => {
                for &(p, _, _) in &calls {
                    black_box(Reach::compute(tree, &principals[black_box(p) as usize]));
                }
                mean_compute.push(t.elapsed().as_secs_f64() * 1e9 / calls.len() as f64);
            }
        }
    }

    println!(
        "\n| organization asked | calls | `compute + at` p50 / p99 / max (µs) | HashMap lookup p50 / p99 / max (µs) | ours / lookup p50, p99 | target: ours p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (what, ours_ns, base_ns) in [
        ("random", &mut ours_random, &mut base_random),
        ("one it reaches", &mut ours_reached, &mut base_reached),
        ("all calls", &mut ours_all, &mut base_all),
    ] {
        let n = ours_ns.len();
        let (o50, o99, omax) = percentiles(ours_ns);
        let (b50, b99, bmax) = percentiles(base_ns);
        println!(
            "| {what} | {n} | {o50:.2} / {o99:.2} / {omax:.1} | {b50:.2} / {b99:.2} / {bmax:.1} | {:.0}×, {:.0}× | < 1000 µs: {} |",
            o50 / b50,
            o99 / b99,
            if o99 < 1000.0 { "met" } else { "missed" }
        );
    }
    println!(
        "\nMean per call over whole loops (no clock per call; median of 5 loops of {} calls each): `compute + at` {:.0} ns (of which `compute` alone {:.0} ns), HashMap lookup {:.0} ns, ratio {:.0}×. The clock around each measured call costs {:.3} µs (p50), in both arms above.",
        calls.len(),
        median(&mean_ours),
        median(&mean_compute),
        median(&mean_base),
        median(&mean_ours) / median(&mean_base),
        clock_p50
    );

    // GET /v1/me's enumeration for a customer_admin at the biggest root.
    let grants = [Grant {
        role: Role::CustomerAdmin,
        organization_id: biggest,
    }];
    let answer: Vec<Reached> = Reach::compute(tree, &grants).organizations(tree);
    let (mut enumerate, mut clone) = (Vec::new(), Vec::new());
    for i in 0..o.enumerations + o.enumerations / 10 {
        let t = Instant::now();
        black_box(Reach::compute(tree, black_box(&grants)).organizations(tree));
        let a = elapsed_ns(t);
        let t = Instant::now();
        black_box(black_box(&answer).clone());
        let b = elapsed_ns(t);
        // The first tenth warms up.
        if i >= o.enumerations / 10 {
            enumerate.push(a);
            clone.push(b);
        }
    }
    let (e50, e99, emax) = percentiles(&mut enumerate);
    let (c50, c99, cmax) = percentiles(&mut clone);
    println!(
        "\n| principal | organizations reached | calls | `compute + organizations` p50 / p99 / max (µs) | clone of the materialized answer p50 / p99 / max (µs) | ours / clone p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| customer_admin at the biggest root | {} | {} | {e50:.0} / {e99:.0} / {emax:.0} | {c50:.1} / {c99:.1} / {cmax:.1} | {:.0}× |",
        answer.len(),
        enumerate.len(),
        e50 / c50
    );
    Ok(())
}
