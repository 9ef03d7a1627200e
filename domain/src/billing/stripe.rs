//! Stripe's objects as the ledger reads them: lenient types parsed from the JSON of a webhook
//! event (issue #16, ADR 0022). Stripe adds fields, moves them between API versions and expands
//! ids into objects on request; none of that may fail an event. So nothing here derives
//! `Deserialize`: each field is picked from the JSON by hand, and a field that is absent, `null`
//! or of another type than expected reads as absent. Only what makes an event an event (its id,
//! type, `created` and `data.object`) is required.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Timestamp;

/// Why a body is not a Stripe event at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEvent {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the event has no usable {0}")]
    Missing(&'static str),
    #[error("the event's {0} is {1}")]
    Invalid(&'static str, &'static str),
}

/// The longest event id the inbox keeps (Stripe's are about 30 characters).
pub const MAX_EVENT_ID_CHARS: usize = 255;

/// A webhook event: its envelope and its object, still as JSON (read by [`StripeObject::of`]).
#[derive(Clone, Debug, PartialEq)]
pub struct StripeEvent {
    /// `evt_…`: what the inbox deduplicates on.
    pub id: String,
    /// `customer.subscription.updated`, `invoice.payment_failed`, ...
    pub kind: String,
    /// When Stripe created the event: what orders the facts of one subscription.
    pub created: Timestamp,
    /// The API version the event was rendered with, when it says.
    pub api_version: Option<String>,
    pub livemode: bool,
    /// `data.object`.
    pub object: Value,
}

impl StripeEvent {
    /// Parses a webhook body.
    ///
    /// # Errors
    /// [`NotAnEvent`] when the body is not JSON or lacks the envelope's four fields.
    pub fn parse(body: &[u8]) -> Result<Self, NotAnEvent> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| NotAnEvent::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Reads an event already parsed as JSON (a line of an export).
    ///
    /// # Errors
    /// [`NotAnEvent::Missing`].
    pub fn from_value(mut value: Value) -> Result<Self, NotAnEvent> {
        let id = text(&value, "id").ok_or(NotAnEvent::Missing("id"))?;
        if id.chars().count() > MAX_EVENT_ID_CHARS {
            return Err(NotAnEvent::Invalid("id", "longer than 255 characters"));
        }
        let kind = text(&value, "type").ok_or(NotAnEvent::Missing("type"))?;
        if kind.chars().count() > MAX_EVENT_ID_CHARS {
            return Err(NotAnEvent::Invalid("type", "longer than 255 characters"));
        }
        let created = instant(&value, "created").ok_or(NotAnEvent::Missing("created"))?;
        let object = value
            .get_mut("data")
            .and_then(|d| d.get_mut("object"))
            .filter(|o| o.is_object())
            .map(Value::take)
            .ok_or(NotAnEvent::Missing("data.object"))?;
        Ok(Self {
            id,
            kind,
            created,
            api_version: text(&value, "api_version"),
            livemode: value.get("livemode").and_then(Value::as_bool) == Some(true),
            object,
        })
    }
}

/// A subscription's status as Stripe names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Paused,
    /// A status this build does not know: it changes nothing.
    Other(String),
}

impl SubscriptionStatus {
    fn parse(s: &str) -> Self {
        match s {
            "trialing" => Self::Trialing,
            "active" => Self::Active,
            "past_due" => Self::PastDue,
            "unpaid" => Self::Unpaid,
            "canceled" => Self::Canceled,
            "incomplete" => Self::Incomplete,
            "incomplete_expired" => Self::IncompleteExpired,
            "paused" => Self::Paused,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One item of a subscription: a price and a quantity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionItem {
    pub price_id: Option<String>,
    pub quantity: Option<u32>,
    /// Where current API versions keep the period (`items.data[].current_period_end`).
    pub current_period_end: Option<Timestamp>,
}

/// A subscription as an event shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub customer: Option<String>,
    pub status: SubscriptionStatus,
    pub cancel_at_period_end: bool,
    pub cancel_at: Option<Timestamp>,
    /// The end of the paid period: the latest of the items' (current API versions), or the
    /// top-level field of older ones.
    pub current_period_end: Option<Timestamp>,
    pub trial_end: Option<Timestamp>,
    /// `pause_collection` is set: invoices are not collected.
    pub collection_paused: bool,
    pub items: Vec<SubscriptionItem>,
    pub metadata: BTreeMap<String, String>,
}

/// A Checkout session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutSession {
    pub id: String,
    /// `subscription`, `payment` or `setup`.
    pub mode: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub client_reference_id: Option<String>,
    pub customer_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// An invoice: which subscription it bills, and for which period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub customer: Option<String>,
    /// `parent.subscription_details.subscription` (current versions) or `subscription`.
    pub subscription: Option<String>,
    pub status: Option<String>,
    /// The latest end of the periods its lines bill (`lines.data[].period.end`): what paying
    /// it pays for.
    pub period_end: Option<Timestamp>,
}

/// A customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// The object of an event, by its `object` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripeObject {
    Subscription(Subscription),
    CheckoutSession(CheckoutSession),
    Invoice(Invoice),
    Customer(Customer),
    /// Any other object, or one without an id.
    Other(String),
}

