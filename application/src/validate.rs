//! `POST /v1/validate` as a use case: the edge check, the domain's decision on the in-memory
//! entry, and the answer, serialized while the entry is borrowed (the hot path: thousands a second
//! from memory, no copy of the entry, no `serde_json::Value` in between).

use std::borrow::Cow;

use domain::Timestamp;
use domain::ids::{AppId, LicenseId, PolicyId, ProductId};
use domain::status::{days_remaining, status_at};
use domain::validation::{self, LicenseFacts, Warning};
use domain::values::{FeatureCode, FeatureSet, Fingerprint};
use projections::validation::ValidationEntry;
use serde::Serialize;

use crate::{App, AppError};

/// The counter of validation answers, by validation code (`/metrics`).
pub const VALIDATIONS: &str = "ledger_validations_total";

thread_local! {
    /// Per worker thread, the counter handle of each code already answered: the hot path then
    /// increments an atomic instead of looking the series up in the recorder's registry each
    /// time (as `api::metrics::observe` does for requests). Handles are taken on first use, by
    /// then the server has installed its recorder (`api::metrics::handle`, before serving).
    static COUNTERS: std::cell::RefCell<Vec<(domain::validation::ValidationCode, metrics::Counter)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Counts one validation answer under its code.
fn count(code: domain::validation::ValidationCode) {
    COUNTERS.with(|counters| {
        let mut counters = counters.borrow_mut();
        if let Some((_, counter)) = counters.iter().find(|(c, _)| *c == code) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(VALIDATIONS, "code" => code.as_str());
        counter.increment(1);
        counters.push((code, counter));
    });
}

/// What a client asks.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub key: String,
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default)]
    pub features: Vec<FeatureCode>,
}

/// Feature codes as a JSON array, straight from the set (no copy).
struct Codes<'a>(&'a FeatureSet);

impl Serialize for Codes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FeatureCode::as_str))
    }
}

#[derive(Serialize)]
struct PolicyInfo {
    id: PolicyId,
    version: u32,
    model: &'static str,
}

#[derive(Serialize)]
struct LicenseInfo<'a> {
    id: LicenseId,
    status: &'static str,
    product_id: ProductId,
    policy: PolicyInfo,
    features: Codes<'a>,
    seats: u32,
    activations: u32,
    expires_at: Option<Timestamp>,
    trial_days_remaining: Option<u32>,
}

#[derive(Serialize)]
struct Answer<'a> {
    valid: bool,
    code: &'static str,
    detail: Cow<'static, str>,
    license: LicenseInfo<'a>,
    warnings: &'a [Warning],
}

/// The validation answer for `e`, as JSON.
fn answer_json(
    e: &ValidationEntry,
    request: &ValidateRequest,
    now: Timestamp,
) -> (Vec<u8>, domain::validation::ValidationCode) {
    let decision = validation::decide(
        e,
        now,
        request.fingerprint.as_ref().map(Fingerprint::as_str),
        &request.features,
    );
    let detail = if decision.missing_features.is_empty() {
        Cow::Borrowed(decision.code.detail())
    } else {
        let missing: Vec<&str> = decision
            .missing_features
            .iter()
            .map(FeatureCode::as_str)
            .collect();
        Cow::Owned(format!(
            "{}: {}",
            decision.code.detail(),
            missing.join(", ")
        ))
    };
    count(decision.code);
    let answer = Answer {
        valid: decision.valid(),
        code: decision.code.as_str(),
        detail,
        license: LicenseInfo {
            id: e.license_id,
            status: status_at(e, now).as_str(),
            product_id: e.class.product_id,
            policy: PolicyInfo {
                id: e.class.policy_id,
                version: e.class.policy_version,
                model: e.model().as_str(),
            },
            features: Codes(&e.features),
            seats: e.seats(),
            activations: e.active_installations(now),
            expires_at: e.expires_at(),
            trial_days_remaining: e
                .trial_ends_at()
                .filter(|_| !e.subscribed())
                .map(|end| days_remaining(now, end)),
        },
        warnings: &decision.warnings,
    };
    // Sized for a typical answer (about 450 bytes), so serializing does not grow the buffer
    // three or four times over on every validation.
    let mut out = Vec::with_capacity(640);
    match serde_json::to_writer(&mut out, &answer) {
        Ok(()) => (out, decision.code),
        Err(_) => (Vec::new(), decision.code),
    }
}

impl App {
    /// The validation answer (JSON) for a client application's request.
    ///
    /// # Errors
    /// [`AppError::Edge`] when the key opens no license of application `app`.
    pub fn validate(&self, app: &AppId, request: &ValidateRequest) -> Result<Vec<u8>, AppError> {
        let now = self.now();
        let answer =
            self.with_edge_entry(app, &request.key, |entry| answer_json(entry, request, now));
        match answer {
            Ok((json, code)) => {
                self.tally().record(code);
                Ok(json)
            }
            Err(e) => {
                if let AppError::Edge(code) = &e {
                    count(*code);
                    self.tally().record(*code);
                }
                Err(e)
            }
        }
    }
}
