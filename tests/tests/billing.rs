//! Stripe webhooks in (issue #16): signatures built by Stripe's own SDK (the `stripe` PyPI
//! package's `WebhookSignature.generate_signature_header`, `tests::stripe`) and by the server's
//! construction (`application::billing::signature_header`, which that SDK verifies: HMAC-SHA256
//! of `"{t}.{body}"` under the endpoint secret, hex, `t=..,v1=..`), checked over the raw bytes before
//! anything is parsed; every verified event stored once by its id; everything else refused with
//! 400 `INVALID_SIGNATURE` and nothing stored.

use std::sync::Arc;

use application::billing::{WebhookSecrets, signature_header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_config};

const OLD: &str = "whsec_old_0123456789";
const NEW: &str = "whsec_new_9876543210";

async fn start(secrets: &[&str]) -> TestApp {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.stripe_webhook_secrets =
        WebhookSecrets::new(secrets.iter().map(|s| (*s).to_owned()).collect());
    TestApp::start_with(db, config).await
}

fn event(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-08-27.basil", "created": 1_750_000_000,
        "livemode": false, "type": "customer.subscription.updated",
        "data": {"object": {"id": "sub_1", "object": "subscription", "status": "active",
                            "customer": "cus_1", "items": {"data": []}}}
    }))
    .unwrap()
}

async fn post(app: &TestApp, signature: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM billing_inbox")
        .fetch_one(app.server.state.app.pool())
        .await
        .unwrap()
}

fn now(app: &TestApp) -> i64 {
    app.server.state.app.now().timestamp()
}