impl StripeObject {
    /// Reads an event's object.
    pub fn of(object: &Value) -> Self {
        let kind = text(object, "object").unwrap_or_default();
        let Some(id) = text(object, "id") else {
            return Self::Other(kind);
        };
        match kind.as_str() {
            "subscription" => Self::Subscription(subscription(id, object)),
            "checkout.session" => Self::CheckoutSession(CheckoutSession {
                id,
                mode: text(object, "mode"),
                customer: reference(object, "customer"),
                subscription: reference(object, "subscription"),
                client_reference_id: text(object, "client_reference_id"),
                customer_email: text(object, "customer_email").or_else(|| {
                    object
                        .get("customer_details")
                        .and_then(|d| text(d, "email"))
                }),
                metadata: metadata(object),
            }),
            "invoice" => Self::Invoice(Invoice {
                id,
                customer: reference(object, "customer"),
                subscription: object
                    .get("parent")
                    .and_then(|p| p.get("subscription_details"))
                    .and_then(|d| reference(d, "subscription"))
                    .or_else(|| reference(object, "subscription")),
                status: text(object, "status"),
                period_end: object
                    .get("lines")
                    .and_then(|l| l.get("data"))
                    .and_then(Value::as_array)
                    .and_then(|lines| {
                        lines
                            .iter()
                            .filter_map(|line| line.get("period").and_then(|p| instant(p, "end")))
                            .max()
                    })
                    .or_else(|| instant(object, "period_end")),
            }),
            "customer" => Self::Customer(Customer {
                id,
                email: text(object, "email"),
                name: text(object, "name"),
                metadata: metadata(object),
            }),
            _ => Self::Other(kind),
        }
    }
}

fn subscription(id: String, object: &Value) -> Subscription {
    let items: Vec<SubscriptionItem> = object
        .get("items")
        .and_then(|i| i.get("data"))
        .and_then(Value::as_array)
        .map(|data| {
            data.iter()
                .map(|item| SubscriptionItem {
                    price_id: reference(item, "price"),
                    // 0 reads as absent: a license has one seat at least.
                    quantity: item
                        .get("quantity")
                        .and_then(Value::as_u64)
                        .and_then(|q| u32::try_from(q).ok())
                        .filter(|q| *q > 0),
                    current_period_end: instant(item, "current_period_end"),
                })
                .collect()
        })
        .unwrap_or_default();
    let current_period_end = items
        .iter()
        .filter_map(|i| i.current_period_end)
        .max()
        .or_else(|| instant(object, "current_period_end"));
    Subscription {
        id,
        customer: reference(object, "customer"),
        status: text(object, "status").map_or_else(
            || SubscriptionStatus::Other(String::new()),
            |s| SubscriptionStatus::parse(&s),
        ),
        cancel_at_period_end: object.get("cancel_at_period_end").and_then(Value::as_bool)
            == Some(true),
        cancel_at: instant(object, "cancel_at"),
        current_period_end,
        trial_end: instant(object, "trial_end"),
        collection_paused: object.get("pause_collection").is_some_and(Value::is_object),
        items,
        metadata: metadata(object),
    }
}

/// A string field, non-empty and free of control characters (Stripe's ids, statuses and
/// versions never hold one; a NUL could not even be stored): anything else reads as absent.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .map(str::to_owned)
}

/// An id field that Stripe may expand into the object it names.
fn reference(v: &Value, key: &str) -> Option<String> {
    let field = v.get(key)?;
    field
        .as_str()
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .map(str::to_owned)
        .or_else(|| text(field, "id"))
}

/// The last second a Stripe time may be (9999-12-31T23:59:59Z): later ones, and those before
/// 1970, read as absent. Not a date Stripe sends; one that would be stored in the log and then
/// refused by PostgreSQL (whose `timestamptz` ends in 294276) stops every projector that reads it.
const LATEST_INSTANT: i64 = 253_402_300_799;

/// A Unix-seconds field, between 1970 and the year 9999.
fn instant(v: &Value, key: &str) -> Option<Timestamp> {
    let seconds = v.get(key)?.as_i64()?;
    if !(0..=LATEST_INSTANT).contains(&seconds) {
        return None;
    }
    chrono::DateTime::from_timestamp(seconds, 0)
}

/// `metadata`: its string values.
fn metadata(v: &Value) -> BTreeMap<String, String> {
    v.get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}
