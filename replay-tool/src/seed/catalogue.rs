//! The catalogue: the products and policies a vendor sells (fixed specifications, the same in
//! every seed), and their commands: products defined, policies defined, revised and retired.

use anyhow::Context;
use cqrs_es::Aggregate as _;
use domain::Timestamp;
use domain::ids::{AppId, PolicyId, ProductId};
use domain::policy::{
    Policy, PolicyAction, PolicyCommand, PolicyEvent, PolicyTerms, PolicyTermsInput,
};
use domain::product::{Product, ProductAction, ProductCommand, ProductFacts, ProductRef};
use domain::values::{FeatureSet, KeyPrefix, LicenseModel, Name, ProductKind, SeatCount};

use super::batches::Stream;
use super::generator::Generator;
use super::random::{v4, v7};

/// A product of the catalogue.
pub(super) struct ProductSpec {
    pub(super) name: &'static str,
    pub(super) kind: ProductKind,
    pub(super) prefix: &'static str,
    pub(super) parent: Option<usize>,
    /// The entitlements licenses of this product draw from.
    pub(super) features: &'static [&'static str],
}

pub(super) const PRODUCTS: &[ProductSpec] = &[
    ProductSpec {
        name: "Acme Studio",
        kind: ProductKind::Application,
        prefix: "STUDIO",
        parent: None,
        features: &[
            "pro",
            "export.pdf",
            "export.svg",
            "collab",
            "scripting",
            "gpu.render",
        ],
    },
    ProductSpec {
        name: "Acme Studio Color Pack",
        kind: ProductKind::Plugin,
        prefix: "STCOLOR",
        parent: Some(0),
        features: &["color.grading", "color.luts", "color.hdr"],
    },
    ProductSpec {
        name: "Acme Analyzer",
        kind: ProductKind::Application,
        prefix: "ANLZ",
        parent: None,
        features: &["analyze", "report", "report.scheduled", "api", "export.csv"],
    },
    ProductSpec {
        name: "Acme Render Cloud",
        kind: ProductKind::CloudService,
        prefix: "RENDER",
        parent: None,
        features: &["render.hd", "render.4k", "render.8k", "render.priority"],
    },
    ProductSpec {
        name: "Render Priority Queue",
        kind: ProductKind::Feature,
        prefix: "RPQ",
        parent: Some(3),
        features: &["render.priority", "render.burst"],
    },
    ProductSpec {
        name: "Acme Sync",
        kind: ProductKind::CloudService,
        prefix: "SYNC",
        parent: None,
        features: &["sync", "sync.versioning", "sso", "audit.log"],
    },
];

/// A later version of a policy, recorded at `at` (fraction of the history).
pub(super) struct Revision {
    pub(super) at: f64,
    pub(super) name: &'static str,
    pub(super) seats: u32,
    pub(super) features: &'static [&'static str],
}

/// A policy of the catalogue: its terms, and how the history uses it.
pub(super) struct PolicySpec {
    pub(super) product: usize,
    pub(super) name: &'static str,
    pub(super) model: LicenseModel,
    pub(super) seats: u32,
    pub(super) duration_days: Option<u32>,
    pub(super) trial_days: u32,
    pub(super) features: &'static [&'static str],
    /// 0: online only.
    pub(super) offline_grace_days: u32,
    pub(super) maintenance_months: Option<u32>,
    pub(super) lease_seconds: Option<u32>,
    /// Relative share of the licenses issued under it (0: none).
    pub(super) weight: u32,
    pub(super) revision: Option<Revision>,
    /// Retired a day after it was defined (a legacy plan nobody buys any more).
    pub(super) retired: bool,
}

