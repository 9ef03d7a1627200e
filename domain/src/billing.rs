//! Billing as the ledger understands it (issue #16, ADR 0022): a payment gateway's subscription,
//! read through the anti-corruption layer of [`stripe`], becomes a [`BillingTarget`] — the
//! license's billing state in the ledger's own words — by one pure function, [`target`]. The
//! License aggregate then appends only the differences between that target and its state
//! (`LicenseAction::SyncBilling`), so the same fact delivered twice changes nothing.
//!
//! Order: every fact carries the gateway event it came from ([`Observation`]: its `created` and
//! id). A license keeps the facts it applied ([`BillingFact`], in `SubscriptionSynced`), and its
//! billing state is [`derive`]d from them **in the gateway's order**, whatever order they came in:
//! a fact that arrives late is put in its place and the state derived again, and the license
//! appends what changed. So facts delivered in any order, with duplicates, end in the state that
//! in-order delivery gives (property-tested in `billing/tests.rs`), and an older fact never undoes
//! a newer one. Stripe's `created` has one-second resolution: two events of the same second are
//! ordered by their ids, an arbitrary but total order every node agrees on.

pub mod stripe;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use stripe::{Invoice, Subscription, SubscriptionStatus};

/// The gateway a subscription lives at (`stripe`): the seam another processor plugs into.
pub const STRIPE: &str = "stripe";

/// A gateway's price id (`price_…`), as a policy links it: 1 to 255 ASCII letters, digits, `_`
/// and `-` (Stripe's ids, and the lookup keys vendors choose, are of that alphabet).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceId(String);

impl PriceId {
    /// Reads a price id.
    ///
    /// # Errors
    /// What is wrong with it, for the caller.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 255 {
            return Err("a price id is 1 to 255 characters".to_owned());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("a price id holds ASCII letters, digits, '_' and '-' only".to_owned());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PriceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A gateway event a fact came from: what orders the facts of one license.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Observation {
    /// When the gateway created the event (compared first).
    pub created: Timestamp,
    /// The gateway's event id (`evt_…`; compared second, for events of the same second).
    pub event_id: String,
}

/// How the subscription stands, in the ledger's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Trialing or paid up.
    Good,
    /// A payment failed: the license runs on its payment grace.
    PastDue,
    /// Collection is paused: the license answers `PAUSED`.
    Paused,
    /// Ended (canceled, unpaid, or never paid): valid until `cancel_at` if one is scheduled.
    Canceled,
    /// A status that says nothing the license acts on (`incomplete`, one this build does not
    /// know): the standing stays as it is.
    Unchanged,
}

/// A license's billing state as a subscription says it should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingTarget {
    pub gateway: String,
    pub subscription_id: String,
    pub customer_id: String,
    pub standing: Standing,
    /// The end of a trial the subscription is in.
    pub trial_ends_at: Option<Timestamp>,
    /// The end of the period paid (or trialed) for: the license runs at least until then.
    pub paid_until: Option<Timestamp>,
    /// A cancellation scheduled for the end of the period (or a date), if any.
    pub cancel_at: Option<Timestamp>,
    /// The quantity of the subscription's first item with one: seats are quantity × the
    /// policy's seats.
    pub quantity: Option<u32>,
    /// A fact about one payment (an invoice paid or failed), not about the subscription: it
    /// moves the payment grace and the paid period, and says nothing of trial, pause or
    /// cancellation (an invoice does not show them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub payment_only: bool,
}

/// Whether the ledger acts on Stripe events of type `kind`: a subscription's, a completed
/// checkout, an invoice paid or failed, a customer created or updated. Every other type is
/// stored and `ignored` without its body being read.
pub fn acted_on(kind: &str) -> bool {
    kind.starts_with("customer.subscription.")
        || matches!(
            kind,
            "checkout.session.completed"
                | "invoice.paid"
                | "invoice.payment_failed"
                | "customer.created"
                | "customer.updated"
        )
}