#[tokio::test]
async fn a_signed_event_is_stored_once_under_either_secret_of_a_rotation() {
    let app = start(&[OLD, NEW]).await;
    let body = event("evt_once");
    let t = now(&app);
    let (status, answer) = post(&app, Some(&signature_header(OLD, t, &body)), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"received": true, "duplicate": false}));
    // Stripe delivers it again, signed with the new secret: acknowledged, not stored twice.
    let (status, answer) = post(&app, Some(&signature_header(NEW, t, &body)), body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"received": true, "duplicate": true}));
    assert_eq!(stored(&app).await, 1);
    // (The consumer may have taken it already: its outcome is not this test's.)
    let (kind, payload): (String, String) = sqlx::query_as(
        "SELECT event_type, payload::text FROM billing_inbox WHERE event_id = 'evt_once'",
    )
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert_eq!(kind, "customer.subscription.updated");
    assert_eq!(
        payload.as_bytes(),
        body.as_slice(),
        "the bytes Stripe signed"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_bad_signature_is_refused_and_stores_nothing() {
    let app = start(&[NEW]).await;
    let body = event("evt_refused");
    let t = now(&app);
    let good = signature_header(NEW, t, &body);
    let mut altered = body.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0x01;
    let flipped = {
        let mut s = good.clone().into_bytes();
        let last = s.len() - 1;
        s[last] = if s[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(s).unwrap()
    };
    for (why, signature, body) in [
        ("missing", None, body.clone()),
        ("malformed", Some("v1=00".to_owned()), body.clone()),
        (
            "expired",
            Some(signature_header(NEW, t - 301, &body)),
            body.clone(),
        ),
        (
            "future",
            Some(signature_header(NEW, t + 301, &body)),
            body.clone(),
        ),
        (
            "wrong secret",
            Some(signature_header(OLD, t, &body)),
            body.clone(),
        ),
        ("altered body", Some(good.clone()), altered),
        ("altered signature", Some(flipped), body.clone()),
    ] {
        let (status, answer) = post(&app, signature.as_deref(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {answer}");
        assert_eq!(answer["code"], "INVALID_SIGNATURE", "{why}");
    }
    // Verified, but not an event: refused too.
    let junk = br#"{"hello": "world"}"#.to_vec();
    let (status, answer) = post(&app, Some(&signature_header(NEW, t, &junk)), junk).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Over the body limit: 413 before anything else.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, answer) = post(&app, Some(&signature_header(NEW, t, &big)), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        answer["code"], "PAYLOAD_TOO_LARGE",
        "problem+json as everywhere"
    );
    // Signed, but no event the inbox could keep or the consumer act on: refused, nothing stored.
    let hostile = [
        json!({"id": "evt\u{0}nul", "type": "x", "created": t, "data": {"object": {}}}),
        json!({"id": "e".repeat(300), "type": "x", "created": t, "data": {"object": {}}}),
        json!({"id": "evt_old", "type": "x", "created": -250_000_000_000_i64, "data": {"object": {}}}),
        json!({"id": "evt_future", "type": "x", "created": t + 3_600, "data": {"object": {}}}),
    ];
    for body in hostile {
        let body = serde_json::to_vec(&body).unwrap();
        let (status, answer) = post(&app, Some(&signature_header(NEW, t, &body)), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let deep = format!(
        r#"{{"id":"evt_deep","type":"x","created":{t},"data":{{"object":{{"a":{}1{}}}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    )
    .into_bytes();
    let (status, answer) = post(&app, Some(&signature_header(NEW, t, &deep)), deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let retry = app
        .post("/v1/billing/events/evt%00x/retry", json!({}))
        .await;
    assert_eq!(retry.status, StatusCode::NOT_FOUND, "{:?}", retry.body);
    assert_eq!(stored(&app).await, 0);
    app.stop().await;

    // No secret configured: nothing verifies.
    let unconfigured = start(&[]).await;
    let (status, answer) = post(&unconfigured, Some(&good), event("evt_refused")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], "INVALID_SIGNATURE");
    unconfigured.stop().await;
}

// ----- signatures made by Stripe's own SDK -----

/// Events of every kind the ledger acts on, in the shapes of Stripe's fixtures (`object`
/// fields, nested lists, expandable references, `null`s).
fn fixture_events(created: i64) -> Vec<Vec<u8>> {
    let objects = [
        (
            "checkout.session.completed",
            json!({"id": "cs_sdk", "object": "checkout.session", "mode": "subscription",
                   "customer": "cus_sdk", "subscription": "sub_sdk", "status": "complete",
                   "payment_status": "paid", "client_reference_id": null, "metadata": {},
                   "customer_details": {"email": "ap@sdk.example", "name": "SDK GmbH"}}),
        ),
        (
            "customer.subscription.updated",
            subscription("active", created + 30 * DAY, json!({"id": "sub_sdk"})),
        ),
        (
            "invoice.payment_failed",
            json!({"id": "in_sdk", "object": "invoice", "customer": "cus_sdk", "status": "open",
                   "parent": {"type": "subscription_details",
                              "subscription_details": {"metadata": null, "subscription": "sub_sdk"}},
                   "lines": {"object": "list", "data": []}}),
        ),
        (
            "customer.updated",
            json!({"id": "cus_sdk", "object": "customer", "email": "ap@sdk.example",
                   "metadata": {}, "address": null, "invoice_settings": {"custom_fields": null}}),
        ),
    ];
    objects
        .into_iter()
        .enumerate()
        .map(|(i, (kind, object))| {
            // Pretty-printed, as Stripe sends its bodies: the signature covers the exact bytes.
            serde_json::to_vec_pretty(&json!({
                "id": format!("evt_sdk_{i}"), "object": "event",
                "api_version": "2025-08-27.basil", "created": created, "livemode": false,
                "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
                "type": kind, "data": {"object": object}
            }))
            .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn signatures_made_by_stripes_sdk_verify_and_every_flipped_byte_is_refused() {
    let sdk = tests::stripe::StripeSdk::install(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let app = start(&[OLD, NEW]).await;
    let t = now(&app);
    let bodies = fixture_events(t);
    let texts: Vec<String> = bodies
        .iter()
        .map(|b| String::from_utf8(b.clone()).unwrap())
        .collect();

    // The server's own construction is what Stripe's SDK verifies.
    for (text, body) in texts.iter().zip(&bodies) {
        sdk.verifies(text, &signature_header(NEW, t, body), NEW)
            .expect("Stripe's SDK verifies the server's construction");
    }
    assert!(
        sdk.verifies(&texts[0], &signature_header(OLD, t, &bodies[0]), NEW)
            .is_err(),
        "and refuses another secret's"
    );

    // Signed by the SDK under either secret of a rotation: each stored once.
    let pairs: Vec<(&str, &str)> = texts
        .iter()
        .flat_map(|text| [(text.as_str(), OLD), (text.as_str(), NEW)])
        .collect();
    let headers = sdk.sign(&pairs, t);
    for (i, body) in bodies.iter().enumerate() {
        for (n, header) in headers[2 * i..2 * i + 2].iter().enumerate() {
            let (status, answer) = post(&app, Some(header), body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["duplicate"], n == 1, "{answer}");
        }
    }
    assert_eq!(stored(&app).await, i64::try_from(bodies.len()).unwrap());

    // Every byte of the signature, and every byte of the body, flipped: refused.
    let fresh = serde_json::to_vec(&json!({
        "id": "evt_sdk_flip", "object": "event", "created": t, "livemode": false,
        "type": "customer.subscription.updated",
        "data": {"object": subscription("active", t + DAY, json!({}))}
    }))
    .unwrap();
    let header = sdk
        .sign(&[(std::str::from_utf8(&fresh).unwrap(), NEW)], t)
        .remove(0);
    let v1 = header.find("v1=").unwrap() + 3;
    let mut refused = 0;
    for at in v1..header.len() {
        let mut altered = header.clone().into_bytes();
        altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
        let (status, answer) = post(
            &app,
            Some(std::str::from_utf8(&altered).unwrap()),
            fresh.clone(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "signature byte {at}: {answer}"
        );
        assert_eq!(answer["code"], "INVALID_SIGNATURE");
        refused += 1;
    }
    for at in 0..fresh.len() {
        let mut altered = fresh.clone();
        altered[at] ^= 0x01;
        let (status, answer) = post(&app, Some(&header), altered).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "body byte {at}: {answer}");
        assert_eq!(answer["code"], "INVALID_SIGNATURE");
        refused += 1;
    }
    assert_eq!(refused, 64 + fresh.len());
    assert_eq!(stored(&app).await, i64::try_from(bodies.len()).unwrap());
    // Unaltered, it goes in.
    let (status, _) = post(&app, Some(&header), fresh).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

// ----- the lifecycle through HTTP -----

const DAY: i64 = 86_400;

/// A signed delivery of an event built from its parts, as Stripe renders it.
async fn deliver(app: &TestApp, id: &str, kind: &str, created: i64, object: Value) -> Value {
    let body = serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-08-27.basil", "created": created,
        "livemode": false, "pending_webhooks": 1, "type": kind, "data": {"object": object}
    }))
    .unwrap();
    let (status, answer) = post(app, Some(&signature_header(NEW, now(app), &body)), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Waits until the consumer has taken every stored event; returns (event id, outcome, reason).
async fn drained(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    for _ in 0..500 {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM billing_inbox WHERE outcome IS NULL")
                .fetch_one(app.server.state.app.pool())
                .await
                .unwrap();
        if pending == 0 {
            return sqlx::query_as(
                "SELECT event_id, outcome, reason FROM billing_inbox ORDER BY created, event_id",
            )
            .fetch_all(app.server.state.app.pool())
            .await
            .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the billing consumer did not take the inbox's events");
}

fn subscription(status: &str, period_end: i64, extra: Value) -> Value {
    let mut sub = json!({
        "id": "sub_life", "object": "subscription", "status": status, "customer": "cus_life",
        "cancel_at_period_end": false, "cancel_at": null, "pause_collection": null,
        "trial_end": null,
        "items": {"object": "list", "data": [
            {"id": "si_1", "object": "subscription_item", "quantity": 1,
             "current_period_end": period_end, "price": {"id": "price_1"}}]},
        "metadata": {}
    });
    if let (Some(sub), Some(extra)) = (sub.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            sub.insert(k.clone(), v.clone());
        }
    }
    sub
}

#[tokio::test]
async fn checkout_then_the_subscription_drives_what_clients_are_told() {
    let db = TestDb::create().await;
    let clock = Arc::new(commands::clock::OffsetClock::default());
    let mut config = test_config(&db);
    config.app.clock = clock.clone();
    config.app.stripe_webhook_secrets = WebhookSecrets::new(vec![NEW.to_owned()]);
    let app = TestApp::start_with(db, config).await;
    let c = app
        .catalogue_with(
            json!({"name": "Monthly", "model": "node_locked", "seats": 2,
            "duration_days": 30, "features": ["pro"], "offline_allowed": true,
            "offline_grace_days": 14, "payment_grace_days": 7}),
        )
        .await;
    let t0 = now(&app);

    // Checkout completes; Stripe delivers it three times, twice at once.
    let session = json!({"id": "cs_life", "object": "checkout.session", "mode": "subscription",
        "customer": "cus_life", "subscription": "sub_life", "status": "complete",
        "client_reference_id": c.organization_id, "metadata": {"policy_id": c.policy_id}});
    let (a, b) = tokio::join!(
        deliver(
            &app,
            "evt_checkout",
            "checkout.session.completed",
            t0,
            session.clone()
        ),
        deliver(
            &app,
            "evt_checkout",
            "checkout.session.completed",
            t0,
            session.clone()
        )
    );
    assert_ne!(a["duplicate"], b["duplicate"], "stored once: {a} {b}");
    drained(&app).await;
    deliver(
        &app,
        "evt_checkout",
        "checkout.session.completed",
        t0,
        session,
    )
    .await;
    app.projected().await;
    let licenses = app
        .get(&format!(
            "/v1/licenses?organization_id={}",
            c.organization_id
        ))
        .await;
    let licenses = licenses.body["licenses"].as_array().unwrap().clone();
    assert_eq!(licenses.len(), 1, "exactly one license: {licenses:?}");
    assert_eq!(licenses[0]["source"], "stripe");
    let license = licenses[0]["id"].as_str().unwrap().to_owned();
    // The vendor hands the customer a key.
    let key = app
        .post(&format!("/v1/licenses/{license}/rotate-key"), json!({}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let validate = || {
        let (app, key, app_id) = (&app, key.clone(), c.app_id.clone());
        async move {
            app.client_call("/v1/validate", &app_id, json!({"key": key}))
                .await
                .body
        }
    };

    // Trialing for three days, period to match: valid, the trial ending soon.
    let trial_end = t0 + 3 * DAY;
    deliver(
        &app,
        "evt_trial",
        "customer.subscription.created",
        t0 + 1,
        subscription("trialing", trial_end, json!({"trial_end": trial_end})),
    )
    .await;
    drained(&app).await;
    let v = validate().await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert!(v["warnings"].to_string().contains("TRIAL_ENDING"), "{v}");
    let view = app.get(&format!("/v1/licenses/{license}")).await.body;
    assert_eq!(view["subscription"]["status"], "trialing", "{view}");
    assert_eq!(view["subscription"]["subscription_id"], "sub_life");
    assert_eq!(view["subscription"]["customer_id"], "cus_life");

    // Paid for 30 days; then a payment fails: grace for 7 days from the failure.
    deliver(
        &app,
        "evt_paid",
        "customer.subscription.updated",
        t0 + 2,
        subscription("active", t0 + 33 * DAY, json!({})),
    )
    .await;
    drained(&app).await;
    // (The clock first: the intake refuses an event created after its own now.)
    clock.advance(chrono::Duration::days(35));
    deliver(
        &app,
        "evt_failed",
        "customer.subscription.updated",
        t0 + 34 * DAY,
        subscription("past_due", t0 + 63 * DAY, json!({})),
    )
    .await;
    drained(&app).await;
    let v = validate().await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert!(v["warnings"].to_string().contains("PAYMENT_GRACE"), "{v}");
    // An offline token taken in grace ends with the grace (failure at day 34 + 7 days), not 14
    // days of the policy's offline grace later.
    let offline = app
        .client_call("/v1/offline-tokens", &c.app_id, json!({"key": key}))
        .await;
    assert_eq!(offline.status, StatusCode::CREATED, "{:?}", offline.body);
    let until: chrono::DateTime<chrono::Utc> = offline.body["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(until.timestamp(), t0 + 34 * DAY + 7 * DAY);
    clock.advance(chrono::Duration::days(7));
    assert_eq!(validate().await["code"], "OVERDUE");

    // Paid again: valid. Stripe's older "failed" event, delivered late, changes nothing.
    let t1 = t0 + 42 * DAY;
    deliver(
        &app,
        "evt_recovered",
        "customer.subscription.updated",
        t1,
        subscription("active", t1 + 30 * DAY, json!({})),
    )
    .await;
    deliver(
        &app,
        "evt_failed_again",
        "customer.subscription.updated",
        t0 + 34 * DAY + 10,
        subscription("past_due", t0 + 63 * DAY, json!({})),
    )
    .await;
    drained(&app).await;
    let v = validate().await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["warnings"], json!([]), "{v}");

    // Paused, resumed, then canceled at the period's end: valid until then, not after.
    deliver(
        &app,
        "evt_paused",
        "customer.subscription.paused",
        t1 + 1,
        subscription("paused", t1 + 30 * DAY, json!({})),
    )
    .await;
    drained(&app).await;
    assert_eq!(validate().await["code"], "PAUSED");
    let refused = app
        .client_call("/v1/offline-tokens", &c.app_id, json!({"key": key}))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["code"], "PAUSED");
    // The clock moved 42 days: the harness's administration token has expired; a fresh one.
    let admin = app.token(domain::values::Role::VendorAdmin).await;
    let view = app
        .call_as(
            &admin,
            reqwest::Method::GET,
            &format!("/v1/licenses/{license}"),
            None,
            &[],
        )
        .await
        .body;
    assert_eq!(view["subscription"]["status"], "paused", "{view}");
    // The organization's lists read the licenses' read model: once it has caught up.
    app.projected().await;
    let listed = app
        .call_as(
            &admin,
            reqwest::Method::GET,
            &format!("/v1/organizations/{}/subscriptions", c.organization_id),
            None,
            &[],
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["subscriptions"][0]["license_id"], license);
    assert_eq!(listed.body["subscriptions"][0]["status"], "paused");
    assert_eq!(listed.body["subscriptions"].as_array().unwrap().len(), 1);
    deliver(
        &app,
        "evt_resumed",
        "customer.subscription.resumed",
        t1 + 2,
        subscription("active", t1 + 30 * DAY, json!({})),
    )
    .await;
    deliver(
        &app,
        "evt_cancel",
        "customer.subscription.updated",
        t1 + 3,
        subscription(
            "active",
            t1 + 30 * DAY,
            json!({"cancel_at_period_end": true}),
        ),
    )
    .await;
    drained(&app).await;
    assert_eq!(validate().await["code"], "VALID");
    clock.advance(chrono::Duration::days(31));
    deliver(
        &app,
        "evt_ended",
        "customer.subscription.deleted",
        t1 + 30 * DAY,
        subscription(
            "canceled",
            t1 + 30 * DAY,
            json!({"cancel_at_period_end": true}),
        ),
    )
    .await;
    let outcomes = drained(&app).await;
    let v = validate().await;
    assert_ne!(v["code"], "VALID", "{v}");

    // Every event once in the inbox, each processed; the license's history names them.
    assert!(
        outcomes
            .iter()
            .all(|(_, outcome, _)| outcome == "processed"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.len(), 10);
    // And counted for Prometheus (the recorder is the process's: at least these ten).
    let reader = app.token(domain::values::Role::VendorAdmin).await;
    let metrics = app
        .call_as(&reader, reqwest::Method::GET, "/metrics", None, &[])
        .await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    let processed: f64 = text
        .lines()
        .find(|l| l.starts_with("ledger_stripe_events_total{outcome=\"processed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(processed >= 10.0, "{text}");
    let synced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'SubscriptionSynced'",
    )
    .bind(&license)
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert_eq!(synced, 10, "each Stripe event's fact recorded once");
    let caused: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND metadata->>'causation_id' LIKE 'evt_%'",
    )
    .bind(&license)
    .fetch_one(app.server.state.app.pool())
    .await
    .unwrap();
    assert!(caused >= 10);
    app.stop().await;
}

#[tokio::test]
async fn an_event_without_a_license_fails_visibly_and_others_are_ignored() {
    let app = start(&[NEW]).await;
    let t = now(&app);
    deliver(
        &app,
        "evt_orphan",
        "customer.subscription.updated",
        t,
        subscription("active", t + 30 * DAY, json!({"id": "sub_nobody"})),
    )
    .await;
    deliver(
        &app,
        "evt_invoice",
        "invoice.paid",
        t,
        // A one-off invoice: no subscription, nothing for a license.
        json!({"id": "in_1", "object": "invoice", "customer": "cus_9"}),
    )
    .await;
    deliver(
        &app,
        "evt_other",
        "radar.early_fraud_warning.created",
        t,
        json!({"id": "issfr_1", "object": "radar.early_fraud_warning"}),
    )
    .await;
    let outcomes = drained(&app).await;
    let by_id = |id: &str| outcomes.iter().find(|(e, ..)| e == id).unwrap().clone();
    let (_, outcome, reason) = by_id("evt_orphan");
    assert_eq!(outcome, "failed");
    assert!(reason.unwrap().contains("sub_nobody"));
    assert_eq!(by_id("evt_invoice").1, "ignored");
    assert_eq!(by_id("evt_other").1, "ignored");
    // Failed events wait for their back-off: not taken again at once.
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM billing_inbox WHERE event_id = 'evt_orphan'")
            .fetch_one(app.server.state.app.pool())
            .await
            .unwrap();
    assert_eq!(attempts, 1);

    // Support reads the inbox by outcome; an administrator retries the failed one at once.
    let failed = app.get("/v1/billing/events?outcome=failed").await;
    assert_eq!(failed.status, StatusCode::OK, "{:?}", failed.body);
    let events = failed.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], "evt_orphan");
    assert_eq!(events[0]["type"], "customer.subscription.updated");
    assert!(events[0]["next_attempt_at"].is_string());
    let all = app.get("/v1/billing/events?limit=2").await;
    assert_eq!(all.body["events"].as_array().unwrap().len(), 2);
    let next = all.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!("/v1/billing/events?limit=2&cursor={next}"))
        .await;
    assert_eq!(rest.body["events"].as_array().unwrap().len(), 1);
    let auditor = app.token(domain::values::Role::VendorAuditor).await;
    let read = app
        .call_as(
            &auditor,
            reqwest::Method::GET,
            "/v1/billing/events",
            None,
            &[],
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    let refused = app
        .call_as(
            &auditor,
            reqwest::Method::POST,
            "/v1/billing/events/evt_orphan/retry",
            None,
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let retried = app
        .post("/v1/billing/events/evt_orphan/retry", json!({}))
        .await;
    assert_eq!(retried.status, StatusCode::OK, "{:?}", retried.body);
    let outcomes = drained(&app).await;
    assert!(
        outcomes
            .iter()
            .any(|(id, outcome, _)| id == "evt_orphan" && outcome == "failed")
    );
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM billing_inbox WHERE event_id = 'evt_orphan'")
            .fetch_one(app.server.state.app.pool())
            .await
            .unwrap();
    // Taken again at once, its automatic attempts counted afresh.
    assert_eq!(attempts, 1, "taken again at once");
    let unknown = app
        .post("/v1/billing/events/evt_never/retry", json!({}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "BILLING_EVENT_NOT_FOUND");
    let bad = app.get("/v1/billing/events?outcome=lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    app.stop().await;
}

// ----- prices, customers and invoices -----

#[tokio::test]
async fn a_price_linked_to_a_policy_issues_the_license_and_invoices_move_its_grace() {
    let app = start(&[NEW]).await;
    let c = app
        .catalogue_with(
            json!({"name": "Monthly", "model": "node_locked", "seats": 2,
            "duration_days": 30, "features": ["pro"], "offline_allowed": true,
            "offline_grace_days": 14, "payment_grace_days": 7}),
        )
        .await;
    let prices = format!("/v1/policies/{}/stripe-prices", c.policy_id);

    // Linking: the set replaces the one before; bad ids and foreign prices are refused.
    let linked = app
        .put(
            &prices,
            json!({"price_ids": ["price_pro_y", "price_pro_m", "price_pro_m"]}),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK, "{:?}", linked.body);
    assert_eq!(
        linked.body["stripe_price_ids"],
        json!(["price_pro_m", "price_pro_y"])
    );
    for bad in [
        json!({"price_ids": ["price/../x"]}),
        json!({"price_ids": [""]}),
    ] {
        let refused = app.put(&prices, bad).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], "INVALID_FIELD");
        assert_eq!(refused.body["field"], "price_ids");
    }
    let other = app
        .post(
            "/v1/policies",
            json!({"name": "Yearly", "product_id": c.product_id, "model": "node_locked",
                   "seats": 1, "duration_days": 365, "features": [], "offline_allowed": false,
                   "offline_grace_days": 0, "payment_grace_days": 3}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    let other_prices = format!(
        "/v1/policies/{}/stripe-prices",
        other.body["id"].as_str().unwrap()
    );
    let taken = app
        .put(
            &other_prices,
            json!({"price_ids": ["price_other", "price_pro_y"]}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{:?}", taken.body);
    assert_eq!(taken.body["code"], "PRICE_LINKED_ELSEWHERE");
    assert!(
        taken.body["detail"]
            .as_str()
            .unwrap()
            .contains(&c.policy_id)
    );
    // Two policies asking for one price at once: one gets it.
    let (a, b) = tokio::join!(
        app.put(&other_prices, json!({"price_ids": ["price_race"]})),
        app.put(
            &prices,
            json!({"price_ids": ["price_pro_m", "price_pro_y", "price_race"]})
        )
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{:?} {:?}",
        a.body,
        b.body
    );
    // Whoever lost, the policy keeps its two prices.
    let _ = app
        .put(
            &prices,
            json!({"price_ids": ["price_pro_m", "price_pro_y"]}),
        )
        .await;
    let _ = app.put(&other_prices, json!({"price_ids": []})).await;
    let read = app.get(&format!("/v1/policies/{}", c.policy_id)).await;
    assert_eq!(
        read.body["stripe_price_ids"],
        json!(["price_pro_m", "price_pro_y"])
    );

    // A checkout without a policy links the customer; the subscription's price issues the
    // license, quantity 3 × 2 seats.
    let t0 = now(&app);
    deliver(
        &app,
        "evt_co",
        "checkout.session.completed",
        t0,
        json!({"id": "cs_price", "object": "checkout.session", "mode": "subscription",
               "customer": "cus_price", "subscription": "sub_price",
               "client_reference_id": c.organization_id, "metadata": {}}),
    )
    .await;
    let mut sub = subscription("active", t0 + 30 * DAY, json!({}));
    sub["id"] = json!("sub_price");
    sub["customer"] = json!("cus_price");
    sub["items"]["data"][0]["price"] = json!({"id": "price_pro_y", "object": "price"});
    sub["items"]["data"][0]["quantity"] = json!(3);
    deliver(
        &app,
        "evt_sub",
        "customer.subscription.created",
        t0 + 1,
        sub,
    )
    .await;
    let outcomes = drained(&app).await;
    assert!(
        outcomes
            .iter()
            .all(|(_, outcome, _)| outcome == "processed"),
        "{outcomes:?}"
    );
    app.projected().await;
    let org = app
        .get(&format!("/v1/organizations/{}", c.organization_id))
        .await;
    assert_eq!(
        org.body["stripe_customer_ids"],
        json!(["cus_price"]),
        "{:?}",
        org.body
    );
    let licenses = app
        .get(&format!(
            "/v1/licenses?organization_id={}",
            c.organization_id
        ))
        .await
        .body["licenses"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(licenses.len(), 1, "{licenses:?}");
    assert_eq!(licenses[0]["policy_id"], c.policy_id.as_str());
    assert_eq!(licenses[0]["seats"], 6);
    let license = licenses[0]["id"].as_str().unwrap().to_owned();
    let key = app
        .post(&format!("/v1/licenses/{license}/rotate-key"), json!({}))
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let validate = || {
        let (app, key, app_id) = (&app, key.clone(), c.app_id.clone());
        async move {
            app.client_call("/v1/validate", &app_id, json!({"key": key}))
                .await
                .body
        }
    };
    assert_eq!(validate().await["warnings"], json!([]));

    // Invoices: a failed payment starts the grace, the paid one ends it and extends the
    // license to the period it paid.
    let invoice = |status: &str, period_end: i64| {
        json!({"id": "in_price", "object": "invoice", "customer": "cus_price", "status": status,
               "parent": {"type": "subscription_details",
                          "subscription_details": {"subscription": "sub_price"}},
               "lines": {"object": "list", "data": [
                   {"id": "il_1", "object": "line_item",
                    "period": {"start": t0, "end": period_end}}]}})
    };
    deliver(
        &app,
        "evt_inv_failed",
        "invoice.payment_failed",
        t0 + 2,
        invoice("open", t0 + 30 * DAY),
    )
    .await;
    drained(&app).await;
    let v = validate().await;
    assert!(v["warnings"].to_string().contains("PAYMENT_GRACE"), "{v}");
    deliver(
        &app,
        "evt_inv_paid",
        "invoice.paid",
        t0 + 3,
        invoice("paid", t0 + 60 * DAY),
    )
    .await;
    drained(&app).await;
    let v = validate().await;
    assert_eq!(v["code"], "VALID", "{v}");
    assert_eq!(v["warnings"], json!([]), "{v}");
    let view = app.get(&format!("/v1/licenses/{license}")).await.body;
    let expires: chrono::DateTime<chrono::Utc> =
        view["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.timestamp(), t0 + 60 * DAY, "{view}");

    // Customers: one named by its metadata is linked; one claiming another organization fails
    // visibly; one naming none is ignored. A subscription of a customer the ledger does not
    // know fails, saying so.
    let second = app
        .post(
            "/v1/organizations",
            json!({"name": "Second Ltd", "kind": "customer"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = |id: &str, org: &str| {
        json!({"id": id, "object": "customer", "email": "ap@second.example",
               "metadata": {"organization_id": org}})
    };
    deliver(
        &app,
        "evt_cu_new",
        "customer.created",
        t0 + 4,
        customer("cus_crm", &second),
    )
    .await;
    deliver(
        &app,
        "evt_cu_steal",
        "customer.updated",
        t0 + 5,
        customer("cus_price", &second),
    )
    .await;
    deliver(
        &app,
        "evt_cu_none",
        "customer.updated",
        t0 + 6,
        json!({"id": "cus_none", "object": "customer", "metadata": {}}),
    )
    .await;
    let mut stranger = subscription("active", t0 + 30 * DAY, json!({}));
    stranger["id"] = json!("sub_stranger");
    stranger["customer"] = json!("cus_stranger");
    stranger["items"]["data"][0]["price"] = json!("price_pro_m");
    deliver(
        &app,
        "evt_stranger",
        "customer.subscription.created",
        t0 + 7,
        stranger,
    )
    .await;
    let outcomes = drained(&app).await;
    let by_id = |id: &str| outcomes.iter().find(|(e, ..)| e == id).unwrap().clone();
    assert_eq!(by_id("evt_cu_new").1, "processed");
    let (_, outcome, reason) = by_id("evt_cu_steal");
    assert_eq!(outcome, "failed");
    assert!(reason.unwrap().contains(&c.organization_id));
    assert_eq!(by_id("evt_cu_none").1, "ignored");
    let (_, outcome, reason) = by_id("evt_stranger");
    assert_eq!(outcome, "failed");
    assert!(reason.unwrap().contains("cus_stranger"));
    app.projected().await;
    let second_view = app.get(&format!("/v1/organizations/{second}")).await;
    assert_eq!(second_view.body["stripe_customer_ids"], json!(["cus_crm"]));

    // Retired, the policy lets its prices go to another.
    let retired = app
        .post(&format!("/v1/policies/{}/retire", c.policy_id), json!({}))
        .await;
    assert_eq!(retired.status, StatusCode::OK);
    let moved = app
        .put(&other_prices, json!({"price_ids": ["price_pro_y"]}))
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.body);
    let refused = app.put(&prices, json!({"price_ids": []})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["code"], "POLICY_RETIRED");
    app.stop().await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_retried_no_more_by_itself() {
    let app = start(&[NEW]).await;
    let t = now(&app);
    deliver(
        &app,
        "evt_hopeless",
        "customer.subscription.updated",
        t,
        subscription("active", t + 30 * DAY, json!({"id": "sub_hopeless"})),
    )
    .await;
    drained(&app).await;
    // As if it had failed all but once already.
    let pool = app.server.state.app.pool().clone();
    sqlx::query(
        "UPDATE billing_inbox SET attempts = $1, next_attempt_at = now() WHERE event_id = 'evt_hopeless'",
    )
    .bind(application::billing::MAX_ATTEMPTS - 1)
    .execute(&pool)
    .await
    .unwrap();
    // Due now: the consumer's next poll takes it.
    let mut next = Some(String::new());
    for _ in 0..500 {
        let (attempts, at): (i32, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
            "SELECT attempts, next_attempt_at FROM billing_inbox WHERE event_id = 'evt_hopeless'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if attempts == application::billing::MAX_ATTEMPTS {
            next = at.map(|a| a.to_rfc3339());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(next, None, "no automatic attempt is scheduled");
    let listed = app.get("/v1/billing/events?outcome=failed").await;
    assert_eq!(listed.body["events"][0]["id"], "evt_hopeless");
    assert_eq!(listed.body["events"][0]["next_attempt_at"], Value::Null);
    // By hand, it is taken again.
    let retried = app
        .post("/v1/billing/events/evt_hopeless/retry", json!({}))
        .await;
    assert_eq!(retried.status, StatusCode::OK);
    let outcomes = drained(&app).await;
    assert_eq!(outcomes[0].1, "failed");
    let attempts: i32 =
        sqlx::query_scalar("SELECT attempts FROM billing_inbox WHERE event_id = 'evt_hopeless'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // Counted afresh: the retry by hand gives it its automatic attempts again.
    assert_eq!(attempts, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_live_ledger_ignores_test_mode_events() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.app.stripe_webhook_secrets = WebhookSecrets::new(vec![NEW.to_owned()]);
    config.app.stripe_mode = application::billing::StripeMode::Live;
    let app = TestApp::start_with(db, config).await;
    let org = app
        .post(
            "/v1/organizations",
            json!({"name": "Live GmbH", "kind": "customer"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = now(&app);
    for (id, livemode) in [("evt_mode_test", false), ("evt_mode_live", true)] {
        let body = serde_json::to_vec(&json!({
            "id": id, "object": "event", "created": t, "livemode": livemode,
            "type": "customer.updated",
            "data": {"object": {"id": format!("cus_{id}"), "object": "customer",
                                "metadata": {"organization_id": org}}}
        }))
        .unwrap();
        let (status, _) = post(&app, Some(&signature_header(NEW, t, &body)), body).await;
        assert_eq!(status, StatusCode::OK);
    }
    let outcomes = drained(&app).await;
    let by_id = |id: &str| outcomes.iter().find(|(e, ..)| e == id).unwrap().clone();
    let (_, outcome, reason) = by_id("evt_mode_test");
    assert_eq!(outcome, "ignored");
    assert!(reason.unwrap().contains("test-mode"));
    assert_eq!(by_id("evt_mode_live").1, "processed");
    app.projected().await;
    let view = app.get(&format!("/v1/organizations/{org}")).await;
    assert_eq!(
        view.body["stripe_customer_ids"],
        json!(["cus_evt_mode_live"])
    );
    app.stop().await;
}

#[tokio::test]
async fn metadata_cannot_take_a_license_or_a_customer_from_its_organization() {
    let app = start(&[NEW]).await;
    let c = app.catalogue().await;
    // A license the vendor issued to organization A; the customer `cus_a` is A's.
    let license = app.issue(&c).await["id"].as_str().unwrap().to_owned();
    let other = app
        .post(
            "/v1/organizations",
            json!({"name": "Other Ltd", "kind": "customer"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = now(&app);
    let customer = |id: &str, org: &str| json!({"id": id, "object": "customer", "metadata": {"organization_id": org}});
    deliver(
        &app,
        "evt_cu_a",
        "customer.created",
        t,
        customer("cus_a", &c.organization_id),
    )
    .await;
    deliver(
        &app,
        "evt_cu_b",
        "customer.created",
        t,
        customer("cus_b", &other),
    )
    .await;
    drained(&app).await;
    let sub = |id: &str, cus: &str, metadata: Value| {
        let mut s = subscription("canceled", t + 30 * DAY, json!({"metadata": metadata}));
        s["id"] = json!(id);
        s["customer"] = json!(cus);
        s
    };
    let cases = [
        // Another organization's customer naming A's license: refused.
        (
            "evt_steal",
            sub("sub_steal", "cus_b", json!({"license_id": license})),
        ),
        // Not an id: nothing a retry will change.
        (
            "evt_junk",
            sub(
                "sub_junk",
                "cus_a",
                json!({"license_id": format!("{license}x")}),
            ),
        ),
        // A's customer, but metadata naming another organization for a new license.
        (
            "evt_org",
            sub(
                "sub_org",
                "cus_a",
                json!({"organization_id": other, "policy_id": c.policy_id}),
            ),
        ),
    ];
    for (i, (id, object)) in cases.iter().enumerate() {
        deliver(
            &app,
            id,
            "customer.subscription.created",
            t + 1 + i64::try_from(i).unwrap(),
            object.clone(),
        )
        .await;
    }
    let outcomes = drained(&app).await;
    let by_id = |id: &str| outcomes.iter().find(|(e, ..)| e == id).unwrap().clone();
    assert_eq!(by_id("evt_steal").1, "failed", "{outcomes:?}");
    assert_eq!(by_id("evt_junk").1, "ignored", "{outcomes:?}");
    assert_eq!(by_id("evt_org").1, "failed", "{outcomes:?}");
    let view = app.get(&format!("/v1/licenses/{license}")).await.body;
    assert_eq!(view["subscription"], Value::Null, "untouched: {view}");
    assert_eq!(view["status"], "active");
    let count = app
        .get(&format!("/v1/licenses?organization_id={other}"))
        .await
        .body["licenses"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(count, 0, "nothing issued to the other organization");

    // A's own customer may put A's license on a subscription; a second live one is recorded
    // there and waits: the license follows the first until it ends.
    let mut live = sub("sub_live", "cus_a", json!({"license_id": license}));
    live["status"] = json!("active");
    deliver(
        &app,
        "evt_live",
        "customer.subscription.created",
        t + 10,
        live,
    )
    .await;
    let mut second = sub("sub_second", "cus_a", json!({"license_id": license}));
    second["status"] = json!("active");
    deliver(
        &app,
        "evt_second",
        "customer.subscription.created",
        t + 11,
        second,
    )
    .await;
    let outcomes = drained(&app).await;
    let by_id = |id: &str| outcomes.iter().find(|(e, ..)| e == id).unwrap().clone();
    assert_eq!(by_id("evt_live").1, "processed", "{outcomes:?}");
    assert_eq!(by_id("evt_second").1, "processed", "{outcomes:?}");
    // An invoice of the second goes to the license that recorded it, though it is not followed.
    deliver(
        &app,
        "evt_second_paid",
        "invoice.paid",
        t + 12,
        json!({"id": "in_second", "object": "invoice", "customer": "cus_a", "status": "paid",
               "subscription": "sub_second",
               "lines": {"object": "list", "data": [
                   {"id": "il_2", "object": "line_item", "period": {"start": t, "end": t + 40 * DAY}}]}}),
    )
    .await;
    let outcomes = drained(&app).await;
    assert!(
        outcomes
            .iter()
            .any(|(e, o, _)| e == "evt_second_paid" && o == "processed"),
        "{outcomes:?}"
    );
    app.projected().await;
    let view = app.get(&format!("/v1/licenses/{license}")).await.body;
    assert_eq!(
        view["subscription"]["subscription_id"], "sub_live",
        "{view}"
    );
    // The first ends: the second takes over, though its only event is older than the end.
    let mut ended = sub("sub_live", "cus_a", json!({"license_id": license}));
    ended["status"] = json!("canceled");
    deliver(
        &app,
        "evt_live_end",
        "customer.subscription.deleted",
        t + 20,
        ended,
    )
    .await;
    let outcomes = drained(&app).await;
    assert!(
        outcomes
            .iter()
            .any(|(e, o, _)| e == "evt_live_end" && o == "processed"),
        "{outcomes:?}"
    );
    app.projected().await;
    let view = app.get(&format!("/v1/licenses/{license}")).await.body;
    assert_eq!(
        view["subscription"]["subscription_id"], "sub_second",
        "{view}"
    );
    assert_eq!(view["status"], "active", "{view}");
    app.stop().await;
}

#[tokio::test]
async fn two_servers_never_link_one_price_to_two_policies() {
    let app = start(&[NEW]).await;
    let c = app.catalogue().await;
    let other = app
        .post(
            "/v1/policies",
            json!({"name": "Other", "product_id": c.product_id, "model": "node_locked",
                   "seats": 1, "duration_days": 365, "features": [], "offline_allowed": false,
                   "offline_grace_days": 0, "payment_grace_days": 3}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A second node on the same database: only the advisory lock serializes across the two.
    let second = api::server::start(test_config(&app.db)).await.unwrap();
    let base2 = format!("http://{}", second.addr);
    let put = |base: String, policy: String, prices: Value| {
        let (client, token) = (app.client.clone(), app.admin_token.clone());
        async move {
            client
                .put(format!("{base}/v1/policies/{policy}/stripe-prices"))
                .bearer_auth(token)
                .json(&json!({"price_ids": prices}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for round in 0..20 {
        let price = format!("price_race_{round}");
        let (a, b) = tokio::join!(
            put(app.base.clone(), c.policy_id.clone(), json!([price])),
            put(base2.clone(), other.clone(), json!([price]))
        );
        let mut statuses = [a, b];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}"
        );
        // Free it for the next round, whoever won.
        for (base, policy) in [(&app.base, &c.policy_id), (&base2, &other)] {
            let freed = put(base.clone(), policy.clone(), json!([])).await;
            assert_eq!(freed, StatusCode::OK);
        }
    }
    second.shutdown().await;
    app.stop().await;
}

#[tokio::test]
async fn linking_a_price_takes_the_events_that_waited_for_it_again() {
    let app = start(&[NEW]).await;
    let c = app.catalogue().await;
    let t = now(&app);
    let mut sub = subscription(
        "active",
        t + 30 * DAY,
        json!({"metadata": {"organization_id": c.organization_id}}),
    );
    sub["id"] = json!("sub_late");
    sub["customer"] = json!("cus_late");
    sub["items"]["data"][0]["price"] = json!("price_late");
    deliver(&app, "evt_late", "customer.subscription.created", t, sub).await;
    let outcomes = drained(&app).await;
    assert_eq!(outcomes[0].1, "failed", "{outcomes:?}");
    // Linked later: taken again at once, not at its back-off.
    let linked = app
        .put(
            &format!("/v1/policies/{}/stripe-prices", c.policy_id),
            json!({"price_ids": ["price_late"]}),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK);
    assert_eq!(
        processed_within_5s(&app, "evt_late").await,
        "processed",
        "within 5 s, its back-off being 10 s"
    );
    let licenses = licenses_of(&app, &c.organization_id).await.len();
    assert_eq!(licenses, 1);
    app.stop().await;
}

/// Issue #16's intake target: the webhooks that arrive together are committed together (ADR
/// 0022, "Intake by group commit"), each answered after its commit, each event stored once.
#[tokio::test]
async fn a_burst_is_committed_together_each_event_once_and_a_refused_row_fails_alone() {
    let app = start(&[NEW]).await;
    let t = now(&app);
    // 60 events, each delivered twice, all 120 at once.
    let sends: Vec<_> = (0..120)
        .map(|n| {
            let body = event(&format!("evt_burst_{}", n % 60));
            let (client, base) = (app.client.clone(), app.base.clone());
            tokio::spawn(async move {
                let answer = tests::stripe::post_signed(&client, &base, NEW, t, body)
                    .await
                    .expect("request sent");
                (
                    answer.status(),
                    answer.json::<Value>().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.expect("the sender finished"));
    }
    let mut fresh = std::collections::HashMap::<String, usize>::new();
    for (n, (status, answer)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        if answer["duplicate"] == false {
            *fresh.entry(format!("evt_burst_{}", n % 60)).or_default() += 1;
        }
    }
    assert_eq!(fresh.len(), 60, "every event stored: {fresh:?}");
    assert!(fresh.values().all(|n| *n == 1), "each once: {fresh:?}");
    assert_eq!(stored(&app).await, 60);
    // 120 deliveries at once did not take 120 commits.
    let batches = app.server.state.app.intake().batches();
    assert!(batches < 120, "{batches} batches for 120 deliveries");

    // A batch the database refuses as a whole (a payload that is not JSON cannot come through
    // the webhook; built here): each of its rows is written alone, and only that one fails.
    let row = |id: &str, payload: &str| application::intake::InboxRow {
        event_id: id.to_owned(),
        event_type: "invoice.upcoming".to_owned(),
        created: chrono::Utc::now(),
        livemode: false,
        api_version: None,
        payload: payload.to_owned(),
        received_at: chrono::Utc::now(),
    };
    let (a, bad, b) = (
        row("evt_batch_a", "{}"),
        row("evt_batch_bad", "not json"),
        row("evt_batch_b", "{}"),
    );
    let results = application::intake::store_batch(
        app.server.state.app.pool(),
        &[&a, &bad, &a, &b, &row("evt_burst_0", "{}")],
    )
    .await;
    let results: Vec<Option<bool>> = results.into_iter().map(Result::ok).collect();
    assert_eq!(
        results,
        [Some(true), None, Some(false), Some(true), Some(false)],
        "stored, refused, a copy, stored, stored before"
    );
    assert_eq!(stored(&app).await, 62);
    // A batch the database takes: the first copy of an id stores it, the second is a duplicate.
    let c = row("evt_batch_c", "{}");
    let results = application::intake::store_batch(app.server.state.app.pool(), &[&c, &c]).await;
    let results: Vec<Option<bool>> = results.into_iter().map(Result::ok).collect();
    assert_eq!(results, [Some(true), Some(false)]);
    assert_eq!(stored(&app).await, 63);
}

#[tokio::test]
async fn linking_a_customer_takes_its_events_that_waited_for_it_again() {
    let app = start(&[NEW]).await;
    let c = app.catalogue().await;
    let t = now(&app);
    let linked = app
        .put(
            &format!("/v1/policies/{}/stripe-prices", c.policy_id),
            json!({"price_ids": ["price_wait"]}),
        )
        .await;
    assert_eq!(linked.status, StatusCode::OK);
    // The subscription comes first; its customer is no organization yet.
    let mut sub = subscription("active", t + 30 * DAY, json!({}));
    sub["id"] = json!("sub_wait");
    sub["customer"] = json!("cus_wait");
    sub["items"]["data"][0]["price"] = json!("price_wait");
    deliver(
        &app,
        "evt_wait_sub",
        "customer.subscription.created",
        t,
        sub,
    )
    .await;
    // Another customer's failed event holding a NUL (PostgreSQL's `json` operators refuse the
    // whole document) does not stop the re-arm.
    let mut other = subscription("active", t + 30 * DAY, json!({"note": "\u{0}"}));
    other["id"] = json!("sub_nul");
    other["customer"] = json!("cus_nul");
    deliver(&app, "evt_nul", "customer.subscription.created", t, other).await;
    let outcomes = drained(&app).await;
    assert!(
        outcomes.len() == 2 && outcomes.iter().all(|(_, o, _)| o == "failed"),
        "{outcomes:?}"
    );
    // Its customer is linked later: the subscription is taken again at once.
    deliver(
        &app,
        "evt_wait_customer",
        "customer.created",
        t + 1,
        json!({"id": "cus_wait", "object": "customer",
               "metadata": {"organization_id": c.organization_id}}),
    )
    .await;
    assert_eq!(
        processed_within_5s(&app, "evt_wait_sub").await,
        "processed",
        "within 5 s, its back-off being 10 s"
    );
    let licenses = licenses_of(&app, &c.organization_id).await;
    assert_eq!(licenses.len(), 1, "{licenses:?}");
    assert_eq!(licenses[0]["source"], "stripe");
    app.stop().await;
}

/// A backlog does not hold a stop: the consumer checks for shutdown between batches, and the
/// next start takes what is left.
#[tokio::test]
async fn a_server_with_a_billing_backlog_stops_without_draining_it() {
    let app = start(&[NEW]).await;
    let pool = app.server.state.app.pool().clone();
    // 20,000 subscription events no license is linked to: each fails after a few lookups.
    sqlx::query(
        "INSERT INTO billing_inbox (event_id, gateway, event_type, created, livemode, api_version, \
         payload, received_at, next_attempt_at) \
         SELECT 'evt_backlog_' || n, 'stripe', 'customer.subscription.updated', now(), false, \
                '2025-08-27.basil', json_build_object('id', 'evt_backlog_' || n, 'object', 'event', \
                'created', 1750000000, 'livemode', false, 'type', 'customer.subscription.updated', \
                'data', json_build_object('object', json_build_object('id', 'sub_backlog_' || n, \
                'object', 'subscription', 'status', 'active', 'customer', 'cus_backlog_' || n))), \
                now(), now() \
         FROM generate_series(1, 20000) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Taken at the consumer's next poll.
    for _ in 0..1000 {
        let taken: i64 =
            sqlx::query_scalar("SELECT count(*) FROM billing_inbox WHERE outcome IS NOT NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        if taken > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.server.shutdown().await;
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM billing_inbox WHERE outcome IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        waiting > 0,
        "the stop waited for the whole backlog to be processed"
    );
    pool.close().await;
    app.db.drop_db().await;
}

/// The outcome of inbox event `id` once it is `processed`, or after 5 s.
async fn processed_within_5s(app: &TestApp, id: &str) -> String {
    let mut outcome = String::new();
    for _ in 0..250 {
        outcome = sqlx::query_scalar(
            "SELECT coalesce(outcome, 'pending') FROM billing_inbox WHERE event_id = $1",
        )
        .bind(id)
        .fetch_one(app.server.state.app.pool())
        .await
        .unwrap();
        if outcome == "processed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    outcome
}

/// The licenses of `organization`, once the projections have caught up.
async fn licenses_of(app: &TestApp, organization: &str) -> Vec<Value> {
    app.projected().await;
    app.get(&format!("/v1/licenses?organization_id={organization}"))
        .await
        .body["licenses"]
        .as_array()
        .unwrap()
        .clone()
}
