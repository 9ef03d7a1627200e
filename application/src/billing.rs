//! Stripe webhooks in (issue #16, ADR 0022): the signature checked over the raw bytes before
//! anything reads them, then the event stored once by its id in the billing inbox
//! (`billing_inbox`, migration 0014) in the statement that acknowledges it. Processing happens
//! later, apart from the request (the inbox's consumer): Stripe is answered at once, and an
//! event this build cannot act on is kept, never refused with a 5xx.
//!
//! The signature (Stripe's scheme): `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`,
//! each `v1` an HMAC-SHA256 of `"{t}.{raw body}"` under an endpoint secret (`whsec_…`). Any `v1`
//! under any configured secret verifies (secrets are rotated by configuring both for a while);
//! `t` must be within 300 s of the server's clock, either way; the comparison is constant-time.

use std::fmt;

use domain::Timestamp;
use domain::billing::stripe::{
    CheckoutSession, NotAnEvent, StripeEvent, StripeObject, Subscription,
};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::{App, AppError};

/// The earliest `created` an event may have (2010-01-01, before Stripe's first event).
const EARLIEST_CREATED: i64 = 1_262_304_000;

/// How far a signature's `t` may be from the server's clock, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The most `v1` signatures a header may carry (Stripe sends one, two while rolling a secret).
const MAX_SIGNATURES: usize = 8;

/// Which of Stripe's modes this ledger acts on (`--stripe-mode`): an event of the other mode is
/// stored and `ignored`, so that a test-mode endpoint's events never change live licenses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StripeMode {
    /// Both (the default: one endpoint's secret is configured, and it is of one mode).
    #[default]
    Any,
    /// Live-mode events only (`livemode: true`).
    Live,
    /// Test-mode events only.
    Test,
}

impl StripeMode {
    /// Reads `any`, `live` or `test`.
    ///
    /// # Errors
    /// Anything else, said.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(Self::Any),
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            other => Err(format!("{other:?} is not a Stripe mode: any, live or test")),
        }
    }

    /// Whether an event of `livemode` is acted on.
    pub fn accepts(self, livemode: bool) -> bool {
        match self {
            Self::Any => true,
            Self::Live => livemode,
            Self::Test => !livemode,
        }
    }
}

/// Webhook endpoint secrets (`--stripe-webhook-secret`): never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookSecrets(Vec<String>);

impl WebhookSecrets {
    /// The secrets, as configured.
    pub fn new(secrets: Vec<String>) -> Self {
        Self(secrets.into_iter().filter(|s| !s.is_empty()).collect())
    }

    /// Whether any is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecrets({} configured)", self.0.len())
    }
}

/// Why a webhook's signature does not verify (told to the caller: it is the sender's to fix).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    #[error("no webhook secret is configured (ledger serve --stripe-webhook-secret)")]
    NoSecret,
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is not `t=<seconds>,v1=<hex>[,...]`")]
    Malformed,
    #[error("the signature's timestamp is more than 300 s from the server's clock")]
    OutOfTolerance,
    #[error("no v1 signature matches the body under a configured secret")]
    NoMatch,
}