/// What subscription `sub`, as an event shows it, says of the license's billing state.
pub fn target(sub: &Subscription) -> BillingTarget {
    let standing = match &sub.status {
        _ if sub.collection_paused
            && !matches!(
                sub.status,
                SubscriptionStatus::Canceled
                    | SubscriptionStatus::Unpaid
                    | SubscriptionStatus::IncompleteExpired
            ) =>
        {
            Standing::Paused
        }
        SubscriptionStatus::Trialing | SubscriptionStatus::Active => Standing::Good,
        SubscriptionStatus::PastDue => Standing::PastDue,
        SubscriptionStatus::Paused => Standing::Paused,
        SubscriptionStatus::Unpaid
        | SubscriptionStatus::Canceled
        | SubscriptionStatus::IncompleteExpired => Standing::Canceled,
        SubscriptionStatus::Incomplete | SubscriptionStatus::Other(_) => Standing::Unchanged,
    };
    let cancel_at = if sub.cancel_at_period_end {
        sub.cancel_at.or(sub.current_period_end)
    } else {
        sub.cancel_at
    };
    BillingTarget {
        gateway: STRIPE.to_owned(),
        subscription_id: sub.id.clone(),
        customer_id: sub.customer.clone().unwrap_or_default(),
        standing,
        trial_ends_at: sub
            .trial_end
            .filter(|_| sub.status == SubscriptionStatus::Trialing),
        paid_until: sub.current_period_end,
        cancel_at,
        quantity: sub.items.iter().find_map(|i| i.quantity),
        payment_only: false,
    }
}

/// What an invoice event says of the license's billing state: `invoice.paid` that the period it
/// billed is paid, `invoice.payment_failed` that a payment failed (grace starts if it has not).
/// `None` for an invoice of no subscription, or another event.
pub fn target_of_invoice(kind: &str, invoice: &Invoice) -> Option<BillingTarget> {
    let standing = match kind {
        "invoice.paid" => Standing::Good,
        "invoice.payment_failed" => Standing::PastDue,
        _ => return None,
    };
    Some(BillingTarget {
        gateway: STRIPE.to_owned(),
        subscription_id: invoice.subscription.clone()?,
        customer_id: invoice.customer.clone().unwrap_or_default(),
        standing,
        trial_ends_at: None,
        paid_until: invoice.period_end,
        cancel_at: None,
        quantity: None,
        payment_only: true,
    })
}

/// One fact a license applied: what a gateway event said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingFact {
    pub observed: Observation,
    pub target: BillingTarget,
}

/// The billing state a license's facts give, read in the gateway's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The subscription followed (`gateway`, `subscription_id`, `customer_id` of its newest
    /// fact).
    pub link: (String, String, String),
    /// The newest trial end a fact showed, if any did.
    pub trial_ends_at: Option<Timestamp>,
    /// The newest fact that says how the subscription stands is a trial.
    pub trialing: bool,
    /// Grace runs from the first payment failure after the last fact in good standing.
    pub payment_grace_until: Option<Timestamp>,
    /// The newest fact that says so is paused (canceled or unknown standings say nothing).
    pub paused: bool,
    /// The newest fact that says how the subscription stands says it ended. Not final by
    /// itself: Stripe brings an `unpaid` subscription back to `active` once it is paid.
    pub canceled: bool,
    /// The scheduled cancellation of the newest fact that says how the subscription stands
    /// (one of an unknown standing, or a checkout's link, says nothing of it).
    pub cancel_at: Option<Timestamp>,
    /// How long the license runs: the latest period paid for (facts in good standing), or for a
    /// past-due fact its grace at most (a period not collected is not paid for; its grace is).
    pub paid_until: Option<Timestamp>,
    /// The newest quantity a fact showed.
    pub quantity: Option<u32>,
}

/// The subscription (`gateway`, `subscription_id`) a license whose facts are `facts` (sorted)
/// follows: a license follows one running subscription at a time. That is the first one, in
/// the gateway's order of their first facts, that runs: its newest fact saying how it stands
/// does not say it ended. One whose facts never said how it stands (a checkout's link alone, an
/// `incomplete` subscription never paid) does not run. When none runs, it is the one whose
/// standing was stated last (else the newest fact's, a checkout's link).
///
/// A function of the set of facts, not of the order they arrived in. A new subscription
/// recorded on a license while another runs takes over when the other ends, with the state its
/// own facts give, even when its facts are older than the end. Two running subscriptions that
/// name one license keep the first, also when the first comes back (Stripe's `unpaid`, read as
/// ended, paid after all).
pub fn followed(facts: &[BillingFact]) -> Option<(&str, &str)> {
    // Each subscription in order of its first fact: whether it runs, once a fact said.
    let mut subscriptions: Vec<((&str, &str), Option<bool>)> = Vec::new();
    for fact in facts {
        let key = subscription_of(fact);
        let at = match subscriptions.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                subscriptions.push((key, None));
                subscriptions.len() - 1
            }
        };
        if !fact.target.payment_only && fact.target.standing != Standing::Unchanged {
            subscriptions[at].1 = Some(fact.target.standing != Standing::Canceled);
        }
    }
    subscriptions
        .iter()
        .find(|(_, runs)| *runs == Some(true))
        .map(|(key, _)| *key)
        .or_else(|| {
            facts
                .iter()
                .rev()
                .find(|f| !f.target.payment_only && f.target.standing != Standing::Unchanged)
                .or(facts.last())
                .map(subscription_of)
        })
}

