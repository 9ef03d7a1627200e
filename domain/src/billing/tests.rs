//! The anti-corruption layer and the billing decision: Stripe's JSON read leniently, statuses
//! mapped to standings, and — property-tested — facts delivered in any order with duplicates
//! ending in the license state in-order delivery gives.

use proptest::prelude::*;
use serde_json::json;

use super::stripe::{StripeEvent, StripeObject, SubscriptionStatus};
use super::*;
use crate::license::{License, LicenseAction, LicenseCommand};

fn at(seconds: i64) -> Timestamp {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap()
}

/// A subscription event as Stripe renders it with a current API version: the period on the
/// items, fields this build does not know, an expanded customer.
fn subscription_event(status: &str, created: i64) -> serde_json::Value {
    json!({
        "id": format!("evt_{created}"),
        "object": "event",
        "api_version": "2025-08-27.basil",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "type": "customer.subscription.updated",
        "data": {"object": {
            "id": "sub_1", "object": "subscription", "status": status,
            "customer": {"id": "cus_1", "object": "customer", "email": "ap@acme.example"},
            "cancel_at_period_end": false, "cancel_at": null,
            "trial_end": 1_700_000_000,
            "pause_collection": null,
            "billing_mode": {"type": "flexible"},
            "some_future_field": {"nested": [1, 2, 3]},
            "items": {"object": "list", "data": [
                {"id": "si_1", "quantity": 2, "current_period_end": 1_702_592_000,
                 "price": {"id": "price_1", "object": "price", "unit_amount": 2000}}
            ]},
            "metadata": {"organization_id": "o-1", "n": 7}
        }}
    })
}

#[test]
fn a_current_subscription_event_reads_with_its_period_on_the_items() {
    let event = StripeEvent::from_value(subscription_event("trialing", 1_699_000_000)).unwrap();
    assert_eq!(event.id, "evt_1699000000");
    assert_eq!(event.kind, "customer.subscription.updated");
    assert_eq!(event.created, at(1_699_000_000));
    let StripeObject::Subscription(sub) = StripeObject::of(&event.object) else {
        panic!("a subscription");
    };
    assert_eq!(sub.customer.as_deref(), Some("cus_1"));
    assert_eq!(sub.status, SubscriptionStatus::Trialing);
    assert_eq!(sub.current_period_end, Some(at(1_702_592_000)));
    assert_eq!(sub.items[0].price_id.as_deref(), Some("price_1"));
    assert_eq!(sub.items[0].quantity, Some(2));
    // Only string metadata is kept.
    assert_eq!(sub.metadata.len(), 1);
    let t = target(&sub);
    assert_eq!(t.standing, Standing::Good);
    assert_eq!(t.trial_ends_at, Some(at(1_700_000_000)));
    assert_eq!(t.paid_until, Some(at(1_702_592_000)));
    assert_eq!(t.quantity, Some(2));
}

#[test]
fn older_api_versions_keep_the_period_at_the_top_and_odd_fields_read_as_absent() {
    let mut event = subscription_event("past_due", 1_699_000_000);
    let object = &mut event["data"]["object"];
    object["items"]["data"][0]
        .as_object_mut()
        .unwrap()
        .remove("current_period_end");
    object["current_period_end"] = json!(1_705_000_000);
    object["customer"] = json!("cus_2");
    object["cancel_at_period_end"] = json!("yes"); // not a bool: absent, i.e. false
    object["trial_end"] = json!("soon"); // not a number: absent
    let event = StripeEvent::from_value(event).unwrap();
    let StripeObject::Subscription(sub) = StripeObject::of(&event.object) else {
        panic!("a subscription");
    };
    assert_eq!(sub.current_period_end, Some(at(1_705_000_000)));
    assert_eq!(sub.customer.as_deref(), Some("cus_2"));
    assert!(!sub.cancel_at_period_end);
    assert_eq!(sub.trial_end, None);
    assert_eq!(target(&sub).standing, Standing::PastDue);
}

