//! Issue #16, through `ledger serve` as users run it (release build, rate limits off, one
//! `--stripe-webhook-secret`):
//!
//! - **Intake**: `POST /v1/webhooks/stripe` by 16 concurrent senders (keep-alive connections;
//!   every event a fresh id, signed here with the server's secret the way Stripe signs) against
//!   the raw single-row INSERT of the same bodies into a copy of the inbox table
//!   (`CREATE TABLE … (LIKE billing_inbox INCLUDING ALL)`) from 16 pooled connections, on the
//!   same PostgreSQL, in alternating slices. The webhook's rate includes what a sender pays
//!   (HTTP, the signature check, the envelope's parse); the consumer runs meanwhile, as it does
//!   in production (it takes the intake slice's events, of a type it ignores).
//! - **Lag**: subscriptions provisioned first (their first events issue their licenses), then
//!   `customer.subscription.updated` events at a steady rate for a while, each for one of them;
//!   the lag of an event is `processed_at − received_at` in the inbox (the server's clock at
//!   both ends): p50, p99 and max.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;

use crate::harness::{Op, interleave, median, op, ratio_cell, ratios};
use crate::idempotency_http::mint;
use crate::validation::{sibling, start_ours_with};

const SECRET: &str = "whsec_bench_0123456789abcdef";

/// The intake slices' event type: one the consumer ignores at once, so that the events stored
/// by the thousands do not keep it busy with retries into the lag run (storing does not read
/// the type).
const INTAKE_TYPE: &str = "invoice.upcoming";

/// Options of `bench billing`.
#[derive(Debug, clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 2000)]
    pub slice_ms: u64,
    #[arg(long, default_value_t = 10)]
    pub cycles: usize,
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Events per second of the lag run.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of the lag run.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Subscriptions the lag run's events are spread over.
    #[arg(long, default_value_t = 200)]
    pub subscriptions: usize,
}

/// `Stripe-Signature` for `body` at `t`: HMAC-SHA256 of `"{t}.{body}"`, hex (Stripe's scheme).
fn sign(body: &[u8], t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A subscription event as Stripe renders it (current API version, the period on the items).
fn subscription_event(
    id: &str,
    kind: &str,
    created: i64,
    sub: &str,
    status: &str,
    extra: Value,
) -> Vec<u8> {
    let mut object = json!({
        "id": sub, "object": "subscription", "status": status, "customer": format!("cus_{sub}"),
        "cancel_at_period_end": false, "cancel_at": null, "pause_collection": null,
        "trial_end": null, "livemode": false,
        "items": {"object": "list", "data": [
            {"id": format!("si_{sub}"), "object": "subscription_item", "quantity": 1,
             "current_period_end": created + 30 * 86_400,
             "price": {"id": "price_bench", "object": "price", "unit_amount": 2000}}]},
        "metadata": {}
    });
    if let (Some(o), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "api_version": "2025-08-27.basil", "created": created,
        "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "type": kind, "data": {"object": object}
    }))
    .expect("json")
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let t = chrono::Utc::now().timestamp();
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", sign(&body, t))
        .body(body)
        .send()
        .await?;
    if answer.status() != 200 {
        bail!(
            "webhook answered {}: {}",
            answer.status(),
            answer.text().await?
        );
    }
    Ok(())
}