pub(super) const POLICIES: &[PolicySpec] = &[
    PolicySpec {
        product: 0,
        name: "Studio Standard",
        model: LicenseModel::NodeLocked,
        seats: 3,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro", "export.pdf"],
        offline_grace_days: 14,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 28,
        revision: Some(Revision {
            at: 0.45,
            name: "Studio Standard 2025",
            seats: 3,
            features: &["pro", "export.pdf", "export.svg"],
        }),
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Floating",
        model: LicenseModel::Floating,
        seats: 10,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro", "export.pdf", "collab"],
        offline_grace_days: 0,
        maintenance_months: Some(12),
        lease_seconds: Some(900),
        weight: 8,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Perpetual",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: None,
        trial_days: 0,
        features: &["pro"],
        offline_grace_days: 30,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 9,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Trial",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: Some(30),
        trial_days: 14,
        features: &["pro"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 6,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 0,
        name: "Studio Legacy 2022",
        model: LicenseModel::NodeLocked,
        seats: 2,
        duration_days: Some(365),
        trial_days: 0,
        features: &["pro"],
        offline_grace_days: 14,
        maintenance_months: None,
        lease_seconds: None,
        weight: 0,
        revision: None,
        retired: true,
    },
    PolicySpec {
        product: 1,
        name: "Color Pack",
        model: LicenseModel::NodeLocked,
        seats: 1,
        duration_days: Some(365),
        trial_days: 0,
        features: &["color.grading", "color.luts"],
        offline_grace_days: 14,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 7,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 2,
        name: "Analyzer Site",
        model: LicenseModel::Floating,
        seats: 25,
        duration_days: Some(365),
        trial_days: 0,
        features: &["analyze", "report", "api"],
        offline_grace_days: 0,
        maintenance_months: Some(12),
        lease_seconds: Some(3600),
        weight: 5,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 2,
        name: "Analyzer Named",
        model: LicenseModel::NamedUser,
        seats: 5,
        duration_days: Some(365),
        trial_days: 0,
        features: &["analyze", "report"],
        offline_grace_days: 7,
        maintenance_months: Some(12),
        lease_seconds: None,
        weight: 10,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 3,
        name: "Render Team Monthly",
        model: LicenseModel::NamedUser,
        seats: 10,
        duration_days: Some(30),
        trial_days: 0,
        features: &["render.hd", "render.4k"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 10,
        revision: Some(Revision {
            at: 0.6,
            name: "Render Team Monthly",
            seats: 15,
            features: &["render.hd", "render.4k", "render.8k"],
        }),
        retired: false,
    },
    PolicySpec {
        product: 4,
        name: "Render Priority",
        model: LicenseModel::NamedUser,
        seats: 10,
        duration_days: Some(30),
        trial_days: 0,
        features: &["render.priority"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 3,
        revision: None,
        retired: false,
    },
    PolicySpec {
        product: 5,
        name: "Sync Business",
        model: LicenseModel::NamedUser,
        seats: 20,
        duration_days: Some(365),
        trial_days: 0,
        features: &["sync", "sync.versioning", "sso"],
        offline_grace_days: 0,
        maintenance_months: None,
        lease_seconds: None,
        weight: 10,
        revision: None,
        retired: false,
    },
];

/// The policy of the long license: floating, so its history holds leases and heartbeats too.
pub(super) const LONG_LICENSE_POLICY: usize = 1;

/// The terms of `spec` with `seats` and `features` (its own, or a revision's).
fn terms(spec: &PolicySpec, seats: u32, features: &[&str]) -> anyhow::Result<PolicyTerms> {
    Ok(PolicyTerms::new(PolicyTermsInput {
        model: spec.model,
        seats: SeatCount::new(seats)?,
        duration_days: spec.duration_days,
        trial_days: Some(spec.trial_days),
        features: FeatureSet::parse(features)?,
        offline_allowed: spec.offline_grace_days > 0,
        offline_grace_days: spec.offline_grace_days,
        payment_grace_days: 7,
        maintenance_months: spec.maintenance_months,
        lease_seconds: spec.lease_seconds,
    })?)
}

/// A product as defined so far (its facts, which licenses and child products refer to).
pub(super) struct ProductSim {
    pub(super) id: ProductId,
    pub(super) facts: Option<ProductFacts>,
}

/// A policy's stream and state, folded by `Policy` itself.
pub(super) struct PolicySim {
    pub(super) id: PolicyId,
    stream: Stream,
    pub(super) state: Policy,
}

impl Generator {
    pub(super) fn product(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &PRODUCTS[p];
        let id = ProductId::from_uuid(v7(&mut self.rng, at));
        let parent = spec.parent.map(|q| ProductRef {
            id: self.products[q].id,
            facts: self.products[q].facts.clone(),
        });
        let name = Name::parse(spec.name)?;
        let key_prefix = KeyPrefix::parse(spec.prefix)?;
        let app_id = AppId::parse(v4(&mut self.rng))?;
        let events = Product::Undefined.decide(&ProductCommand {
            product_id: id,
            at,
            action: ProductAction::Define {
                name: name.clone(),
                kind: spec.kind,
                app_id,
                parent,
                key_prefix: key_prefix.clone(),
            },
        })?;
        let mut stream = self.out.stream(id.to_string());
        let meta = self.metadata(self.admin(), at)?;
        self.out.emit(&mut stream, &events, &meta, at)?;
        self.products.push(ProductSim {
            id,
            facts: Some(ProductFacts {
                name,
                kind: spec.kind,
                app_id,
                key_prefix,
            }),
        });
        Ok(())
    }

    pub(super) fn product_ref(&self, p: usize) -> ProductRef {
        ProductRef {
            id: self.products[p].id,
            facts: self.products[p].facts.clone(),
        }
    }

    pub(super) fn policy(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &POLICIES[p];
        let id = PolicyId::from_uuid(v7(&mut self.rng, at));
        let events = Policy::Undefined.decide(&PolicyCommand {
            policy_id: id,
            at,
            action: PolicyAction::Define {
                product: self.product_ref(spec.product),
                name: Name::parse(spec.name)?,
                terms: terms(spec, spec.seats, spec.features)?,
            },
        })?;
        let stream = self.out.stream(id.to_string());
        self.policies.push(PolicySim {
            id,
            stream,
            state: Policy::Undefined,
        });
        self.policy_events(p, events, at)
    }

    pub(super) fn revise(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let spec = &POLICIES[p];
        let revision = spec.revision.as_ref().context("a revision is planned")?;
        let sim = &self.policies[p];
        let events = sim.state.decide(&PolicyCommand {
            policy_id: sim.id,
            at,
            action: PolicyAction::Revise {
                name: Name::parse(revision.name)?,
                terms: terms(spec, revision.seats, revision.features)?,
            },
        })?;
        self.policy_events(p, events, at)
    }

    pub(super) fn retire(&mut self, p: usize, at: Timestamp) -> anyhow::Result<()> {
        let sim = &self.policies[p];
        let events = sim.state.decide(&PolicyCommand {
            policy_id: sim.id,
            at,
            action: PolicyAction::Retire,
        })?;
        self.policy_events(p, events, at)
    }

    /// Writes a policy's events and folds them into its state with `Policy`'s own `apply`.
    fn policy_events(
        &mut self,
        p: usize,
        events: Vec<PolicyEvent>,
        at: Timestamp,
    ) -> anyhow::Result<()> {
        let meta = self.metadata(self.admin(), at)?;
        let sim = &mut self.policies[p];
        self.out.emit(&mut sim.stream, &events, &meta, at)?;
        for event in events {
            sim.state.apply(event);
        }
        Ok(())
    }
}
