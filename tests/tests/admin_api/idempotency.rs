//! `Idempotency-Key` on the administration routes (ADR 0016): a retry answers the first answer
//! byte for byte and executes nothing, another body is refused, keys are scoped per token, 100
//! parallel requests with one key execute once, and bad keys are refused naming the header.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{RawAnswer, TestApp, send_raw};

async fn post(app: &TestApp, token: &str, path: &str, body: &Value, key: &str) -> RawAnswer {
    let auth = format!("Bearer {token}");
    send_raw(
        &app.client,
        &app.base,
        Method::POST,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

async fn count(app: &TestApp, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(app.server.state.app.pool())
        .await
        .unwrap()
}

/// The replay is the first answer again: status, every header the handler set, and the body's
/// bytes, plus `Idempotent-Replayed: true`.
pub(crate) fn assert_replays(first: &RawAnswer, again: &RawAnswer) {
    assert_eq!(again.status, first.status);
    assert_eq!(
        String::from_utf8_lossy(&again.body),
        String::from_utf8_lossy(&first.body),
        "byte for byte"
    );
    for name in ["content-type", "location"] {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_retried_issue_answers_the_first_answer_byte_for_byte_secret_included_and_executes_nothing()
 {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let body = json!({"policy_id": c.policy_id, "organization_id": c.organization_id});
    let first = post(
        &app,
        &app.admin_token,
        "/v1/licenses",
        &body,
        "order-2026-0042",
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.json());
    let key = first.json()["key"].as_str().unwrap().to_owned();
    let before = app.event_count().await;
    let again = post(
        &app,
        &app.admin_token,
        "/v1/licenses",
        &body,
        "order-2026-0042",
    )
    .await;
    assert_replays(&first, &again);
    assert_eq!(app.event_count().await, before, "nothing executed");
    // The license key is answered again, but stored only encrypted.
    app.server.state.app.idempotency().drain().await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM idempotency_keys")
        .fetch_all(app.server.state.app.pool())
        .await
        .unwrap();
    assert!(!stored.is_empty());
    for body in stored {
        assert!(
            !body.windows(key.len()).any(|w| w == key.as_bytes()),
            "the license key is not stored in clear"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_used_key_with_another_body_is_refused_and_executes_nothing() {
    let app = TestApp::start().await;
    let first = post(
        &app,
        &app.admin_token,
        "/v1/organizations",
        &json!({"name": "Acme", "kind": "customer"}),
        "k-1",
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let before = app.event_count().await;
    for (path, body) in [
        (
            "/v1/organizations",
            json!({"name": "Other", "kind": "customer"}),
        ),
        (
            "/v1/products",
            json!({"name": "Acme", "kind": "application"}),
        ),
    ] {
        let reused = post(&app, &app.admin_token, path, &body, "k-1").await;
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.json()["code"], "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(
            reused.header("content-type"),
            Some("application/problem+json")
        );
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_from_two_tokens_executes_twice() {
    let app = TestApp::start().await;
    let other = app.token(domain::values::Role::VendorAdmin).await;
    let body = json!({"name": "Acme", "kind": "customer"});
    let a = post(&app, &app.admin_token, "/v1/organizations", &body, "shared").await;
    let b = post(&app, &other, "/v1/organizations", &body, "shared").await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(b.header("idempotent-replayed"), None);
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(count(&app, "OrganizationRegistered").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_hundred_parallel_requests_with_one_key_execute_exactly_once() {
    let app = TestApp::start().await;
    let body = json!({"name": "Raced", "kind": "customer"});
    let auth = format!("Bearer {}", app.admin_token);
    let bytes = serde_json::to_vec(&body).unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, base, auth, bytes) = (
                app.client.clone(),
                app.base.clone(),
                auth.clone(),
                bytes.clone(),
            );
            tokio::spawn(async move {
                let headers = [
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                    ("idempotency-key", "race-1"),
                ];
                send_raw(
                    &client,
                    &base,
                    Method::POST,
                    "/v1/organizations",
                    &headers,
                    bytes,
                )
                .await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(
        count(&app, "OrganizationRegistered").await,
        1,
        "executed once"
    );
    let created: Vec<&RawAnswer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    let first = created
        .iter()
        .find(|a| a.header("idempotent-replayed").is_none())
        .expect("one answer is the execution");
    for answer in &answers {
        match answer.status {
            StatusCode::CREATED => assert_eq!(answer.body, first.body),
            StatusCode::CONFLICT => {
                assert_eq!(answer.json()["code"], "IDEMPOTENCY_IN_PROGRESS");
                assert_eq!(answer.header("retry-after"), Some("1"));
            }
            other => panic!("unexpected {other}: {:?}", answer.json()),
        }
    }
    assert_eq!(
        created
            .iter()
            .filter(|a| a.header("idempotent-replayed").is_none())
            .count(),
        1
    );
    // Once it has finished, every retry gets its answer.
    let late = post(&app, &app.admin_token, "/v1/organizations", &body, "race-1").await;
    assert_replays(first, &late);
    app.stop().await;
}

#[tokio::test]
async fn malformed_keys_are_refused_naming_the_header_and_execute_nothing() {
    let app = TestApp::start().await;
    let before = app.event_count().await;
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "two words", "tab\there"] {
        for path in ["/v1/organizations", "/v1/offline-activations"] {
            let answer = post(
                &app,
                &app.admin_token,
                path,
                &json!({"name": "A", "kind": "customer"}),
                bad,
            )
            .await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad:?} on {path}");
            assert_eq!(answer.json()["code"], "INVALID_IDEMPOTENCY_KEY");
            assert_eq!(answer.json()["field"], "Idempotency-Key");
        }
    }
    assert_eq!(app.event_count().await, before);
    app.stop().await;
}

/// A client that resets its connection in the middle of a keyed creation loses nothing: the
/// request runs to its end on the server, and the retry gets 409 while it runs, then the first
/// answer, secret included. Found by an attacker: the retry answered `token: null` (the command
/// replayed from the events, where no secret is) for a token that was live, or the key stayed
/// `in_progress` until the request deadline.
#[tokio::test]
async fn a_reset_connection_loses_no_secret_and_holds_no_key() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;

    let app = TestApp::start().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let body = json!({"role": "vendor_auditor", "label": "reset"});
    let bytes = serde_json::to_vec(&body).unwrap();
    let before = count(&app, "ApiTokenIssued").await;
    let attempts = 12u64;
    for attempt in 0..attempts {
        let key = format!("reset-{attempt}");
        let head = format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n",
            app.admin_token,
            bytes.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        // Reset at different points of the request's life.
        tokio::time::sleep(Duration::from_millis(attempt % 6)).await;
        // Deprecated because a lingering close blocks the thread; a zero linger never lingers:
        // it resets the connection at once, which is the point here.
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream); // RST, not FIN
        let started = Instant::now();
        let answer = loop {
            let answer = post(&app, &app.admin_token, "/v1/tokens", &body, &key).await;
            if answer.status != StatusCode::CONFLICT {
                break answer;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the key stayed in progress after a reset"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.json());
        let token = answer.json()["token"]
            .as_str()
            .unwrap_or_else(|| panic!("attempt {attempt}: the secret is gone: {:?}", answer.json()))
            .to_owned();
        // The answer's token is the live one.
        let read = app
            .call_as(&token, Method::GET, "/v1/organizations", None, &[])
            .await;
        assert_eq!(read.status, StatusCode::OK, "attempt {attempt}");
    }
    assert_eq!(
        count(&app, "ApiTokenIssued").await - before,
        i64::try_from(attempts).unwrap(),
        "one token per key, whatever the resets"
    );
}

/// Every administration write, retried with its key: first while its answer is still in the
/// server's memory, then once the answer is written to the table and the memory has forgotten
/// it (`drain`), when the retry runs its handler and the events' index (the key recorded on the
/// command's first event) makes it append nothing and answer the stored first answer. A write
/// route whose command did not record its key would execute twice here. The table of routes is
/// checked against the OpenAPI document: a new write route fails this test until it is listed.
#[tokio::test]
async fn every_administration_write_replays_from_memory_and_from_the_table() {
    let app = TestApp::start().await;
    let c = app.catalogue().await;
    let issued = app.issue(&c).await;
    let license = issued["id"].as_str().unwrap().to_owned();
    let activated = app
        .client_call(
            "/v1/activations",
            &c.app_id,
            json!({"key": issued["key"], "fingerprint": "moved-machine"}),
        )
        .await;
    assert_eq!(
        activated.status,
        StatusCode::CREATED,
        "{:?}",
        activated.body
    );
    let installation = activated.body["installation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let moved_to = app
        .post(
            "/v1/organizations",
            json!({"name": "Beta AG", "kind": "customer"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let register = |name: &'static str, kind: &'static str| {
        let app = &app;
        async move {
            app.post("/v1/organizations", json!({"name": name, "kind": kind}))
                .await
                .body["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let reshaped = register("Epsilon GmbH", "customer").await;
    let partner = register("Delta Partners", "partner").await;
    let o = |action: &str| format!("/v1/organizations/{reshaped}{action}");
    let doomed_token = app
        .post("/v1/tokens", json!({"role": "vendor_auditor"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org_users = format!("/v1/organizations/{}/users", c.organization_id);
    let doomed_user = app
        .post(
            &org_users,
            json!({"email": "doomed@acme.example", "roles": []}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let terms = |name: &str| {
        json!({"name": name, "model": "node_locked", "seats": 2, "duration_days": 30,
               "features": ["pro"], "offline_allowed": false, "offline_grace_days": 0,
               "payment_grace_days": 0})
    };
    let mut policy = terms("Trial");
    policy["product_id"] = json!(c.product_id);
    let l = |action: &str| format!("/v1/licenses/{license}/{action}");
    let p = &c.policy_id;
    // A draft with a file, for publish and yank.
    let shipped = app
        .post(
            &format!("/v1/products/{}/releases", c.product_id),
            json!({"version": "0.9.0", "channel": "stable"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let uploaded = app
        .client
        .put(format!(
            "{}/v1/releases/{shipped}/artifacts/app-0.9.0.zip",
            app.base
        ))
        .bearer_auth(&app.admin_token)
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let artifact: Value = uploaded.json().await.unwrap();
    let artifact = artifact["id"].as_str().unwrap().to_owned();
    // A link finds the artifact's release through the read model: wait until it knows it.
    let since = std::time::Instant::now();
    while app
        .get(&format!(
            "/v1/products/{}/releases?version=0.9.0",
            c.product_id
        ))
        .await
        .body["releases"][0]["artifacts"][0]["id"]
        != artifact.as_str()
    {
        assert!(since.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // (method, template, path, body, status): in an order each one's first request succeeds.
    let cases: Vec<(Method, &str, String, Value, StatusCode)> = vec![
        (
            Method::POST,
            "/v1/organizations",
            "/v1/organizations".into(),
            json!({"name": "Gamma SE", "kind": "partner"}),
            StatusCode::CREATED,
        ),
        (
            Method::PATCH,
            "/v1/organizations/{id}",
            o(""),
            json!({"name": "Epsilon AG"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/organizations/{id}/move",
            o("/move"),
            json!({"parent_id": c.organization_id}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/organizations/{id}/delegations",
            o("/delegations"),
            json!({"partner_id": partner}),
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/organizations/{id}/delegations/{partner_id}",
            o(&format!("/delegations/{partner}")),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/organizations/{id}/close",
            o("/close"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/products",
            "/v1/products".into(),
            json!({"name": "Gamma Studio", "kind": "application"}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/products/{id}/releases",
            format!("/v1/products/{}/releases", c.product_id),
            json!({"version": "1.0.0", "channel": "lts", "entitlements": ["pro"]}),
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            "/v1/products/{id}/upgrade-paths",
            format!("/v1/products/{}/upgrade-paths", c.product_id),
            json!({"from": "0.8", "to": "1.0.0", "via": ["0.9.0"]}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/releases/{id}/publish",
            format!("/v1/releases/{shipped}/publish"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/artifacts/{id}/download-links",
            format!("/v1/artifacts/{artifact}/download-links"),
            json!({"license_id": license}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/releases/{id}/yank",
            format!("/v1/releases/{shipped}/yank"),
            json!({"reason": "broken"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/policies",
            "/v1/policies".into(),
            policy,
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            "/v1/policies/{id}",
            format!("/v1/policies/{p}"),
            terms("Pro 2"),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/policies/{id}/stripe-prices",
            format!("/v1/policies/{p}/stripe-prices"),
            json!({"price_ids": ["price_idem"]}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses",
            "/v1/licenses".into(),
            json!({"policy_id": p, "organization_id": c.organization_id}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/assignments",
            l("assignments"),
            json!({"user_id": doomed_user}),
            StatusCode::CREATED,
        ),
        (
            Method::DELETE,
            "/v1/licenses/{id}/assignments/{user_id}",
            l(&format!("assignments/{doomed_user}")),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/installations/{id}/deactivate",
            format!("/v1/installations/{installation}/deactivate"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/suspend",
            l("suspend"),
            json!({"reason": "audit"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/reinstate",
            l("reinstate"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/renew",
            l("renew"),
            json!({"expires_at": "2031-01-01T00:00:00Z"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/transfer",
            l("transfer"),
            json!({"organization_id": moved_to}),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/licenses/{id}/entitlements",
            l("entitlements"),
            json!({"features": ["pro", "export"]}),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/licenses/{id}/seats",
            l("seats"),
            json!({"seats": 5}),
            StatusCode::OK,
        ),
        (
            Method::PUT,
            "/v1/licenses/{id}/maintenance",
            l("maintenance"),
            json!({"until": "2030-06-01T00:00:00Z"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/rotate-key",
            l("rotate-key"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/licenses/{id}/revoke",
            l("revoke"),
            json!({"reason": "refund"}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/tokens",
            "/v1/tokens".into(),
            json!({"role": "vendor_support", "label": "crm"}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/tokens/{id}/revoke",
            format!("/v1/tokens/{doomed_token}/revoke"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/organizations/{id}/users",
            org_users.clone(),
            json!({"email": "ana@acme.example", "roles": ["customer_admin"]}),
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            "/v1/users/{id}/roles",
            format!("/v1/users/{doomed_user}/roles"),
            json!({"organization_id": c.organization_id, "roles": ["license_manager"]}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/impersonations",
            "/v1/impersonations".into(),
            json!({"user_id": doomed_user, "reason": "ticket 1"}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/users/{id}/deactivate",
            format!("/v1/users/{doomed_user}/deactivate"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/users/{id}/reactivate",
            format!("/v1/users/{doomed_user}/reactivate"),
            json!({}),
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/v1/policies/{id}/retire",
            format!("/v1/policies/{p}/retire"),
            json!({}),
            StatusCode::OK,
        ),
    ];

    // Every write of the document but the client routes (tests/tests/client_api/idempotency.rs)
    // and validation (which takes no key).
    let doc = app.get("/v1/openapi.json").await.body;
    let client = [
        "/v1/validate",
        "/v1/activations",
        "/v1/activations/{id}/deactivate",
        "/v1/activations/{id}/heartbeat",
        "/v1/offline-tokens",
        "/v1/offline-activations",
        "/v1/updates",
    ]
    .into_iter()
    .chain(api::openapi::KEYLESS_WRITES)
    .collect::<Vec<_>>();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() && !client.contains(&path.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let listed: std::collections::BTreeSet<String> =
        cases.iter().map(|(m, t, ..)| format!("{m} {t}")).collect();
    assert_eq!(
        listed, documented,
        "every administration write is listed here"
    );

    let auth = format!("Bearer {}", app.admin_token);
    for (i, (method, template, path, body, status)) in cases.iter().enumerate() {
        let key = format!("every-{i}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("idempotency-key", key.as_str()),
        ];
        let send = || {
            send_raw(
                &app.client,
                &app.base,
                method.clone(),
                path,
                &headers,
                serde_json::to_vec(body).unwrap(),
            )
        };
        let first = send().await;
        assert_eq!(
            first.status,
            *status,
            "{method} {template}: {}",
            String::from_utf8_lossy(&first.body)
        );
        let before = app.event_count().await;
        let from_memory = send().await;
        assert_replays(&first, &from_memory);
        app.server.state.app.idempotency().drain().await;
        assert_eq!(
            app.server.state.app.idempotency().held(),
            0,
            "memory forgot"
        );
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = $1")
            .bind(&key)
            .fetch_one(app.server.state.app.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1, "{method} {template}: the answer is stored");
        let from_table = send().await;
        assert_replays(&first, &from_table);
        assert_eq!(
            app.event_count().await,
            before,
            "{method} {template}: a retry executed"
        );
    }
    app.stop().await;
}