/// Checks `header` (`Stripe-Signature`) over `body` at `now`.
///
/// # Errors
/// The [`SignatureRefused`] reason.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &WebhookSecrets,
    now: Timestamp,
) -> Result<(), SignatureRefused> {
    if secrets.is_empty() {
        return Err(SignatureRefused::NoSecret);
    }
    let header = header.ok_or(SignatureRefused::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureRefused::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureRefused::Malformed)?,
                );
            }
            "t" => return Err(SignatureRefused::Malformed),
            // Another scheme's signature, or a malformed one: never a match. Stripe sends one
            // or two (during its own secret rolls); a header of hundreds is nobody's.
            "v1" => {
                if let Ok(bytes) = hex::decode(value)
                    && bytes.len() == 32
                {
                    if candidates.len() == MAX_SIGNATURES {
                        return Err(SignatureRefused::Malformed);
                    }
                    candidates.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(SignatureRefused::Malformed)?;
    if now.timestamp().abs_diff(t) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(SignatureRefused::OutOfTolerance);
    }
    if candidates.is_empty() {
        return Err(SignatureRefused::NoMatch);
    }
    // The body is hashed once per secret, whatever the number of signatures.
    let signed = t.to_string();
    for secret in &secrets.0 {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
            .map_err(|_| SignatureRefused::NoMatch)?;
        mac.update(signed.as_bytes());
        mac.update(b".");
        mac.update(body);
        for candidate in &candidates {
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureRefused::NoMatch)
}

/// The header Stripe would send for `body` signed with `secret` at `t` (tests, benchmarks, and
/// `ledger billing import`'s re-signing have no other source of truth than this construction,
/// which is the one Stripe documents: HMAC-SHA256 of `"{t}.{body}"`, hex).
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A webhook acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Received {
    /// Always true: the event is stored (or was already).
    pub received: bool,
    /// The event's id was stored already: this delivery changes nothing.
    pub duplicate: bool,
}

impl App {
    /// Receives a Stripe webhook: verified over `body`'s bytes, then stored once by its id,
    /// committed with whatever else arrived meanwhile ([`crate::intake`]) before it is answered.
    ///
    /// # Errors
    /// [`AppError::InvalidSignature`] (nothing stored); `MALFORMED_BODY` for a verified body
    /// that is not an event; database errors.
    pub async fn receive_stripe_event(
        &self,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Received, AppError> {
        verify(signature, body, self.webhook_secrets(), self.now())
            .map_err(|why| AppError::InvalidSignature(why.to_string()))?;
        let row = inbox_row(body, self.now())?;
        let (id, kind) = (row.event_id.clone(), row.event_type.clone());
        let stored = self
            .intake()
            .store(row)
            .await
            .map_err(projections::ProjectionError::from)?;
        Ok(self.received(&id, &kind, stored))
    }

    fn received(&self, id: &str, kind: &str, stored: bool) -> Received {
        if stored {
            self.billing_wake().notify_one();
        }
        received(id, kind, stored)
    }
}

/// The acknowledgement of event `id`, logged.
fn received(id: &str, kind: &str, stored: bool) -> Received {
    tracing::info!(event = %id, kind = %kind, duplicate = !stored, "stripe event received");
    Received {
        received: true,
        duplicate: !stored,
    }
}

/// Stores a Stripe event in the inbox once by its id, alone (`ledger billing import`, a
/// back-fill an operator vouches for; the webhook's path is [`App::receive_stripe_event`]). The
/// consumer of any server on the database takes it from there.
///
/// # Errors
/// `INVALID_FIELD` for a body that is not a Stripe event; database errors.
pub async fn store_event(
    pool: &sqlx::PgPool,
    body: &[u8],
    now: Timestamp,
) -> Result<Received, AppError> {
    let row = inbox_row(body, now)?;
    let stored = crate::intake::insert(pool, &[&row])
        .await
        .map_err(projections::ProjectionError::from)?
        .contains(&row.event_id);
    Ok(received(&row.event_id, &row.event_type, stored))
}

/// The inbox row of `body`, received at `now`.
///
/// # Errors
/// `INVALID_FIELD` for a body that is not a Stripe event, or one whose `created` is not
/// between 2010 and now.
fn inbox_row(body: &[u8], now: Timestamp) -> Result<crate::intake::InboxRow, AppError> {
    // Read whole, as the consumer will read it: what is stored is an event it can act on (a
    // body nested deeper than serde_json's 128 levels, a number out of range or a lone
    // surrogate is refused here, not acknowledged and then ignored).
    let event = StripeEvent::parse(body).map_err(|why| AppError::InvalidField {
        field: "body",
        detail: format!("not a Stripe event: {why}"),
    })?;
    // Stripe creates an event before it sends it, and existed after 2010: a `created` outside
    // that would pin the subscription's order for good (a fact "from the future" is never
    // superseded).
    let earliest = chrono::DateTime::from_timestamp(EARLIEST_CREATED, 0).unwrap_or_default();
    if event.created < earliest
        || event.created > now + chrono::Duration::seconds(TOLERANCE_SECONDS)
    {
        return Err(AppError::InvalidField {
            field: "created",
            detail: format!(
                "the event's created ({}) is not between 2010 and now (+{TOLERANCE_SECONDS} s)",
                event.created.to_rfc3339()
            ),
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| AppError::InvalidField {
        field: "body",
        detail: "not UTF-8".to_owned(),
    })?;
    Ok(crate::intake::InboxRow {
        event_id: event.id,
        event_type: event.kind,
        created: event.created,
        livemode: event.livemode,
        api_version: event.api_version,
        payload: text.to_owned(),
        received_at: now,
    })
}

/// What became of an inbox event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Processed {
    /// Its effects are in the log (none, when it was applied already).
    Processed,
    /// Nothing to do, and why (an event type not acted on, a revoked license).
    Ignored(String),
    /// It could not be applied now, and why; retried with back-off.
    Failed(String),
}

/// The back-off after `attempts` failed attempts: 10 s doubling, at most an hour.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempts.clamp(0, 9)).unwrap_or(9);
    chrono::Duration::seconds((10_i64 << exponent).min(3600))
}

/// How many times the consumer takes a failing event by itself (10 s doubling to an hour:
/// about 16 hours in all, while Stripe retries a delivery for three days); after that only a
/// retry by hand (`POST /v1/billing/events/{id}/retry`, `ledger billing retry`) takes it again.
pub const MAX_ATTEMPTS: i32 = 24;

/// How many events the consumer applies at once (events of one subscription or customer are
/// applied one after the other): each takes a connection of the jobs pool while it runs.
pub const BILLING_CONCURRENCY: usize = 4;

/// The lane an event is applied in: that of its customer (or, without one, its subscription,
/// or itself), so that one customer's events — its link to an organization, its checkouts, its
/// subscriptions' and invoices' facts — are applied one after the other in Stripe's order.
fn lane_of(event: &Result<StripeEvent, NotAnEvent>) -> usize {
    use std::hash::{Hash, Hasher};
    let key = event
        .as_ref()
        .map(|event| {
            customer_of(event).unwrap_or_else(|| match StripeObject::of(&event.object) {
                StripeObject::Subscription(sub) => sub.id,
                StripeObject::CheckoutSession(session) => {
                    session.subscription.unwrap_or(session.id)
                }
                StripeObject::Invoice(invoice) => invoice.subscription.unwrap_or(invoice.id),
                StripeObject::Customer(customer) => customer.id,
                StripeObject::Other(_) => event.id.clone(),
            })
        })
        .unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    usize::try_from(hasher.finish() % BILLING_CONCURRENCY as u64).unwrap_or(0)
}

/// The Stripe customer an event is about, when it names one.
fn customer_of(event: &StripeEvent) -> Option<String> {
    match StripeObject::of(&event.object) {
        StripeObject::Subscription(sub) => sub.customer,
        StripeObject::CheckoutSession(session) => session.customer,
        StripeObject::Invoice(invoice) => invoice.customer,
        StripeObject::Customer(customer) => Some(customer.id),
        StripeObject::Other(_) => None,
    }
}

/// How long a node holds an event it took, before another may take it (a node that died).
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// A deterministic id for what a gateway object stands for (a subscription's license, a
/// customer's organization): the same object, on any node, any number of times, the same id.
fn derived_id(kind: &str, gateway_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("https://license-ledger.dev/stripe/{kind}/{gateway_id}").as_bytes(),
    )
}

impl App {
    /// Processes up to `limit` inbox events that are due (pending, or failed and past their
    /// back-off), oldest Stripe event first; returns how many it took. Several nodes may run
    /// it at once: each takes its events with `FOR UPDATE SKIP LOCKED` and leases them for a
    /// minute, and every effect is idempotent (derived ids, facts applied once), so an event
    /// processed twice after a crash changes nothing the second time.
    ///
    /// # Errors
    /// Database errors (an event's own failure is recorded as its outcome instead).
    pub async fn process_billing_inbox(&self, limit: i64) -> Result<usize, AppError> {
        let now = self.now();
        let lease_until = now + LEASE;
        let taken: Vec<(String, String, bool, String, i32)> = sqlx::query_as(
            "UPDATE billing_inbox SET next_attempt_at = $2 WHERE event_id IN ( \
               SELECT event_id FROM billing_inbox \
               WHERE (outcome IS NULL OR outcome = 'failed') AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, created, event_id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING event_id, event_type, livemode, payload::text, attempts",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(self.jobs_pool())
        .await
        .map_err(projections::ProjectionError::from)?;
        let mut results: Vec<Option<(Processed, Timestamp)>> = vec![None; taken.len()];
        let mut applied: Vec<(usize, Result<StripeEvent, NotAnEvent>)> = Vec::new();
        let mut taken_ids = Vec::with_capacity(taken.len());
        for (i, (id, kind, livemode, payload, attempts)) in taken.into_iter().enumerate() {
            taken_ids.push((id, attempts));
            // Decided from the columns the intake stored, the body unread: a ledger whose
            // endpoint sends every type reads only the bodies it acts on.
            if !self.stripe_mode().accepts(livemode) {
                let (is, takes) = if livemode {
                    ("live", "test")
                } else {
                    ("test", "live")
                };
                results[i] = Some((
                    Processed::Ignored(format!(
                        "a {is}-mode event: this ledger acts on {takes}-mode events only \
                         (--stripe-mode)"
                    )),
                    self.now(),
                ));
            } else if !domain::billing::acted_on(&kind) {
                results[i] = Some((
                    Processed::Ignored(format!("{kind} is not acted on")),
                    self.now(),
                ));
            } else {
                // Each body read once (the route checked it is an event; a back-fill line too).
                applied.push((i, StripeEvent::parse(payload.as_bytes())));
            }
        }
        // The statement returns rows in no order: Stripe's order, as far as the batch goes.
        applied.sort_by(|(a_i, a), (b_i, b)| {
            let created = |e: &Result<StripeEvent, NotAnEvent>| e.as_ref().map(|e| e.created).ok();
            (created(a), &taken_ids[*a_i].0).cmp(&(created(b), &taken_ids[*b_i].0))
        });
        // Events of one subscription (or customer) one after the other, in Stripe's order;
        // different ones at once, in BILLING_CONCURRENCY lanes (a lane is a task of its own, so
        // the lanes' database round trips overlap).
        let mut lanes: Vec<Vec<(usize, Result<StripeEvent, NotAnEvent>)>> =
            (0..BILLING_CONCURRENCY).map(|_| Vec::new()).collect();
        for (i, event) in applied {
            lanes[lane_of(&event)].push((i, event));
        }
        let taken = taken_ids;
        let mut running = tokio::task::JoinSet::new();
        let mut members = std::collections::HashMap::new();
        for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
            let app = self.clone();
            let indices: Vec<usize> = lane.iter().map(|(i, _)| *i).collect();
            let task = running.spawn(async move {
                let mut done = Vec::with_capacity(lane.len());
                for (i, event) in lane {
                    let processed = app.process_stripe_event(event).await;
                    done.push((i, processed, app.now()));
                }
                done
            });
            members.insert(task.id(), indices);
        }
        let mut ids = Vec::with_capacity(taken.len());
        let mut outcomes = Vec::with_capacity(taken.len());
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(taken.len());
        let mut nexts: Vec<Option<Timestamp>> = Vec::with_capacity(taken.len());
        let mut done_at = Vec::with_capacity(taken.len());
        while let Some(lane) = running.join_next_with_id().await {
            match lane {
                Ok((_, done)) => {
                    for (i, processed, at) in done {
                        results[i] = Some((processed, at));
                    }
                }
                // A bug met in one of the lane's events: the lane's events are recorded as
                // failed (counted toward the cap, so a poison event stops being taken; those
                // applied before it apply as nothing when taken again), the others' outcomes
                // stand, and the consumer goes on.
                Err(e) if e.is_panic() => {
                    tracing::error!(error = %e, "the billing consumer panicked on an event");
                    for i in members.remove(&e.id()).unwrap_or_default() {
                        results[i] = Some((
                            Processed::Failed(
                                "processing it panicked (see the server log)".to_owned(),
                            ),
                            self.now(),
                        ));
                    }
                }
                // Only a runtime shutting down cancels a lane: its events stay leased, and are
                // taken again once the lease has run out.
                Err(_) => {}
            }
        }
        for ((event_id, attempts), result) in taken.iter().zip(results) {
            let Some((processed, at)) = result else {
                continue;
            };
            let (outcome, next) = match &processed {
                Processed::Processed => ("processed", Some(now)),
                Processed::Ignored(_) => ("ignored", Some(now)),
                // Retried with back-off, MAX_ATTEMPTS times in all; then by hand only.
                Processed::Failed(_) => (
                    "failed",
                    (*attempts + 1 < MAX_ATTEMPTS).then(|| self.now() + backoff(*attempts)),
                ),
            };
            let reason = match processed {
                Processed::Processed => None,
                Processed::Ignored(why) => Some(why),
                Processed::Failed(why) => {
                    if next.is_some() {
                        tracing::warn!(event = %event_id, reason = %why, "stripe event failed; will retry");
                    } else {
                        tracing::error!(
                            event = %event_id,
                            reason = %why,
                            attempts = *attempts + 1,
                            "stripe event failed for good; retry it by hand (ledger billing retry)"
                        );
                    }
                    Some(why)
                }
            };
            // `ledger_stripe_events_total` (api::metrics, which describes it).
            metrics::counter!("ledger_stripe_events_total", "outcome" => outcome).increment(1);
            ids.push(event_id.clone());
            outcomes.push(outcome);
            reasons.push(reason);
            nexts.push(next);
            done_at.push(at);
        }
        // The batch's outcomes in one statement (each event's effects are in the log already:
        // a crash before this line leaves them leased, taken again after the lease, and applied
        // again as nothing). Only while the lease is ours: a retry asked meanwhile (which makes
        // the event due now) wins, and so does another node that took the event after our
        // lease ran out.
        if !ids.is_empty() {
            sqlx::query(
                "UPDATE billing_inbox b SET outcome = u.outcome, reason = u.reason, \
                 attempts = b.attempts + 1, next_attempt_at = u.next, processed_at = u.done_at \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) \
                   AS u(event_id, outcome, reason, next, done_at) \
                 WHERE b.event_id = u.event_id AND b.next_attempt_at = $6",
            )
            .bind(&ids)
            .bind(&outcomes)
            .bind(&reasons)
            .bind(&nexts)
            .bind(&done_at)
            .bind(lease_until)
            .execute(self.jobs_pool())
            .await
            .map_err(projections::ProjectionError::from)?;
        }
        Ok(taken.len())
    }

    /// Makes every `failed` inbox event due now, its automatic attempts counted afresh: what a
    /// new link (a price on a policy) may have made possible. Events still missing something
    /// fail again, as they would have.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rearm_failed_billing_events(&self) -> Result<u64, AppError> {
        self.rearm(self.pool(), None).await
    }

    /// Makes the `failed` inbox events due now, attempts counted afresh: those of `only`, or
    /// every one; wakes this process's consumer when there were any.
    async fn rearm(&self, pool: &sqlx::PgPool, only: Option<&[String]>) -> Result<u64, AppError> {
        let rearmed = sqlx::query(
            "UPDATE billing_inbox SET next_attempt_at = $1, attempts = 0 \
             WHERE outcome = 'failed' AND ($2::text[] IS NULL OR event_id = ANY($2))",
        )
        .bind(self.now())
        .bind(only)
        .execute(pool)
        .await
        .map_err(projections::ProjectionError::from)?
        .rows_affected();
        if rearmed > 0 {
            self.billing_wake().notify_one();
        }
        Ok(rearmed)
    }

    /// Makes the failed events of Stripe customer `customer` due at once (attempts afresh): a
    /// subscription or invoice that failed because its customer was no organization yet is
    /// applied now that it is one, not at its back-off (or never, past the retry cap).
    ///
    /// A leased event is not told from one backing off (both wait in `next_attempt_at`): one
    /// being applied meanwhile — of this batch, or another node's — loses its lease, its outcome
    /// is not written, and it is taken again, perhaps while the first run ends. Both runs apply
    /// it once, as every redelivery is (facts keyed by the event, derived ids, unique claims),
    /// and facts fold in Stripe's order whatever order they are applied in. The scan reads the
    /// `failed` rows only, a few in a healthy ledger.
    async fn rearm_failed_of_customer(&self, customer: &str) -> Result<u64, AppError> {
        // Read here, not with PostgreSQL's `json` operators: those refuse a whole document
        // with a `\u0000` anywhere in it, and one such event would stop every re-arm.
        let failed: Vec<(String, String)> = sqlx::query_as(
            "SELECT event_id, payload::text FROM billing_inbox \
             WHERE outcome = 'failed' AND next_attempt_at IS DISTINCT FROM $1",
        )
        .bind(self.now())
        .fetch_all(self.jobs_pool())
        .await
        .map_err(projections::ProjectionError::from)?;
        let theirs: Vec<String> = failed
            .into_iter()
            .filter(|(_, payload)| {
                StripeEvent::parse(payload.as_bytes())
                    .is_ok_and(|e| customer_of(&e).as_deref() == Some(customer))
            })
            .map(|(id, _)| id)
            .collect();
        if theirs.is_empty() {
            return Ok(0);
        }
        let rearmed = self.rearm(self.jobs_pool(), Some(&theirs)).await?;
        if rearmed > 0 {
            tracing::info!(
                customer,
                rearmed,
                "customer linked: its failed stripe events are due again"
            );
        }
        Ok(rearmed)
    }

    /// What one stored event does.
    async fn process_stripe_event(&self, event: Result<StripeEvent, NotAnEvent>) -> Processed {
        let event = match event {
            Ok(event) => event,
            Err(why) => return Processed::Ignored(format!("not a Stripe event: {why}")),
        };
        // The mode and the type were checked from the inbox's columns.
        let mut ctx = commands::CommandContext::new(domain::event::Actor::Stripe, event.id.clone());
        ctx.causation_id = Some(event.id.clone());
        ctx.effective_at = Some(event.created);
        let observed = domain::billing::Observation {
            created: event.created,
            event_id: event.id.clone(),
        };
        let kind = event.kind.as_str();
        let result = match StripeObject::of(&event.object) {
            StripeObject::Subscription(sub) if kind.starts_with("customer.subscription.") => {
                self.apply_subscription(&ctx, &sub, observed).await
            }
            StripeObject::CheckoutSession(session) if kind == "checkout.session.completed" => {
                self.provision_checkout(&ctx, &session, observed).await
            }
            // `acted_on` let through invoice.paid and invoice.payment_failed only.
            StripeObject::Invoice(invoice) if kind.starts_with("invoice.") => {
                match domain::billing::target_of_invoice(kind, &invoice) {
                    Some(target) => self.apply_payment(&ctx, target, observed).await,
                    None => Ok(Processed::Ignored(format!(
                        "invoice {} bills no subscription",
                        invoice.id
                    ))),
                }
            }
            StripeObject::Customer(customer)
                if matches!(kind, "customer.created" | "customer.updated") =>
            {
                self.link_customer(&ctx, &customer).await
            }
            // A type acted on (the others were ignored from the inbox's columns) whose object is
            // not the one it should carry, or has no usable id.
            _ => Ok(Processed::Ignored(format!(
                "{kind} carries no {} the ledger can read (its object's type or id)",
                kind.rsplit_once('.').map_or(kind, |(object, _)| object)
            ))),
        };
        result.unwrap_or_else(|e| match e {
            AppError::Command(commands::CommandError::Rejected(
                domain::DomainError::LicenseRevoked(id),
            )) => Processed::Ignored(format!("license {id} is revoked")),
            other => Processed::Failed(other.to_string()),
        })
    }

    /// A subscription's state, recorded on the license it is linked to; the first event of a
    /// subscription the ledger has no license for issues one, when its policy and organization
    /// are known (see [`Self::license_for_subscription`]).
    async fn apply_subscription(
        &self,
        ctx: &commands::CommandContext,
        sub: &Subscription,
        observed: domain::billing::Observation,
    ) -> Result<Processed, AppError> {
        let license = match self.license_for_subscription(ctx, sub).await? {
            Ok(license) => license,
            Err(not) => return Ok(not),
        };
        self.licenses_for_jobs()
            .sync_billing(ctx, license, domain::billing::target(sub), observed)
            .await?;
        Ok(Processed::Processed)
    }

    /// An invoice paid or failed, recorded on the license its subscription is linked to.
    async fn apply_payment(
        &self,
        ctx: &commands::CommandContext,
        target: domain::billing::BillingTarget,
        observed: domain::billing::Observation,
    ) -> Result<Processed, AppError> {
        let Some(license) = self
            .jobs_ledger()
            .license_of_subscription(&target.gateway, &target.subscription_id)
            .await?
        else {
            return Ok(Processed::Failed(format!(
                "no license is linked to subscription {} yet (its checkout or first \
                 subscription event may not be processed yet)",
                target.subscription_id
            )));
        };
        self.licenses_for_jobs()
            .sync_billing(ctx, license, target, observed)
            .await?;
        Ok(Processed::Processed)
    }

    /// The license of subscription `sub`: the one linked to it; or the one its
    /// `metadata.license_id` names, when that license is of the customer's organization (the
    /// customer is linked to it if it is no organization yet; the license follows it once no
    /// subscription recorded there before it runs, `domain::billing::followed`); or one issued now — under the policy its `metadata.policy_id` names or one
    /// of its prices is linked to, for the organization its customer is, or that its
    /// `metadata.organization_id` names when the customer is no organization yet (it is linked
    /// to it then). `Err` is the outcome instead: what is missing (`failed`: its checkout may
    /// link the customer meanwhile) or what no retry will change (`ignored`).
    async fn license_for_subscription(
        &self,
        ctx: &commands::CommandContext,
        sub: &Subscription,
    ) -> Result<Result<domain::ids::LicenseId, Processed>, AppError> {
        let gateway = domain::billing::STRIPE;
        if let Some(linked) = self
            .jobs_ledger()
            .license_of_subscription(gateway, &sub.id)
            .await?
        {
            return Ok(Ok(linked));
        }
        for key in ["license_id", "policy_id", "organization_id"] {
            if let Some(value) = sub.metadata.get(key)
                && uuid::Uuid::parse_str(value).is_err()
            {
                return Ok(Err(Processed::Ignored(format!(
                    "metadata.{key} {value:?} is not a ledger id"
                ))));
            }
        }
        let customer_org = match &sub.customer {
            Some(customer) => {
                self.jobs_ledger()
                    .organization_of_customer(gateway, customer)
                    .await?
            }
            None => None,
        };
        if let Some(id) = uuid_in(&sub.metadata, "license_id") {
            let license = domain::ids::LicenseId::from_uuid(id);
            let loaded = self
                .jobs_ledger()
                .store()
                .read::<domain::license::License>(license)
                .await?;
            let Some(state) = loaded.aggregate.state() else {
                return Ok(Err(Processed::Failed(format!(
                    "metadata.license_id names license {license}, which does not exist"
                ))));
            };
            if let Err(not) = self
                .claim_customer(ctx, sub.customer.as_deref(), state.organization_id)
                .await?
            {
                return Ok(Err(not));
            }
            return Ok(Ok(license));
        }
        let policy = match uuid_in(&sub.metadata, "policy_id") {
            Some(id) => Some(domain::ids::PolicyId::from_uuid(id)),
            None => {
                self.policy_of_prices(sub.items.iter().filter_map(|i| i.price_id.as_deref()))
                    .await?
            }
        };
        let Some(policy) = policy else {
            let prices: Vec<&str> = sub
                .items
                .iter()
                .filter_map(|i| i.price_id.as_deref())
                .collect();
            return Ok(Err(Processed::Failed(format!(
                "no license is linked to subscription {} and none can be issued: it has no \
                 metadata.policy_id and none of its prices ({}) is linked to a policy \
                 (PUT /v1/policies/{{id}}/stripe-prices)",
                sub.id,
                prices.join(", ")
            ))));
        };
        let named =
            uuid_in(&sub.metadata, "organization_id").map(domain::ids::OrganizationId::from_uuid);
        let organization = match (named, customer_org) {
            (Some(named), Some(known)) if named != known => {
                return Ok(Err(Processed::Failed(format!(
                    "customer {} is organization {known}; metadata.organization_id names \
                     {named}",
                    sub.customer.as_deref().unwrap_or_default()
                ))));
            }
            (_, Some(known)) => known,
            (Some(named), None) => {
                if let Err(not) = self
                    .claim_customer(ctx, sub.customer.as_deref(), named)
                    .await?
                {
                    return Ok(Err(not));
                }
                named
            }
            (None, None) => {
                return Ok(Err(Processed::Failed(format!(
                    "no license is linked to subscription {} and none can be issued yet: its \
                     customer {} is no organization (its checkout links it; or set \
                     metadata.organization_id)",
                    sub.id,
                    sub.customer.as_deref().unwrap_or("(none)")
                ))));
            }
        };
        let license = domain::ids::LicenseId::from_uuid(derived_id("subscription", &sub.id));
        if let Err(not) = self
            .issue_for_subscription(ctx, license, policy, organization)
            .await?
        {
            return Ok(Err(not));
        }
        Ok(Ok(license))
    }

    /// Links Stripe customer `customer` (when there is one) to `organization`: done when it is
    /// that organization's already; `failed`, naming both, when it is another's (a customer is
    /// one organization for good).
    async fn claim_customer(
        &self,
        ctx: &commands::CommandContext,
        customer: Option<&str>,
        organization: domain::ids::OrganizationId,
    ) -> Result<Result<(), Processed>, AppError> {
        let gateway = domain::billing::STRIPE;
        let Some(customer) = customer else {
            return Ok(Ok(()));
        };
        match self
            .jobs_ledger()
            .link_organization_customer(ctx, organization, gateway, customer)
            .await
        {
            Ok(linked) => {
                // Not the link's outcome: its failure leaves the events to their back-off.
                if !linked.events.is_empty()
                    && let Err(e) = self.rearm_failed_of_customer(customer).await
                {
                    tracing::warn!(customer, error = %e, "could not make the customer's failed stripe events due again; they wait for their back-off");
                }
                Ok(Ok(()))
            }
            Err(commands::LedgerError::Command(commands::CommandError::ClaimTaken { .. })) => {
                let holder = self
                    .jobs_ledger()
                    .organization_of_customer(gateway, customer)
                    .await?;
                if holder == Some(organization) {
                    Ok(Ok(()))
                } else {
                    Ok(Err(Processed::Failed(format!(
                        "customer {customer} is organization {} already, not {organization}",
                        holder.map_or_else(|| "?".to_owned(), |h| h.to_string())
                    ))))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The policy that holds one of `prices` (the first that one does).
    async fn policy_of_prices(
        &self,
        prices: impl Iterator<Item = &str>,
    ) -> Result<Option<domain::ids::PolicyId>, AppError> {
        let held = self
            .jobs_ledger()
            .prices_held(domain::billing::STRIPE)
            .await?;
        Ok(prices
            .filter_map(|p| domain::billing::PriceId::parse(p).ok())
            .find_map(|p| held.get(&p).copied()))
    }

    /// Issues subscription license `license` unless an earlier run did, by this path or the
    /// other (a checkout naming a policy, the subscription's first event). Issued already, it
    /// must be under the same policy for the same organization: the two paths read different
    /// objects (a session's metadata is not the subscription's), and the first processed must
    /// not silently decide for the other. (Not issued again: the policy may be retired or the
    /// organization closed since, which would be refused before the license is found.)
    async fn issue_for_subscription(
        &self,
        ctx: &commands::CommandContext,
        license: domain::ids::LicenseId,
        policy: domain::ids::PolicyId,
        organization: domain::ids::OrganizationId,
    ) -> Result<Result<(), Processed>, AppError> {
        let agrees = |state: &domain::license::LicenseState| {
            if state.policy_id == policy && state.organization_id == organization {
                Ok(())
            } else {
                Err(Processed::Failed(format!(
                    "license {license} of this subscription was issued under policy {} for \
                     organization {}; this event names policy {policy} for organization \
                     {organization}",
                    state.policy_id, state.organization_id
                )))
            }
        };
        let loaded = self
            .jobs_ledger()
            .store()
            .read::<domain::license::License>(license)
            .await?;
        if let Some(state) = loaded.aggregate.state() {
            return Ok(agrees(state));
        }
        let issued = self
            .licenses_for_jobs()
            .issue_as(
                ctx,
                license,
                commands::ledger::NewLicense {
                    policy_id: policy,
                    organization_id: organization,
                    seats: None,
                    features: None,
                    expires_at: None,
                    source: domain::values::LicenseSource::Stripe,
                },
            )
            .await;
        match issued {
            Ok(()) => Ok(Ok(())),
            Err(AppError::Command(commands::CommandError::Rejected(
                domain::DomainError::LicenseAlreadyIssued(_),
            ))) => {
                // Issued meanwhile by the other path, on this node or another.
                let loaded = self
                    .jobs_ledger()
                    .store()
                    .read::<domain::license::License>(license)
                    .await?;
                Ok(loaded.aggregate.state().map_or(Ok(()), agrees))
            }
            Err(e) => Err(e),
        }
    }

    /// A completed Checkout in subscription mode: the customer linked to the organization the
    /// session names (or the one it is, or one registered for it), and, when the session names
    /// its policy, exactly one license there, linked to the subscription. Without
    /// `metadata.policy_id` the subscription's own events issue the license, under the policy
    /// its price is linked to.
    async fn provision_checkout(
        &self,
        ctx: &commands::CommandContext,
        session: &CheckoutSession,
        observed: domain::billing::Observation,
    ) -> Result<Processed, AppError> {
        let gateway = domain::billing::STRIPE;
        if session.mode.as_deref() != Some("subscription") {
            return Ok(Processed::Ignored(format!(
                "a Checkout in {} mode provisions nothing",
                session.mode.as_deref().unwrap_or("no")
            )));
        }
        let (Some(subscription), Some(customer)) = (&session.subscription, &session.customer)
        else {
            // No retry will give it one.
            return Ok(Processed::Ignored(
                "the session names no subscription or customer".to_owned(),
            ));
        };
        let named = session
            .client_reference_id
            .as_ref()
            .or_else(|| session.metadata.get("organization_id"));
        let organization = match named {
            Some(id) => {
                let Ok(id) = uuid::Uuid::parse_str(id) else {
                    // No retry will make it one.
                    return Ok(Processed::Ignored(format!(
                        "client_reference_id {id:?} is not a ledger organization id"
                    )));
                };
                let organization = domain::ids::OrganizationId::from_uuid(id);
                if let Err(not) = self
                    .claim_customer(ctx, Some(customer), organization)
                    .await?
                {
                    return Ok(not);
                }
                organization
            }
            None => match self
                .jobs_ledger()
                .organization_of_customer(gateway, customer)
                .await?
            {
                Some(known) => known,
                None => {
                    let registered = match self.register_customer(ctx, customer, session).await? {
                        Ok(id) => id,
                        Err(why) => return Ok(Processed::Failed(why)),
                    };
                    match self.claim_customer(ctx, Some(customer), registered).await? {
                        Ok(()) => registered,
                        // Linked meanwhile (its `customer.created` naming its organization,
                        // processed on another node): that organization it is.
                        Err(_) => match self
                            .jobs_ledger()
                            .organization_of_customer(gateway, customer)
                            .await?
                        {
                            Some(holder) => holder,
                            None => registered,
                        },
                    }
                }
            },
        };
        let Some(policy) = session.metadata.get("policy_id") else {
            return Ok(Processed::Processed);
        };
        let Ok(policy) = uuid::Uuid::parse_str(policy) else {
            return Ok(Processed::Ignored(format!(
                "metadata.policy_id {policy:?} is not a ledger policy id"
            )));
        };
        let license = domain::ids::LicenseId::from_uuid(derived_id("subscription", subscription));
        if let Err(not) = self
            .issue_for_subscription(
                ctx,
                license,
                domain::ids::PolicyId::from_uuid(policy),
                organization,
            )
            .await?
        {
            return Ok(not);
        }
        // The link: a fact that says nothing of the standing (the subscription's events do).
        let link = domain::billing::BillingTarget {
            gateway: gateway.to_owned(),
            subscription_id: subscription.clone(),
            customer_id: customer.clone(),
            standing: domain::billing::Standing::Unchanged,
            trial_ends_at: None,
            paid_until: None,
            cancel_at: None,
            quantity: None,
            payment_only: false,
        };
        self.licenses_for_jobs()
            .sync_billing(ctx, license, link, observed)
            .await?;
        Ok(Processed::Processed)
    }

    /// Registers the organization of a Stripe customer no session or metadata names: a root
    /// customer organization named after its email, with an id derived from the customer's.
    async fn register_customer(
        &self,
        ctx: &commands::CommandContext,
        customer: &str,
        session: &CheckoutSession,
    ) -> Result<Result<domain::ids::OrganizationId, String>, AppError> {
        let id = domain::ids::OrganizationId::from_uuid(derived_id("customer", customer));
        let name = session
            .customer_email
            .clone()
            .unwrap_or_else(|| format!("Stripe customer {customer}"));
        let name = domain::values::Name::parse(&name)
            .or_else(|_| domain::values::Name::parse(&format!("Stripe customer {customer}")));
        let Ok(name) = name else {
            return Ok(Err("the customer has no usable name".to_owned()));
        };
        match self
            .jobs_ledger()
            .register_organization_as(
                ctx,
                id,
                commands::ledger::NewOrganization {
                    name,
                    kind: domain::values::OrganizationKind::Customer,
                    parent_id: None,
                },
            )
            .await
        {
            Ok(_)
            | Err(commands::LedgerError::Command(commands::CommandError::Rejected(
                domain::DomainError::OrganizationAlreadyRegistered(_),
            ))) => Ok(Ok(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// `customer.created|updated`: a customer whose `metadata.organization_id` names an
    /// organization is linked to it (a vendor creating customers from its CRM says which
    /// organization each is); others wait for their checkout.
    async fn link_customer(
        &self,
        ctx: &commands::CommandContext,
        customer: &domain::billing::stripe::Customer,
    ) -> Result<Processed, AppError> {
        let Some(named) = customer.metadata.get("organization_id") else {
            return Ok(Processed::Ignored(format!(
                "customer {} names no organization (metadata.organization_id): its checkout \
                 links it",
                customer.id
            )));
        };
        let Ok(organization) = uuid::Uuid::parse_str(named) else {
            return Ok(Processed::Ignored(format!(
                "metadata.organization_id {named:?} is not a ledger organization id"
            )));
        };
        let organization = domain::ids::OrganizationId::from_uuid(organization);
        Ok(
            match self
                .claim_customer(ctx, Some(&customer.id), organization)
                .await?
            {
                Ok(()) => Processed::Processed,
                Err(not) => not,
            },
        )
    }
}

/// A UUID in `metadata[key]`, when there is one.
fn uuid_in(metadata: &std::collections::BTreeMap<String, String>, key: &str) -> Option<uuid::Uuid> {
    metadata
        .get(key)
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
}

/// One event of the billing inbox, as support reads it.
#[derive(Clone, Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxEntry {
    /// Stripe's event id.
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// When Stripe created it.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub received_at: Timestamp,
    /// `pending`, `processed`, `ignored` or `failed`.
    pub outcome: String,
    /// Why it was ignored, or why it failed.
    pub reason: Option<String>,
    pub attempts: i32,
    /// When a pending or failed event is taken next.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt_at: Option<Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub processed_at: Option<Timestamp>,
}

impl From<projections::queries::InboxRow> for InboxEntry {
    fn from(r: projections::queries::InboxRow) -> Self {
        Self {
            id: r.event_id,
            event_type: r.event_type,
            created: r.created,
            received_at: r.received_at,
            outcome: r.outcome,
            reason: r.reason,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            processed_at: r.processed_at,
        }
    }
}

/// An event made due again.
#[derive(Clone, Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Retried {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`: the consumer takes it next.
    pub outcome: &'static str,
}

/// The inbox's outcomes, as `GET /v1/billing/events?outcome=` names them.
pub const OUTCOMES: [&str; 4] = ["pending", "processed", "ignored", "failed"];

impl App {
    /// The billing inbox in arrival order, a page at a time, by outcome and event type.
    ///
    /// # Errors
    /// `INVALID_CURSOR`; database errors.
    pub async fn billing_events(
        &self,
        outcome: Option<&'static str>,
        event_type: Option<String>,
        page: crate::lists::PageRequest,
    ) -> Result<crate::lists::Listed<InboxEntry>, AppError> {
        let scope = crate::lists::Scope::new("billing events")
            .with("outcome", outcome)
            .with("type", event_type.as_deref());
        let cursors = self.cursors();
        let window = cursors.window::<i64>(&scope, &page)?;
        let rows = projections::queries::billing_inbox(
            self.pool(),
            outcome,
            event_type.as_deref(),
            &window,
        )
        .await
        .map_err(projections::ProjectionError::from)?;
        Ok(cursors.page(&scope, &window, rows, |r| r.seq, InboxEntry::from))
    }

    /// Takes event `id` again at once: a failed one before its back-off runs out, or an ignored
    /// or processed one after what it needed was put right (every effect is idempotent). The
    /// answer names the event only: asking twice (a retried request) answers the same.
    ///
    /// # Errors
    /// 404 `BILLING_EVENT_NOT_FOUND`; database errors.
    pub async fn retry_billing_event(&self, id: &str) -> Result<Retried, AppError> {
        let row = projections::queries::retry_billing_event(self.pool(), id, self.now())
            .await
            .map_err(projections::ProjectionError::from)?
            .ok_or_else(|| {
                AppError::not_found(
                    domain::ErrorCode::BillingEventNotFound,
                    format!("no Stripe event {id:?} was received"),
                )
            })?;
        self.billing_wake().notify_one();
        Ok(Retried {
            id: row.event_id,
            event_type: row.event_type,
            outcome: "pending",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }
    fn secrets() -> WebhookSecrets {
        WebhookSecrets::new(vec!["whsec_old".into(), "whsec_new".into()])
    }
    const BODY: &[u8] = br#"{"id":"evt_1","type":"customer.subscription.updated","created":1800000000,"data":{"object":{}}}"#;

    #[test]
    fn any_v1_under_any_secret_within_tolerance_verifies() {
        for secret in ["whsec_old", "whsec_new"] {
            for t in [1_800_000_000 - 300, 1_800_000_000, 1_800_000_000 + 300] {
                let header = signature_header(secret, t, BODY);
                assert_eq!(verify(Some(&header), BODY, &secrets(), now()), Ok(()));
            }
        }
        // Several signatures (a rotation on Stripe's side, a v0 test signature): one is enough.
        let good = signature_header("whsec_new", 1_800_000_000, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1800000000,v0=abcd,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(Some(&header), BODY, &secrets(), now()), Ok(()));
    }

    #[test]
    fn a_vector_computed_elsewhere_verifies() {
        // Computed with OpenSSL, not this code:
        // printf '%s' '1800000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test -hex
        let body = br#"{"id":"evt_1"}"#;
        let header =
            "t=1800000000,v1=45705be2a45ab5acdd1395cc695e9e7073125385ec24194921c401dff44176f8";
        let only = WebhookSecrets::new(vec!["whsec_test".into()]);
        assert_eq!(verify(Some(header), body, &only, now()), Ok(()));
        assert_eq!(signature_header("whsec_test", 1_800_000_000, body), header);
    }

    #[test]
    fn a_header_of_many_signatures_is_refused_before_any_hash() {
        let mut header = String::from("t=1800000000");
        for _ in 0..=MAX_SIGNATURES {
            header.push_str(&format!(",v1={}", "00".repeat(32)));
        }
        assert_eq!(
            verify(Some(&header), BODY, &secrets(), now()),
            Err(SignatureRefused::Malformed)
        );
        assert_eq!(
            verify(
                Some("t=-9223372036854775808,v1=00"),
                BODY,
                &secrets(),
                now()
            ),
            Err(SignatureRefused::OutOfTolerance)
        );
    }

    #[test]
    fn every_altered_byte_missing_or_stale_signature_is_refused() {
        let header = signature_header("whsec_new", 1_800_000_000, BODY);
        for i in 0..BODY.len() {
            let mut body = BODY.to_vec();
            body[i] ^= 0x01;
            assert_eq!(
                verify(Some(&header), &body, &secrets(), now()),
                Err(SignatureRefused::NoMatch),
                "byte {i}"
            );
        }
        let (prefix, sig) = header.split_once(",v1=").unwrap();
        for i in 0..sig.len() {
            let mut flipped = sig.as_bytes().to_vec();
            flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
            let altered = format!("{prefix},v1={}", String::from_utf8(flipped).unwrap());
            assert!(
                verify(Some(&altered), BODY, &secrets(), now()).is_err(),
                "char {i}"
            );
        }
        let refused = |h: Option<&str>| verify(h, BODY, &secrets(), now()).unwrap_err();
        assert_eq!(refused(None), SignatureRefused::Missing);
        assert_eq!(refused(Some("")), SignatureRefused::Malformed);
        assert_eq!(refused(Some("v1=ab")), SignatureRefused::Malformed);
        assert_eq!(refused(Some("t=soon,v1=ab")), SignatureRefused::Malformed);
        assert_eq!(refused(Some("t=1,t=2,v1=ab")), SignatureRefused::Malformed);
        for t in [1_800_000_000 - 301, 1_800_000_000 + 301] {
            let stale = signature_header("whsec_new", t, BODY);
            assert_eq!(refused(Some(&stale)), SignatureRefused::OutOfTolerance);
        }
        let wrong = signature_header("whsec_other", 1_800_000_000, BODY);
        assert_eq!(refused(Some(&wrong)), SignatureRefused::NoMatch);
        assert_eq!(
            verify(Some(&header), BODY, &WebhookSecrets::default(), now()),
            Err(SignatureRefused::NoSecret)
        );
        assert_eq!(
            format!("{:?}", secrets()),
            "WebhookSecrets(2 configured)",
            "secrets never print"
        );
    }
}