/// A quantity of 0 says nothing: a license has a seat at least.
fn positive(quantity: Option<u32>) -> Option<u32> {
    quantity.filter(|q| *q > 0)
}

fn subscription_of(fact: &BillingFact) -> (&str, &str) {
    (
        fact.target.gateway.as_str(),
        fact.target.subscription_id.as_str(),
    )
}

/// The billing state `facts` give (sorted by [`Observation`]; `None` when there is none), with
/// `payment_grace_days` of grace after a failure: that of the subscription the license follows
/// ([`followed`]), from its facts alone, but for the period paid, which every subscription's
/// facts extend.
pub fn derive(facts: &[BillingFact], payment_grace_days: u32) -> Option<Derived> {
    let (gateway, subscription) = followed(facts)?;
    let of_followed =
        |f: &&BillingFact| f.target.gateway == gateway && f.target.subscription_id == subscription;
    let newest = facts.iter().rev().find(of_followed)?;
    let mut derived = Derived {
        link: (
            newest.target.gateway.clone(),
            newest.target.subscription_id.clone(),
            newest.target.customer_id.clone(),
        ),
        trial_ends_at: None,
        trialing: false,
        payment_grace_until: None,
        paused: false,
        canceled: false,
        cancel_at: None,
        paid_until: None,
        quantity: None,
    };
    let (mut other_quantity, mut other_trial_end) = (None, None);
    for fact in facts {
        let t = &fact.target;
        let grace = fact.observed.created + chrono::Duration::days(i64::from(payment_grace_days));
        if !of_followed(&fact) {
            // A period another subscription paid counts too: the license's end only moves
            // forward, so what counts must not depend on which subscription was followed
            // when a fact arrived.
            match t.standing {
                Standing::Good => derived.paid_until = derived.paid_until.max(t.paid_until),
                Standing::PastDue => {
                    derived.paid_until = derived.paid_until.max(t.paid_until.map(|p| p.min(grace)));
                }
                _ => {}
            }
            // So does the newest quantity, for a followed subscription that shows none (seats
            // set by one subscription are not undone by another that says nothing of them).
            // Likewise the trial's end, a date the license keeps once shown.
            if !t.payment_only {
                other_quantity = positive(t.quantity).or(other_quantity);
                other_trial_end = t.trial_ends_at.or(other_trial_end);
            }
            continue;
        }
        if t.payment_only {
            // The period an invoice paid counts whatever came before it (the license's end
            // only ever moves forward, so what counts must not depend on order); the grace it
            // starts or ends does not apply to a subscription that has ended.
            match t.standing {
                Standing::Good => {
                    derived.paid_until = derived.paid_until.max(t.paid_until);
                    if !derived.canceled {
                        derived.payment_grace_until = None;
                    }
                }
                Standing::PastDue => {
                    derived.paid_until = derived.paid_until.max(t.paid_until.map(|p| p.min(grace)));
                    if !derived.canceled {
                        derived.payment_grace_until = derived.payment_grace_until.or(Some(grace));
                    }
                }
                _ => {}
            }
            continue;
        }
        derived.trial_ends_at = t.trial_ends_at.or(derived.trial_ends_at);
        derived.quantity = positive(t.quantity).or(derived.quantity);
        if t.standing != Standing::Unchanged {
            // An ended subscription keeps the end it was scheduled for (valid until then);
            // one canceled at once has none to keep.
            derived.cancel_at = match t.standing {
                Standing::Canceled => t.cancel_at.or(derived.cancel_at),
                _ => t.cancel_at,
            };
            derived.trialing = t.trial_ends_at.is_some();
            derived.canceled = t.standing == Standing::Canceled;
        }
        match t.standing {
            Standing::Good => {
                derived.payment_grace_until = None;
                derived.paused = false;
            }
            Standing::PastDue => {
                derived.paused = false;
                derived.payment_grace_until = derived.payment_grace_until.or(Some(grace));
            }
            Standing::Paused => derived.paused = true,
            Standing::Canceled | Standing::Unchanged => {}
        }
        match t.standing {
            Standing::Good => derived.paid_until = derived.paid_until.max(t.paid_until),
            Standing::PastDue => {
                derived.paid_until = derived.paid_until.max(t.paid_until.map(|p| p.min(grace)));
            }
            _ => {}
        }
    }
    derived.quantity = derived.quantity.or(other_quantity);
    derived.trial_ends_at = derived.trial_ends_at.or(other_trial_end);
    Some(derived)
}