/// Runs both measurements on the database at `url`.
///
/// # Errors
/// The server's or the database's.
pub async fn run(pool: PgPool, url: &str, o: &Options) -> anyhow::Result<()> {
    let ledger_exe = sibling("ledger")?;
    let run_id = uuid::Uuid::now_v7();
    let data_dir = std::env::temp_dir().join(format!("ledger-bench-{run_id}"));
    let (server, _) = start_ours_with(
        &ledger_exe,
        url,
        &data_dir,
        &["--stripe-webhook-secret", SECRET],
    )?;
    let base = format!("http://{}", server.addr);
    let webhook = format!("{base}/v1/webhooks/stripe");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.senders)
        .build()?;

    // ----- intake -----
    sqlx::query("CREATE TABLE bench_inbox (LIKE billing_inbox INCLUDING ALL)")
        .execute(&pool)
        .await?;
    let counter = Arc::new(AtomicU64::new(0));
    let created = chrono::Utc::now().timestamp();
    let ours: Op = {
        let (client, webhook, counter) = (client.clone(), webhook.clone(), counter.clone());
        op(move || {
            let (client, webhook) = (client.clone(), webhook.clone());
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let body = subscription_event(
                    &format!("evt_intake_{n}"),
                    INTAKE_TYPE,
                    created,
                    "sub_intake_nobody",
                    "active",
                    json!({}),
                );
                post(&client, &webhook, body).await
            }
        })
    };
    let raw: Op = {
        let (pool, counter) = (pool.clone(), counter.clone());
        op(move || {
            let pool = pool.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let id = format!("evt_raw_{n}");
                let body = subscription_event(
                    &id,
                    INTAKE_TYPE,
                    created,
                    "sub_intake_nobody",
                    "active",
                    json!({}),
                );
                let body = String::from_utf8(body)?;
                sqlx::query(
                    "INSERT INTO bench_inbox (event_id, gateway, event_type, created, livemode, \
                     api_version, payload, received_at, next_attempt_at) \
                     VALUES ($1, 'stripe', $2, $3, false, $4, $5::json, now(), now()) \
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(&id)
                .bind(INTAKE_TYPE)
                .bind(chrono::DateTime::from_timestamp(created, 0))
                .bind("2025-08-27.basil")
                .bind(body)
                .execute(&pool)
                .await?;
                Ok(())
            }
        })
    };
    // The intake's own work without HTTP: `App::receive_stripe_event` (signature, envelope,
    // INSERT) called by the senders directly, as the route's handler calls it.
    let mut config = application::AppConfig::new(url.to_owned(), data_dir.join("in-process"));
    config.db_max_connections = u32::try_from(o.senders)?;
    config.stripe_webhook_secrets = application::billing::WebhookSecrets::new(vec![SECRET.into()]);
    let app = application::App::open(&config).await?;
    let in_process: Op = {
        let (app, counter) = (app.clone(), counter.clone());
        op(move || {
            let app = app.clone();
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                let body = subscription_event(
                    &format!("evt_app_{n}"),
                    INTAKE_TYPE,
                    created,
                    "sub_intake_nobody",
                    "active",
                    json!({}),
                );
                let signature = sign(&body, chrono::Utc::now().timestamp());
                app.receive_stripe_event(Some(&signature), &body)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok(())
            }
        })
    };
    eprintln!("intake: {} senders, {} cycles", o.senders, o.cycles);
    let rates = interleave(
        &[
            ("webhook", ours),
            ("in process", in_process),
            ("raw INSERT", raw),
        ],
        o.senders,
        Duration::from_millis(o.slice_ms),
        o.cycles,
    )
    .await?;
    println!(
        "\n## Webhook intake vs raw single-row INSERT ({} senders)\n",
        o.senders
    );
    println!("| arm | events/s (median) | ratio to raw INSERT (median, min-max) |");
    println!("|---|---|---|");
    for (i, name) in [
        "`POST /v1/webhooks/stripe` (HTTP, `ledger serve`)",
        "`App::receive_stripe_event` (in process)",
        "raw INSERT",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {name} | {:.0} | {} |",
            median(&rates[i]),
            ratio_cell(&ratios(&rates[i], &rates[2]))
        );
    }
    drop(app);

    // Let the consumer take the intake's events (ignored) so that the lag run measures its own
    // events only.
    wait_drained(&pool, Duration::from_secs(600)).await?;

    // ----- lag -----
    let admin = mint(&ledger_exe, url)?;
    let setup = reqwest::Client::new();
    let call = |path: &str, body: Value| {
        setup
            .post(format!("{base}{path}"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let org: Value = call(
        "/v1/organizations",
        json!({"name": "Bench Customer", "kind": "customer"}),
    )
    .await?
    .json()
    .await?;
    let product: Value = call(
        "/v1/products",
        json!({"name": "Bench Product", "kind": "application"}),
    )
    .await?
    .json()
    .await?;
    let policy: Value = call(
        "/v1/policies",
        json!({"product_id": product["id"], "name": "Monthly", "model": "node_locked", "seats": 3,
               "duration_days": 30, "features": ["pro"], "offline_allowed": true,
               "offline_grace_days": 14, "payment_grace_days": 7}),
    )
    .await?
    .json()
    .await?;
    let (org_id, policy_id) = (
        org["id"].as_str().context("organization")?.to_owned(),
        policy["id"].as_str().context("policy")?.to_owned(),
    );
    let t0 = chrono::Utc::now().timestamp();
    let subs: Vec<String> = (0..o.subscriptions)
        .map(|i| format!("sub_{}_{i}", run_id.simple()))
        .collect();
    for (i, sub) in subs.iter().enumerate() {
        let body = subscription_event(
            &format!("evt_create_{i}"),
            "customer.subscription.created",
            t0,
            sub,
            "active",
            json!({"metadata": {"organization_id": org_id, "policy_id": policy_id}}),
        );
        post(&client, &webhook, body).await?;
    }
    wait_drained(&pool, Duration::from_secs(600)).await?;
    let issued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM billing_inbox WHERE event_id LIKE 'evt_create_%' AND outcome = 'processed'",
    )
    .fetch_one(&pool)
    .await?;
    if issued != i64::try_from(o.subscriptions)? {
        bail!("{issued} of {} subscriptions provisioned", o.subscriptions);
    }

    eprintln!(
        "lag: {} events/s for {} s over {} subscriptions",
        o.rate, o.seconds, o.subscriptions
    );
    let total = o.rate * o.seconds;
    let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
    let started = Instant::now();
    let mut sent = Vec::new();
    for n in 0..total {
        // Paced by the schedule, not by the answers: a slow answer does not slow the sender.
        let due = started + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let sub = subs[usize::try_from(n)? % subs.len()].clone();
        let round = n / subs.len() as u64;
        let status = if round.is_multiple_of(2) {
            "past_due"
        } else {
            "active"
        };
        let created = t0 + 1 + i64::try_from(round)?;
        let body = subscription_event(
            &format!("evt_lag_{n}"),
            "customer.subscription.updated",
            created,
            &sub,
            status,
            json!({}),
        );
        let (client, webhook) = (client.clone(), webhook.clone());
        sent.push(tokio::spawn(
            async move { post(&client, &webhook, body).await },
        ));
    }
    for s in sent {
        s.await??;
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    wait_drained(&pool, Duration::from_secs(600)).await?;
    let (processed, p50, p99, max): (i64, f64, f64, f64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE outcome = 'processed'), \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))::float8, \
           percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))::float8, \
           max(extract(epoch FROM processed_at - received_at))::float8 \
         FROM billing_inbox WHERE event_id LIKE 'evt_lag_%'",
    )
    .fetch_one(&pool)
    .await?;
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'SubscriptionSynced' \
         AND metadata->>'causation_id' LIKE 'evt_lag_%'",
    )
    .fetch_one(&pool)
    .await?;
    println!(
        "\n## Billing consumer lag ({:.0} events/s offered, {} s)\n",
        achieved, o.seconds
    );
    println!("| events | processed | facts applied | lag p50 | lag p99 | lag max |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {total} | {processed} | {applied} | {:.0} ms | {:.0} ms | {:.0} ms |",
        p50 * 1000.0,
        p99 * 1000.0,
        max * 1000.0
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

/// Waits until the inbox holds no pending event.
async fn wait_drained(pool: &PgPool, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM billing_inbox WHERE outcome IS NULL")
                .fetch_one(pool)
                .await?;
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{pending} inbox events still pending");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
