//! `GET /metrics` of the binary as users start it, read with a Prometheus text parser: every
//! series of API.md is there, and the counters move with the traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prom_text_format_parser::{Type, ValueType};
use serde_json::json;
use tests::{TestDb, mint_token, spawn_server_logged, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// One sample of a parsed scrape.
struct Sample {
    metric: String,
    kind: Type,
    labels: HashMap<String, String>,
    value_type: ValueType,
    value: f64,
}

/// A scrape as the parser read it: samples, and the metrics that have a HELP line.
struct Scrape {
    samples: Vec<Sample>,
    described: Vec<String>,
}

async fn scrape(client: &reqwest::Client, url: &str) -> Scrape {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let parsed = prom_text_format_parser::Scrape::parse(&text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e:?}\n{text}"));
    let mut samples = Vec::new();
    let mut described = Vec::new();
    for metric in parsed.metrics {
        if metric.help_desc.is_some() {
            described.push(metric.name.clone());
        }
        for sample in metric.samples {
            samples.push(Sample {
                metric: metric.name.clone(),
                kind: metric.kind,
                labels: sample
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect(),
                value_type: sample.value.value_type,
                value: sample.value.value.as_f64(),
            });
        }
    }
    Scrape { samples, described }
}

/// The plain samples (not a histogram's sum or count) of `metric` whose labels include every
/// pair of `labels`.
fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.samples
        .iter()
        .filter(|x| {
            x.metric == metric
                && x.value_type == ValueType::Sample
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The sum of a counter's or gauge's matching series; 0 when there is none.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    find(s, metric, labels).iter().map(|x| x.value).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_every_series_and_the_counters_move_with_the_traffic() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = mint_token(BIN, &db);
    let (server, logs) = spawn_server_logged(
        BIN,
        &db,
        &data_dir,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--checkpoint-every-secs",
            "1",
        ],
        None,
    );
    let metrics_addr = logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l["fields"]["message"] == "metrics listening")
        .and_then(|l| l["fields"]["metrics_addr"].as_str().map(str::to_owned))
        .expect("the metrics address is logged");
    let open = format!("http://{metrics_addr}/metrics");
    let client = reqwest::Client::new();
    let before = scrape(&client, &open).await;

    // On the main listener /metrics needs a token that may read.
    let main = format!("{}/metrics", server.base);
    let anonymous = client.get(&main).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let with_token = client.get(&main).bearer_auth(&token).send().await.unwrap();
    assert_eq!(with_token.status(), 200);

    // Traffic: a catalogue, a license, validations valid and not, a route that does not exist.
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let org: serde_json::Value = post(
        "/v1/organizations",
        json!({"name": "Acme", "kind": "customer"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let product: serde_json::Value = post(
        "/v1/products",
        json!({"name": "Studio", "kind": "application"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let policy: serde_json::Value = post(
        "/v1/policies",
        json!({"product_id": product["id"], "name": "Pro", "model": "node_locked", "seats": 3,
               "duration_days": 365, "features": [], "offline_allowed": false,
               "offline_grace_days": 0, "payment_grace_days": 0}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let license: serde_json::Value = post(
        "/v1/licenses",
        json!({"policy_id": policy["id"], "organization_id": org["id"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = license["key"].as_str().expect("a license with its key");
    let validate = |key: String| {
        client
            .post(format!("{}/v1/validate", server.base))
            .header("x-app-id", product["app_id"].as_str().unwrap())
            .json(&json!({"key": key}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(validate(key.to_owned()).await.unwrap().status(), 200);
    }
    assert_eq!(
        validate("XX-AAAAAAAA-AAAAAAAA-AAAAAAAA-AAAAAAAA".into())
            .await
            .unwrap()
            .status(),
        403
    );
    let license_id = license["id"].as_str().unwrap();
    let read = client
        .get(format!("{}/v1/licenses/{license_id}", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let nowhere = client
        .get(format!("{}/v1/nowhere/{license_id}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), 404);

    // A checkpoint is signed within a second or two; its position shows.
    let since = Instant::now();
    let after = loop {
        let s = scrape(&client, &open).await;
        if value(&s, "ledger_checkpoint_last_position", &[]) > 0.0 {
            break s;
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "no checkpoint position"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Requests by route template and status, with a latency histogram on the same labels.
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        value(&after, metric, labels) - value(&before, metric, labels)
    };
    let created = [
        ("method", "POST"),
        ("route", "/v1/organizations"),
        ("status", "201"),
    ];
    assert_eq!(moved("ledger_http_requests_total", &created), 1.0);
    let buckets = find(&after, "ledger_http_request_duration_seconds", &created);
    assert!(
        buckets.iter().all(|b| b.kind == Type::Histogram),
        "the latency is a histogram"
    );
    let all = buckets
        .iter()
        .find(|b| b.labels.get("le").map(String::as_str) == Some("+Inf"))
        .expect("a +Inf bucket");
    assert!(all.value >= 1.0);
    assert!(buckets.len() > 10, "latency buckets from 1 ms to 30 s");
    assert_eq!(
        moved(
            "ledger_http_requests_total",
            &[("route", "/v1/licenses/{id}"), ("status", "200")]
        ),
        1.0,
        "the template, not the path"
    );
    assert_eq!(
        moved(
            "ledger_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        after
            .samples
            .iter()
            .filter_map(|s| s.labels.get("route"))
            .all(|route| !route.contains(license_id)),
        "no id in a route label"
    );
    assert_eq!(
        moved("ledger_http_requests_total", &[("route", "/v1/validate")]),
        4.0
    );

    // Validations by code, events by type, projector lag per projector.
    assert_eq!(moved("ledger_validations_total", &[("code", "VALID")]), 3.0);
    assert_eq!(
        moved("ledger_validations_total", &[("code", "NOT_FOUND")]),
        1.0
    );
    for event in [
        "OrganizationRegistered",
        "ProductDefined",
        "PolicyDefined",
        "LicenseIssued",
    ] {
        assert_eq!(
            moved("ledger_events_appended_total", &[("type", event)]),
            1.0,
            "{event}"
        );
    }
    for projection in projections::all() {
        let labels = [("projector", projection.name())];
        assert_eq!(
            find(&after, "ledger_projector_lag_events", &labels).len(),
            1
        );
        assert_eq!(
            find(&after, "ledger_projector_lag_seconds", &labels).len(),
            1
        );
    }
    // Series of subsystems this run did not use are registered, at zero.
    for outcome in ["processed", "ignored", "failed"] {
        let series = find(
            &after,
            "ledger_stripe_events_total",
            &[("outcome", outcome)],
        );
        assert_eq!(series.len(), 1, "{outcome}");
        assert_eq!(
            value(
                &after,
                "ledger_stripe_events_total",
                &[("outcome", outcome)]
            ),
            0.0
        );
    }
    for metric in [
        "ledger_downloads_served_total",
        "ledger_download_bytes_total",
    ] {
        assert_eq!(find(&after, metric, &[]).len(), 1, "{metric}");
    }
    // Every series says what it is.
    for metric in [
        "ledger_http_requests_total",
        "ledger_http_request_duration_seconds",
        "ledger_validations_total",
        "ledger_events_appended_total",
        "ledger_projector_lag_events",
        "ledger_checkpoint_last_position",
        "ledger_stripe_events_total",
    ] {
        assert!(
            after.described.iter().any(|m| m == metric),
            "no HELP for {metric}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}