#[test]
fn only_the_envelope_is_required() {
    assert!(matches!(
        StripeEvent::parse(b"not json"),
        Err(stripe::NotAnEvent::NotJson(_))
    ));
    for missing in ["id", "type", "created"] {
        let mut e = subscription_event("active", 1);
        e.as_object_mut().unwrap().remove(missing);
        assert_eq!(
            StripeEvent::from_value(e),
            Err(stripe::NotAnEvent::Missing(match missing {
                "id" => "id",
                "type" => "type",
                _ => "created",
            }))
        );
    }
    let mut e = subscription_event("active", 1);
    e["data"] = json!({"previous_attributes": {}});
    assert_eq!(
        StripeEvent::from_value(e),
        Err(stripe::NotAnEvent::Missing("data.object"))
    );
    // An unknown object type is an object all the same.
    let mut e = subscription_event("active", 1);
    e["data"]["object"]["object"] = json!("radar.early_fraud_warning");
    let e = StripeEvent::from_value(e).unwrap();
    assert_eq!(
        StripeObject::of(&e.object),
        StripeObject::Other("radar.early_fraud_warning".into())
    );
}

#[test]
fn invoices_name_their_subscription_where_each_api_version_puts_it() {
    let current = json!({"id": "in_1", "object": "invoice", "customer": "cus_1",
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": "sub_9", "metadata": null}}});
    let older = json!({"id": "in_2", "object": "invoice", "subscription": "sub_8"});
    let sub = |v| match StripeObject::of(&v) {
        StripeObject::Invoice(i) => i.subscription,
        other => panic!("{other:?}"),
    };
    assert_eq!(sub(current).as_deref(), Some("sub_9"));
    assert_eq!(sub(older).as_deref(), Some("sub_8"));
}

#[test]
fn statuses_map_to_standings() {
    let mut sub = match StripeObject::of(&subscription_event("active", 1)["data"]["object"]) {
        StripeObject::Subscription(s) => s,
        other => panic!("{other:?}"),
    };
    for (status, standing) in [
        ("trialing", Standing::Good),
        ("active", Standing::Good),
        ("past_due", Standing::PastDue),
        ("paused", Standing::Paused),
        ("unpaid", Standing::Canceled),
        ("canceled", Standing::Canceled),
        ("incomplete_expired", Standing::Canceled),
        ("incomplete", Standing::Unchanged),
        ("something_new", Standing::Unchanged),
    ] {
        sub.status = match status {
            "trialing" => SubscriptionStatus::Trialing,
            "active" => SubscriptionStatus::Active,
            "past_due" => SubscriptionStatus::PastDue,
            "paused" => SubscriptionStatus::Paused,
            "unpaid" => SubscriptionStatus::Unpaid,
            "canceled" => SubscriptionStatus::Canceled,
            "incomplete_expired" => SubscriptionStatus::IncompleteExpired,
            "incomplete" => SubscriptionStatus::Incomplete,
            other => SubscriptionStatus::Other(other.into()),
        };
        assert_eq!(target(&sub).standing, standing, "{status}");
    }
    // Collection paused on an active subscription: paused; on a canceled one: canceled.
    sub.collection_paused = true;
    sub.status = SubscriptionStatus::Active;
    assert_eq!(target(&sub).standing, Standing::Paused);
    sub.status = SubscriptionStatus::Canceled;
    assert_eq!(target(&sub).standing, Standing::Canceled);
    // Cancel at period end: scheduled for the period's end.
    sub.collection_paused = false;
    sub.status = SubscriptionStatus::Active;
    sub.cancel_at_period_end = true;
    assert_eq!(target(&sub).cancel_at, sub.current_period_end);
}

// ----- convergence -----

/// The license the facts apply to: a 30-day policy with 7 days of payment grace, issued at 0.
fn license() -> License {
    let mut terms = crate::license::tests::terms();
    terms.payment_grace_days = 7;
    crate::license::tests::issued_at(terms, at(0), Some(at(30 * 86_400)))
}

fn apply(license: &mut License, fact: &BillingFact) {
    let events = license
        .decide(&LicenseCommand {
            license_id: crate::license::tests::lid(),
            at: at(0),
            action: LicenseAction::SyncBilling {
                target: fact.target.clone(),
                observed: fact.observed.clone(),
            },
        })
        .unwrap();
    for event in events {
        license.fold(event);
    }
}

prop_compose! {
    /// One fact of a subscription's history.
    fn fact_at(created: i64)(
        standing in prop_oneof![
            4 => Just(Standing::Good),
            2 => Just(Standing::PastDue),
            1 => Just(Standing::Paused),
            1 => Just(Standing::Canceled),
            1 => Just(Standing::Unchanged),
        ],
        trial in proptest::option::of(0i64..60),
        period in 0i64..400,
        cancel in proptest::option::of(0i64..400),
        quantity in prop_oneof![
            4 => (1u32..5).prop_map(Some),
            2 => Just(None),
            1 => Just(Some(0)),
            1 => Just(Some(400_000)),
            1 => Just(Some(u32::MAX)),
        ],
        same_second in any::<bool>(),
        nonce in any::<u32>(),
        // An invoice paid or failed, among the subscription's own events.
        invoice in proptest::bool::weighted(0.25),
    ) -> BillingFact {
        // Some facts share their second with the previous one (facts are 10 s apart): ordered
        // by event id then.
        let created = if same_second && created > 1_000 { created - 10 } else { created };
        BillingFact {
            observed: Observation {
                created: at(created),
                // Distinct events have distinct ids (one id is one delivery of the same event).
                event_id: format!("evt_{created}_{nonce:08x}"),
            },
            target: BillingTarget {
                gateway: STRIPE.into(),
                subscription_id: "sub_1".into(),
                customer_id: "cus_1".into(),
                standing,
                trial_ends_at: trial.map(|d| at(d * 86_400)),
                paid_until: Some(at(period * 86_400)),
                cancel_at: cancel.map(|d| at(d * 86_400)),
                quantity,
                payment_only: invoice,
            },
        }
    }
}

fn history() -> impl Strategy<Value = Vec<BillingFact>> {
    (1usize..12).prop_flat_map(|n| {
        (0..n)
            .map(|i| fact_at(1_000 + 10 * i64::try_from(i).unwrap()))
            .collect::<Vec<_>>()
    })
}

/// The license `facts` make delivered in the gateway's order, each once; and how many distinct
/// facts that is.
fn in_order(facts: &[BillingFact]) -> (License, usize) {
    let mut sorted = facts.to_vec();
    sorted.sort_by(|a, b| a.observed.cmp(&b.observed));
    sorted.dedup_by(|a, b| a.observed == b.observed);
    let mut license = license();
    for fact in &sorted {
        apply(&mut license, fact);
    }
    (license, sorted.len())
}

/// `items` as a gateway might deliver them: with the `duplicates` picked again, in an order
/// shuffled by a seeded Fisher-Yates (proptest shrinks the seed).
fn delivery<T: Clone>(items: &[T], duplicates: &[proptest::sample::Index], seed: u64) -> Vec<T> {
    let mut delivered = items.to_vec();
    for d in duplicates {
        delivered.push(items[d.index(items.len())].clone());
    }
    let mut state = seed | 1;
    for i in (1..delivered.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap();
        delivered.swap(i, j);
    }
    delivered
}

/// The license `facts` make delivered shuffled with the `duplicates` again, and delivered in
/// order once each; the shuffled one holds each distinct fact once.
fn both_deliveries(
    facts: &[BillingFact],
    duplicates: &[proptest::sample::Index],
    seed: u64,
) -> (License, License) {
    let (in_order, distinct) = in_order(facts);
    let mut shuffled = license();
    for fact in &delivery(facts, duplicates, seed) {
        apply(&mut shuffled, fact);
    }
    assert_eq!(shuffled.state().unwrap().billing.facts.len(), distinct);
    (shuffled, in_order)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Delivered shuffled with ~30% duplicates, a history ends where in-order delivery does:
    /// the same license state (hence the same validation answer and offline-token limit), and
    /// each fact recorded exactly once.
    #[test]
    fn any_order_with_duplicates_converges_to_in_order_delivery(
        facts in history(),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        seed in any::<u64>(),
    ) {
        let (shuffled, in_order) = both_deliveries(&facts, &duplicates, seed);
        prop_assert_eq!(&shuffled, &in_order);
        let state = shuffled.state().unwrap();
        let now = at(200 * 86_400);
        prop_assert_eq!(
            crate::validation::decide(state, now, None, &[]),
            crate::validation::decide(in_order.state().unwrap(), now, None, &[])
        );
    }
}

fn fact(created: i64, standing: Standing, period_days: i64, quantity: Option<u32>) -> BillingFact {
    BillingFact {
        observed: Observation {
            created: at(created),
            event_id: format!("evt_{created}"),
        },
        target: BillingTarget {
            gateway: STRIPE.into(),
            subscription_id: "sub_1".into(),
            customer_id: "cus_1".into(),
            standing,
            trial_ends_at: None,
            paid_until: Some(at(period_days * 86_400)),
            cancel_at: None,
            quantity,
            payment_only: false,
        },
    }
}

#[test]
fn an_unpaid_subscription_paid_after_all_is_live_again() {
    let mut l = license();
    apply(&mut l, &fact(10, Standing::Canceled, 40, None));
    assert!(l.state().unwrap().billing.canceled);
    apply(&mut l, &fact(20, Standing::Good, 60, None));
    let s = l.state().unwrap();
    assert!(!s.billing.canceled, "reactivated");
    assert_eq!(s.expires_at, Some(at(60 * 86_400)));
    // A past-due period is not paid: the license runs through its grace at most (7 days from
    // the failure), not to the period's end.
    apply(&mut l, &fact(55 * 86_400, Standing::PastDue, 90, None));
    assert_eq!(l.state().unwrap().expires_at, Some(at(62 * 86_400)));
}

#[test]
fn seats_follow_the_quantity_but_not_below_what_is_in_use() {
    let mut l = license();
    // The standard license: 3 seats per unit of quantity.
    apply(&mut l, &fact(10, Standing::Good, 40, Some(2)));
    assert_eq!(l.state().unwrap().seats.get(), 6);
    for n in 0..4u128 {
        let events = l
            .decide(&LicenseCommand {
                license_id: crate::license::tests::lid(),
                at: at(11),
                action: LicenseAction::Activate {
                    installation_id: crate::ids::InstallationId::from_uuid(uuid::Uuid::from_u128(
                        900 + n,
                    )),
                    fingerprint: crate::values::Fingerprint::parse(&format!("m{n}")).unwrap(),
                    hostname: None,
                    platform: None,
                    environment: crate::values::Environment::Production,
                },
            })
            .unwrap();
        for e in events {
            l.fold(e);
        }
    }
    // Down to one unit (3 seats) with 4 machines active: 4 seats until one is deactivated.
    apply(&mut l, &fact(20, Standing::Good, 40, Some(1)));
    assert_eq!(l.state().unwrap().seats.get(), 4);
}

/// An invoice as current API versions render it: the subscription under `parent`, the period on
/// the lines.
fn invoice_object(subscription_at_top: bool) -> serde_json::Value {
    let mut invoice = json!({
        "id": "in_1", "object": "invoice", "customer": "cus_1", "status": "paid",
        "billing_reason": "subscription_cycle", "amount_paid": 2000,
        "parent": {"type": "subscription_details",
                   "subscription_details": {"metadata": {}, "subscription": "sub_1"}},
        "period_end": 1_699_000_000,
        "lines": {"object": "list", "data": [
            {"id": "il_1", "object": "line_item", "period": {"start": 1_700_000_000, "end": 1_702_592_000}},
            {"id": "il_2", "object": "line_item", "period": {"start": 1_700_000_000, "end": 1_701_000_000}},
        ]},
    });
    if subscription_at_top {
        invoice.as_object_mut().unwrap().remove("parent");
        invoice["subscription"] = json!({"id": "sub_1", "object": "subscription"});
    }
    invoice
}

#[test]
fn an_invoice_reads_its_subscription_and_the_period_its_lines_bill() {
    for at_top in [false, true] {
        let StripeObject::Invoice(invoice) = StripeObject::of(&invoice_object(at_top)) else {
            panic!("an invoice");
        };
        assert_eq!(invoice.subscription.as_deref(), Some("sub_1"));
        assert_eq!(invoice.period_end, Some(at(1_702_592_000)));
        let paid = target_of_invoice("invoice.paid", &invoice).unwrap();
        assert_eq!(paid.standing, Standing::Good);
        assert!(paid.payment_only);
        assert_eq!(paid.paid_until, Some(at(1_702_592_000)));
        assert_eq!(
            target_of_invoice("invoice.payment_failed", &invoice).map(|t| t.standing),
            Some(Standing::PastDue)
        );
        assert_eq!(target_of_invoice("invoice.finalized", &invoice), None);
    }
    // No subscription: a one-off invoice, nothing to say of a license.
    let mut lone = invoice_object(false);
    lone.as_object_mut().unwrap().remove("parent");
    let StripeObject::Invoice(lone) = StripeObject::of(&lone) else {
        panic!("an invoice");
    };
    assert_eq!(target_of_invoice("invoice.paid", &lone), None);
}

#[test]
fn a_paid_invoice_recovers_and_renews_but_keeps_trial_pause_and_cancellation() {
    let fact = |created: i64, target: BillingTarget| BillingFact {
        observed: Observation {
            created: at(created),
            event_id: format!("evt_{created}"),
        },
        target,
    };
    let subscription = |standing, cancel_at: Option<i64>| BillingTarget {
        gateway: STRIPE.into(),
        subscription_id: "sub_1".into(),
        customer_id: "cus_1".into(),
        standing,
        trial_ends_at: None,
        paid_until: Some(at(100 * 86_400)),
        cancel_at: cancel_at.map(at),
        quantity: None,
        payment_only: false,
    };
    let StripeObject::Invoice(invoice) = StripeObject::of(&invoice_object(false)) else {
        panic!("an invoice");
    };
    let failed = target_of_invoice("invoice.payment_failed", &invoice).unwrap();
    let paid = target_of_invoice("invoice.paid", &invoice).unwrap();

    // Scheduled to cancel, then a payment fails and is paid: the cancellation stands.
    let facts = [
        fact(1_000, subscription(Standing::Good, Some(9_000_000))),
        fact(2_000, failed.clone()),
    ];
    let d = derive(&facts, 7).unwrap();
    assert_eq!(d.payment_grace_until, Some(at(2_000 + 7 * 86_400)));
    assert_eq!(d.cancel_at, Some(at(9_000_000)));
    let facts = [
        facts[0].clone(),
        facts[1].clone(),
        fact(3_000, paid.clone()),
    ];
    let d = derive(&facts, 7).unwrap();
    assert_eq!(d.payment_grace_until, None);
    assert_eq!(d.cancel_at, Some(at(9_000_000)));
    assert_eq!(d.paid_until, Some(at(1_702_592_000)));

    // Paused stays paused; an ended subscription is not revived by a late payment (the period
    // paid still counts: a license's end never moves back, whatever the order).
    let paused = [
        fact(1_000, subscription(Standing::Paused, None)),
        fact(2_000, paid.clone()),
    ];
    assert!(derive(&paused, 7).unwrap().paused);
    let ended = [
        fact(1_000, subscription(Standing::Canceled, None)),
        fact(2_000, failed),
        fact(3_000, paid),
    ];
    let d = derive(&ended, 7).unwrap();
    assert!(d.canceled);
    assert_eq!(d.payment_grace_until, None);
    assert_eq!(d.paid_until, Some(at(1_702_592_000)));
}

#[test]
fn ids_with_control_characters_or_too_long_are_not_events() {
    let event = |id: &str| json!({"id": id, "type": "x", "created": 5, "data": {"object": {"id": "cus\u{0}1", "object": "customer"}}});
    assert!(StripeEvent::from_value(event("evt_ok")).is_ok());
    for bad in ["evt\u{0}x", "evt\nx", &"e".repeat(256)] {
        assert!(StripeEvent::from_value(event(bad)).is_err(), "{bad:?}");
    }
    assert!(StripeEvent::from_value(event(&"é".repeat(255))).is_ok());
    // A customer id with a NUL is no id: the object reads as one without.
    let parsed = StripeEvent::from_value(event("evt_ok")).unwrap();
    assert_eq!(
        StripeObject::of(&parsed.object),
        StripeObject::Other("customer".into())
    );
    // Nested deeper than serde_json's limit: not an event.
    let deep = format!(
        r#"{{"id":"evt_1","type":"x","created":5,"data":{{"object":{{"a":{}1{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(StripeEvent::parse(deep.as_bytes()).is_err());
}

// ----- the same property from Stripe's JSON, through the anti-corruption layer -----

prop_compose! {
    /// One Stripe event of a subscription's history, as JSON: a subscription event in any
    /// status (with a scheduled end, collection paused, a trial, a quantity), or an invoice
    /// paid or failed.
    fn stripe_event_at(created: i64)(
        invoice in proptest::bool::weighted(0.25),
        paid in any::<bool>(),
        status in proptest::sample::select(vec![
            "trialing", "active", "active", "past_due", "unpaid", "canceled", "paused",
            "incomplete", "incomplete_expired",
        ]),
        period in 0i64..400,
        cancel_at_period_end in proptest::bool::weighted(0.2),
        collection_paused in proptest::bool::weighted(0.1),
        trial in 1i64..60,
        quantity in 1u64..5,
        same_second in any::<bool>(),
        nonce in any::<u32>(),
    ) -> serde_json::Value {
        let created = if same_second && created > 1_000 { created - 10 } else { created };
        let object = if invoice {
            json!({"id": format!("in_{nonce}"), "object": "invoice", "customer": "cus_1",
                   "status": if paid { "paid" } else { "open" },
                   "parent": {"type": "subscription_details",
                              "subscription_details": {"subscription": "sub_1"}},
                   "lines": {"object": "list", "data": [
                       {"object": "line_item", "period": {"start": 0, "end": period * 86_400}}]}})
        } else {
            json!({"id": "sub_1", "object": "subscription", "status": status, "customer": "cus_1",
                   "cancel_at_period_end": cancel_at_period_end, "cancel_at": null,
                   "trial_end": trial * 86_400,
                   "pause_collection": if collection_paused {
                       json!({"behavior": "void"})
                   } else {
                       json!(null)
                   },
                   "items": {"object": "list", "data": [
                       {"object": "subscription_item", "quantity": quantity,
                        "current_period_end": period * 86_400, "price": {"id": "price_1"}}]}})
        };
        let kind = match (invoice, paid) {
            (true, true) => "invoice.paid",
            (true, false) => "invoice.payment_failed",
            (false, _) => "customer.subscription.updated",
        };
        json!({"id": format!("evt_{created}_{nonce:08x}"), "object": "event", "type": kind,
               "created": created, "livemode": false, "data": {"object": object}})
    }
}

/// What the consumer makes of one event: the fact it applies, if any.
fn fact_of(event: &serde_json::Value) -> Option<BillingFact> {
    let event = StripeEvent::from_value(event.clone()).unwrap();
    let target = match StripeObject::of(&event.object) {
        StripeObject::Subscription(sub) => target(&sub),
        StripeObject::Invoice(invoice) => target_of_invoice(&event.kind, &invoice)?,
        _ => return None,
    };
    Some(BillingFact {
        observed: Observation {
            created: event.created,
            event_id: event.id,
        },
        target,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Stripe's events of random subscription histories (trial, active, past due, unpaid,
    /// paused, canceled or scheduled to cancel, quantities, invoices), read by the
    /// anti-corruption layer and delivered shuffled with ~30% duplicates, end where in-order
    /// delivery does: the same license, validation answer and offline-token limit at several
    /// instants, each Stripe event's fact recorded once.
    #[test]
    fn stripe_histories_in_any_order_with_duplicates_converge(
        events in (1usize..14).prop_flat_map(|n| {
            (0..n)
                .map(|i| stripe_event_at(1_000 + 10 * i64::try_from(i).unwrap()))
                .collect::<Vec<_>>()
        }),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        seed in any::<u64>(),
    ) {
        let facts: Vec<BillingFact> = events.iter().filter_map(fact_of).collect();
        let (in_order, distinct) = in_order(&facts);

        let mut shuffled = license();
        for event in &delivery(&events, &duplicates, seed) {
            if let Some(fact) = fact_of(event) {
                apply(&mut shuffled, &fact);
            }
        }
        prop_assert_eq!(&shuffled, &in_order);
        let (a, b) = (shuffled.state().unwrap(), in_order.state().unwrap());
        prop_assert_eq!(a.billing.facts.len(), distinct);
        prop_assert_eq!(crate::validation::usable_until(a), crate::validation::usable_until(b));
        for day in [0, 30, 61, 200, 500] {
            let now = at(day * 86_400 + 3_600);
            prop_assert_eq!(
                crate::validation::decide(a, now, None, &[]),
                crate::validation::decide(b, now, None, &[])
            );
        }
    }
}

#[test]
fn in_a_gateway_trials_slack_the_license_validates_reads_trialing_and_takes_no_offline_token() {
    let mut l = license();
    let mut trial = fact(10, Standing::Good, 20, None);
    trial.target.trial_ends_at = Some(at(20 * 86_400));
    apply(&mut l, &trial);
    let state = l.state().unwrap();
    let in_slack = at(20 * 86_400 + 3_600);
    assert!(crate::validation::decide(state, in_slack, None, &[]).valid());
    assert_eq!(
        crate::status::status_at(state, in_slack),
        crate::status::LicenseStatus::Trialing
    );
    let refused = l.decide(&LicenseCommand {
        license_id: crate::license::tests::lid(),
        at: in_slack,
        action: LicenseAction::IssueOfflineToken {
            jti: uuid::Uuid::from_u128(1),
            kind: crate::values::OfflineTokenKind::Offline,
            fingerprint: None,
        },
    });
    assert_eq!(
        refused,
        Err(crate::DomainError::LicenseNotValid(
            crate::validation::ValidationCode::TrialExpired
        ))
    );
    // After the slack: expired everywhere.
    let after = at(20 * 86_400) + crate::validation::GATEWAY_TRIAL_SLACK;
    assert!(!crate::validation::decide(state, after, None, &[]).valid());
    assert_eq!(
        crate::status::status_at(state, after),
        crate::status::LicenseStatus::Expired
    );
}

#[test]
fn a_license_follows_one_live_subscription_and_the_next_takes_over_when_it_ends() {
    let of = |created: i64, sub: &str, standing: Standing| {
        let mut f = fact(created, standing, 40, None);
        f.target.subscription_id = sub.into();
        f.observed.event_id = format!("evt_{sub}_{created}");
        f
    };
    let follows = |l: &License| {
        let billing = &l.state().unwrap().billing;
        (
            billing.subscription.as_ref().unwrap().1.clone(),
            billing.canceled,
        )
    };
    let mut l = license();
    apply(&mut l, &of(100, "sub_x", Standing::Good));
    // A second subscription while sub_x runs: recorded, not followed.
    apply(&mut l, &of(200, "sub_y", Standing::Good));
    assert_eq!(follows(&l), ("sub_x".to_owned(), false));
    assert_eq!(l.state().unwrap().billing.facts.len(), 2);
    // sub_x ends: sub_y takes over with its own state, though its fact is older than the end.
    apply(&mut l, &of(500, "sub_x", Standing::Canceled));
    assert_eq!(follows(&l), ("sub_y".to_owned(), false));
    // A third one started meanwhile does not take over from sub_y, which runs; nor does a fact
    // of sub_x from before its end, delivered late, bring it back.
    apply(&mut l, &of(900, "sub_z", Standing::Good));
    apply(&mut l, &of(450, "sub_x", Standing::PastDue));
    apply(&mut l, &of(1_000, "sub_y", Standing::PastDue));
    assert_eq!(follows(&l), ("sub_y".to_owned(), false));
    assert!(l.state().unwrap().billing.payment_grace_until.is_some());
}

/// Up to three subscriptions' histories on one license, each shifted by up to 15 s either way
/// (so any of them may start first), with ids of their own.
fn several_subscriptions() -> impl Strategy<Value = Vec<BillingFact>> {
    proptest::collection::vec((history(), -15i64..=15), 2..=3).prop_map(|histories| {
        let mut facts = Vec::new();
        for (n, (history, shift)) in histories.into_iter().enumerate() {
            facts.extend(history.into_iter().map(|mut f| {
                f.observed.created += chrono::Duration::seconds(shift);
                f.observed.event_id = format!("{}_{n}", f.observed.event_id);
                f.target.subscription_id = format!("sub_{n}");
                f
            }));
        }
        facts
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Two or three subscriptions on one license (one ends, another takes over; or several
    /// run): any delivery order with duplicates ends where in-order delivery does.
    #[test]
    fn several_subscriptions_in_any_order_converge_to_in_order_delivery(
        facts in several_subscriptions(),
        duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        seed in any::<u64>(),
    ) {
        let (shuffled, in_order) = both_deliveries(&facts, &duplicates, seed);
        prop_assert_eq!(&shuffled, &in_order);
    }
}

#[test]
fn only_the_types_the_ledger_maps_are_acted_on() {
    for kind in [
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.subscription.trial_will_end",
        "checkout.session.completed",
        "invoice.paid",
        "invoice.payment_failed",
        "customer.created",
        "customer.updated",
    ] {
        assert!(acted_on(kind), "{kind}");
    }
    for kind in [
        "invoice.upcoming",
        "invoice.created",
        "customer.deleted",
        "checkout.session.expired",
        "payment_intent.succeeded",
        "charge.refunded",
        "customer.subscription",
        "",
    ] {
        assert!(!acted_on(kind), "{kind}");
    }
}

#[test]
fn times_outside_1970_to_9999_and_prices_with_control_characters_read_as_absent() {
    let mut event = subscription_event("trialing", 1_699_000_000);
    let object = &mut event["data"]["object"];
    object["trial_end"] = json!(-8_000_000_000_000_i64);
    object["cancel_at"] = json!(8_000_000_000_000_i64);
    object["items"]["data"][0]["current_period_end"] = json!(253_402_300_800_i64);
    object["items"]["data"][0]["price"] = json!("price_\u{0}1");
    let event = StripeEvent::from_value(event).unwrap();
    let StripeObject::Subscription(sub) = StripeObject::of(&event.object) else {
        panic!("a subscription");
    };
    assert_eq!(sub.trial_end, None);
    assert_eq!(sub.cancel_at, None);
    assert_eq!(sub.current_period_end, None);
    assert_eq!(sub.items[0].price_id, None);
    // The last second of 9999 is a time.
    let mut event = subscription_event("active", 1_699_000_000);
    event["data"]["object"]["items"]["data"][0]["current_period_end"] = json!(253_402_300_799_i64);
    let event = StripeEvent::from_value(event).unwrap();
    let StripeObject::Subscription(sub) = StripeObject::of(&event.object) else {
        panic!("a subscription");
    };
    assert!(sub.current_period_end.is_some());
}

#[test]
fn a_subscription_that_never_stood_anywhere_does_not_take_a_license() {
    let of = |created: i64, sub: &str, standing: Standing| {
        let mut f = fact(created, standing, 40, None);
        f.target.subscription_id = sub.into();
        f.observed.event_id = format!("evt_{sub}_{created}");
        f
    };
    let mut l = license();
    // An `incomplete` subscription (never paid) first, then a paying one.
    apply(&mut l, &of(50, "sub_incomplete", Standing::Unchanged));
    apply(&mut l, &of(100, "sub_paid", Standing::Good));
    let billing = &l.state().unwrap().billing;
    assert_eq!(billing.subscription.as_ref().unwrap().1, "sub_paid");
    // The paying one ends: the license ends with it, the incomplete one does not keep it.
    apply(&mut l, &of(200, "sub_paid", Standing::Canceled));
    let billing = &l.state().unwrap().billing;
    assert_eq!(billing.subscription.as_ref().unwrap().1, "sub_paid");
    assert!(billing.canceled);
    // Nor does a late invoice of another ended subscription take the link.
    let mut invoice = of(300, "sub_incomplete", Standing::Good);
    invoice.target.payment_only = true;
    apply(&mut l, &invoice);
    assert_eq!(
        l.state().unwrap().billing.subscription.as_ref().unwrap().1,
        "sub_paid"
    );
}
