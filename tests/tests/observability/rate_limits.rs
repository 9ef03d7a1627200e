//! Rate limits: a bucket per administration token, sized by its role; per address for requests
//! without a token that authenticates and for client applications. Every limited answer says
//! where the caller stands (`RateLimit-*`), a refusal says when to come back (`Retry-After`).

use std::time::{Duration, Instant};

use api::limits::{Rate, RoleRate};
use domain::values::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::{Answer, TestApp, TestDb, test_config};

/// The three headers as numbers.
fn limit_headers(a: &Answer) -> (u64, u64, u64) {
    let number = |name: &str| -> u64 {
        a.header(name)
            .unwrap_or_else(|| panic!("{name} missing on a {} answer", a.status))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number"))
    };
    (
        number("ratelimit-limit"),
        number("ratelimit-remaining"),
        number("ratelimit-reset"),
    )
}

/// A cheap authenticated read: an unknown license (404, limited like any other answer).
const READ: &str = "/v1/licenses/01890000-0000-7000-8000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_spent_its_budget_waits_while_another_from_the_same_address_goes_on() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    // One request a second with bursts of 5: a burst is spent long before a second passes.
    config.token_rate_limits = vec![
        RoleRate {
            role: Role::VendorAdmin,
            rate: Rate::new(1, 5),
        },
        RoleRate {
            role: Role::VendorAuditor,
            rate: Rate::new(1, 3),
        },
    ];
    let app = TestApp::start_with(db, config).await;
    let other = app.token(Role::VendorAdmin).await;
    let auditor = app.token(Role::VendorAuditor).await;

    let started = Instant::now();
    let mut remaining = Vec::new();
    let refused = loop {
        let a = app.get(READ).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            break a;
        }
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
        let (limit, left, reset) = limit_headers(&a);
        assert_eq!(limit, 5, "the bucket of the role vendor_admin");
        assert!(left < limit);
        // Full again after (limit - left) seconds at one request a second.
        assert!(
            reset >= limit - left - 1 && reset <= limit - left,
            "reset {reset} with {left} left"
        );
        remaining.push(left);
        assert!(remaining.len() <= 10, "never refused: {remaining:?}");
    };
    if started.elapsed() < Duration::from_secs(1) {
        assert_eq!(remaining, [4, 3, 2, 1, 0], "one request, one unit");
    }
    assert_eq!(refused.code(), "RATE_LIMITED");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=1).contains(&retry_after),
        "one unit comes back within a second"
    );
    let (limit, left, reset) = limit_headers(&refused);
    assert_eq!((limit, left), (5, 0));
    assert!(
        (retry_after..=5).contains(&reset),
        "full again after {reset} s, at least Retry-After"
    );

    // The same address, another token: a bucket of its own, full.
    let a = app.call_as(&other, Method::GET, READ, None, &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
    assert_eq!(limit_headers(&a).0, 5);
    assert_eq!(limit_headers(&a).1, 4);
    // A role configured otherwise has its own size.
    let a = app.call_as(&auditor, Method::GET, READ, None, &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
    assert_eq!(limit_headers(&a).0, 3);

    // The refused token is let through again once its unit is back.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(app.get(READ).await.status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bearers_spend_their_address_bucket_not_buckets_of_their_own() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 4;
    config.token_rate_limits = Vec::new();
    let app = TestApp::start_with(db, config).await;
    // Every request a different token nobody minted (well formed, or not at all), then none.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let forged = if i % 2 == 0 {
            format!("llt_{}_{}", uuid::Uuid::now_v7(), "A".repeat(43))
        } else {
            format!("garbage-{i}")
        };
        let a = app.call_as(&forged, Method::GET, READ, None, &[]).await;
        if a.status == StatusCode::UNAUTHORIZED {
            let (limit, _, _) = limit_headers(&a);
            assert_eq!(limit, 4, "the address's bucket");
        }
        statuses.push(a.status.as_u16());
    }
    assert_eq!(
        &statuses[..4],
        [401, 401, 401, 401],
        "four fit in the address's burst: {statuses:?}"
    );
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    let without = app
        .client
        .get(format!("{}{READ}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(without.headers().contains_key("retry-after"));
    // The address is spent; a valid token from it is not.
    let a = app.get(READ).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
    assert_eq!(
        limit_headers(&a).0,
        u64::from(api::limits::DEFAULT_TOKEN_RATE.burst)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_routes_carry_the_headers_of_their_address() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    config.client_rate_limit_per_second = 2;
    config.client_rate_limit_burst = 3;
    let app = TestApp::start_with(db, config).await;
    let c = app.catalogue().await;
    let license = app.issue(&c).await;
    let key = license["key"].as_str().unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let a = app
            .client_call("/v1/validate", &c.app_id, json!({"key": key}))
            .await;
        seen.push((a.status.as_u16(), limit_headers(&a).1));
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(a.header("retry-after").is_some());
        }
    }
    assert_eq!(seen[0], (200, 2), "{seen:?}");
    assert_eq!(seen[3].0, 429, "{seen:?}");
    // The JWKS is the client applications' too.
    let jwks = app
        .client
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap();
    assert!(jwks.headers().contains_key("ratelimit-limit"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sixteen_thread_import_of_2000_licenses_from_one_address_is_never_refused() {
    let db = TestDb::create().await;
    let mut config = test_config(&db);
    // The limits of `ledger serve` as shipped.
    let defaults = api::server::ServeConfig::new(String::new(), std::path::PathBuf::new());
    config.rate_limit_per_second = defaults.rate_limit_per_second;
    config.rate_limit_burst = defaults.rate_limit_burst;
    config.client_rate_limit_per_second = defaults.client_rate_limit_per_second;
    config.client_rate_limit_burst = defaults.client_rate_limit_burst;
    config.token_rate_limits = defaults.token_rate_limits;
    let app = std::sync::Arc::new(TestApp::start_with(db, config).await);
    let c = std::sync::Arc::new(app.catalogue().await);
    let started = Instant::now();
    let mut threads = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (app, c) = (app.clone(), c.clone());
        threads.spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..125 {
                let a = app
                    .post(
                        "/v1/licenses",
                        json!({"policy_id": c.policy_id, "organization_id": c.organization_id}),
                    )
                    .await;
                assert!(a.header("ratelimit-remaining").is_some());
                statuses.push(a.status.as_u16());
            }
            statuses
        });
    }
    let mut issued = 0;
    while let Some(statuses) = threads.join_next().await {
        for status in statuses.unwrap() {
            assert_eq!(status, 201, "the import was refused");
            issued += 1;
        }
    }
    assert_eq!(issued, 2000);
    eprintln!("2000 licenses on 16 threads in {:?}", started.elapsed());
    let app = std::sync::Arc::into_inner(app).expect("every thread ended");
    app.stop().await;
}
