//! The online client against a real HTTP server on loopback: validation and its cache, the
//! offline fallback and when it must not happen, offline tokens, activations and key refresh.
#![cfg(feature = "http")]

mod support;

use std::time::Duration;

use serde_json::{Value, json};

use client::decision::DecisionCode;
use client::jwks::Jwks;
use client::online::{Client, ClientError, Config, OfflineError, Validation};
use client::values::{AppId, Environment, Fingerprint, Label, LicenseKey};
use client::verify::{TokenKind, VerifyError};
use support::TempDir;
use support::http::{Reply, TestServer};
use support::testkit::{self, APP_ID, FINGERPRINT, OTHER_APP_ID, TestKey};

const KEY: &str = "ACME-SECRET-KEY-0001";
const LICENSE_ID: &str = "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b";
const INSTALLATION_ID: &str = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b";

fn decision(valid: bool, code: &str) -> Value {
    json!({
        "valid": valid, "code": code, "detail": "the license is valid",
        "license": {
            "id": LICENSE_ID, "status": "active", "product_id": "2e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b",
            "policy": {"id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "version": 1, "model": "node_locked"},
            "features": ["pro"], "seats": 3, "activations": 1,
            "expires_at": "2027-01-01T00:00:00Z", "trial_days_remaining": null
        },
        "warnings": if valid { json!([{"code": "EXPIRING", "days": 12}]) } else { json!([]) },
    })
}

fn activation() -> Value {
    json!({
        "installation_id": INSTALLATION_ID, "license_id": LICENSE_ID, "fingerprint": FINGERPRINT,
        "environment": "production", "hostname": "build-07", "platform": null,
        "activated_at": "2026-03-01T00:00:00Z", "lease_expires_at": null,
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn config(base_url: &str, key: &TestKey, store: &TempDir) -> Config {
    let mut config = Config::new(
        base_url,
        AppId::parse(APP_ID).unwrap(),
        LicenseKey::parse(KEY).unwrap(),
        Jwks::from_json(&key.jwks_json()).unwrap(),
        store.join("store"),
    )
    .with_fingerprint(Fingerprint::parse(FINGERPRINT).unwrap());
    config.timeout = Duration::from_secs(5);
    config
}

/// A base URL where nothing listens (the port was just freed).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// A server that hands out `token` as an offline token and answers everything else with `other`.
fn token_server(token: String, other: fn() -> Reply) -> TestServer {
    TestServer::start(move |request| match request.path.as_str() {
        "/v1/offline-tokens" => Reply::json(
            201,
            json!({"token": token, "expires_at": "2030-01-01T00:00:00Z", "kid": "k"}),
        ),
        _ => other(),
    })
}

#[test]
fn validation_asks_the_server_once_then_uses_the_cache() {
    let key = TestKey::generate();
    let store = TempDir::new("cache");
    let server = TestServer::start(|_| Reply::json(200, decision(true, "VALID")));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();

    let first = client.validate(&["pro"]).unwrap();
    assert!(first.is_valid());
    assert!(matches!(first, Validation::Online { cached: false, .. }));
    let second = client.validate(&["pro", "pro"]).unwrap();
    assert!(matches!(second, Validation::Online { cached: true, .. }));
    assert_eq!(
        server.hits("/v1/validate"),
        1,
        "the second answer came from the cache"
    );

    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("X-App-Id"), Some(APP_ID));
    assert_eq!(
        request.json(),
        json!({"key": KEY, "fingerprint": FINGERPRINT, "features": ["pro"]})
    );

    // Another feature set is another question.
    client.validate(&[]).unwrap();
    assert_eq!(server.hits("/v1/validate"), 2);
    assert_eq!(
        server.requests()[1].json(),
        json!({"key": KEY, "fingerprint": FINGERPRINT})
    );
}

#[test]
fn the_cache_expires_and_refusals_are_not_cached() {
    let key = TestKey::generate();
    let store = TempDir::new("ttl");
    let server = TestServer::start(|_| Reply::json(200, decision(false, "NOT_ACTIVATED")));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    for _ in 0..2 {
        let answer = client.validate(&[]).unwrap();
        assert!(!answer.is_valid());
        assert_eq!(answer.code(), DecisionCode::NotActivated);
    }
    assert_eq!(
        server.hits("/v1/validate"),
        2,
        "an invalid decision is asked again"
    );

    let server = TestServer::start(|_| Reply::json(200, decision(true, "VALID")));
    let mut short = config(&server.url(), &key, &store);
    short.cache_ttl = Duration::ZERO;
    let client = Client::new(short).unwrap();
    client.validate(&[]).unwrap();
    client.validate(&[]).unwrap();
    assert_eq!(server.hits("/v1/validate"), 2);
}

#[test]
fn a_stored_offline_token_stands_in_when_the_server_is_down() {
    let key = TestKey::generate();
    let store = TempDir::new("fallback");
    let token = key.token(&testkit::claims(now()));
    let server = token_server(token.clone(), || Reply::text(404, "no"));
    let url = server.url();
    let client = Client::new(config(&url, &key, &store)).unwrap();

    let stored = client.fetch_offline_token().unwrap();
    assert_eq!(stored.token, token);
    assert_eq!(stored.claims.kind, TokenKind::Offline);
    assert_eq!(std::fs::read_to_string(&stored.path).unwrap(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&stored.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is owner-only");
        let dir_mode = std::fs::metadata(store.join("store"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "the store directory is owner-only");
    }
    let request = &server.requests()[0];
    assert_eq!(request.header("X-App-Id"), Some(APP_ID));
    assert_eq!(
        request.json(),
        json!({"key": KEY, "fingerprint": FINGERPRINT})
    );

    drop(server); // the server goes away; the same client keeps working offline
    let answer = client.validate(&["pro"]).unwrap();
    assert!(answer.is_offline());
    assert!(answer.is_valid());
    let Validation::Offline {
        claims,
        server_error,
        ..
    } = &answer
    else {
        panic!("expected an offline result, got {answer:?}");
    };
    assert_eq!(claims.license_id().to_string(), LICENSE_ID);
    assert!(!server_error.contains(KEY));

    // The token does not grant a feature it does not list.
    let answer = client.validate(&["pro", "enterprise"]).unwrap();
    assert!(!answer.is_valid());
    assert_eq!(answer.code(), DecisionCode::FeaturesMissing);

    // A fresh client (a restart) finds the stored token too.
    let restarted = Client::new(config(&url, &key, &store)).unwrap();
    assert!(restarted.validate(&[]).unwrap().is_offline());
}

#[test]
fn a_server_failure_falls_back_too() {
    let key = TestKey::generate();
    let store = TempDir::new("5xx");
    let token = key.token(&testkit::claims(now()));
    let server = token_server(token, || Reply::text(503, "maintenance"));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    client.fetch_offline_token().unwrap();
    let answer = client.validate(&[]).unwrap();
    assert!(answer.is_offline() && answer.is_valid());
}

#[test]
fn a_403_not_found_is_a_refusal_not_a_fallback() {
    let key = TestKey::generate();
    let store = TempDir::new("403");
    let token = key.token(&testkit::claims(now()));
    let server = token_server(token, || {
        Reply::problem(403, "NOT_FOUND", "no license with this key")
    });
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    client.fetch_offline_token().unwrap(); // a good token is stored…

    let error = client.validate(&[]).unwrap_err(); // …and still not used
    assert!(
        matches!(&error, ClientError::Refused(problem) if problem.status == 403),
        "{error:?}"
    );
    assert_eq!(error.problem_code(), Some("NOT_FOUND"));
    assert!(!error.to_string().contains(KEY));
    assert!(!format!("{error:?}").contains(KEY));
}

#[test]
fn an_app_mismatch_is_a_refusal_too() {
    let key = TestKey::generate();
    let store = TempDir::new("mismatch");
    let server = TestServer::start(|_| Reply::problem(403, "APP_MISMATCH", "another product"));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    let error = client.validate(&[]).unwrap_err();
    assert_eq!(error.problem_code(), Some("APP_MISMATCH"));
}

#[test]
fn no_server_and_no_token_is_an_error_that_says_both() {
    let key = TestKey::generate();
    let store = TempDir::new("nothing");
    let client = Client::new(config(&dead_url(), &key, &store)).unwrap();
    let error = client.validate(&[]).unwrap_err();
    let ClientError::Unavailable { online, offline } = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(matches!(**online, ClientError::Unreachable(_)));
    assert!(matches!(offline, OfflineError::Missing));
}

#[test]
fn an_expired_stored_token_does_not_stand_in() {
    let key = TestKey::generate();
    let store = TempDir::new("expired");
    let mut claims = testkit::claims(now() - 10 * 86_400);
    claims["exp"] = json!(now() - 3600);
    let path = {
        // Stored by hand: the client itself would not store a token that fails verification.
        let client = Client::new(config(&dead_url(), &key, &store)).unwrap();
        client.token_path()
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, key.token(&claims)).unwrap();
    let client = Client::new(config(&dead_url(), &key, &store)).unwrap();
    let error = client.validate(&[]).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Unavailable {
                offline: OfflineError::Invalid(VerifyError::Expired { .. }),
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_token_that_does_not_verify_is_not_stored() {
    let key = TestKey::generate();
    let store = TempDir::new("badtoken");
    let mut claims = testkit::claims(now());
    claims["aud"] = json!(OTHER_APP_ID);
    let server = token_server(key.token(&claims), || Reply::text(404, "no"));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    let error = client.fetch_offline_token().unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::InvalidToken(VerifyError::Audience { .. })
        ),
        "{error:?}"
    );
    assert!(!client.token_path().exists());

    // Signed by a key the application does not trust.
    let server = token_server(TestKey::generate().token(&testkit::claims(now())), || {
        Reply::text(404, "no")
    });
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    assert!(matches!(
        client.fetch_offline_token(),
        Err(ClientError::InvalidToken(VerifyError::UnknownKid(_)))
    ));
}

#[test]
fn offline_not_allowed_is_surfaced() {
    let key = TestKey::generate();
    let store = TempDir::new("notallowed");
    let server = TestServer::start(|_| {
        Reply::problem(422, "OFFLINE_NOT_ALLOWED", "this policy has no offline use")
    });
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    let error = client.fetch_offline_token().unwrap_err();
    assert_eq!(error.problem_code(), Some("OFFLINE_NOT_ALLOWED"));
}

#[test]
fn activation_heartbeat_and_deactivation() {
    let key = TestKey::generate();
    let store = TempDir::new("activation");
    let server = TestServer::start(|request| match request.path.as_str() {
        "/v1/activations" => Reply::json(201, activation()),
        p if p.ends_with("/heartbeat") => Reply::json(
            200,
            json!({"installation_id": INSTALLATION_ID, "lease_expires_at": "2026-03-01T01:00:00Z"}),
        ),
        p if p.ends_with("/deactivate") => {
            let mut body = activation();
            body["deactivated_at"] = json!("2026-03-02T00:00:00Z");
            Reply::json(200, body)
        }
        _ => Reply::text(404, "no"),
    });
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();

    let host = Label::parse("build-07").unwrap();
    let activated = client
        .activate(Some(&host), None, Environment::Production)
        .unwrap();
    assert_eq!(activated.installation_id.to_string(), INSTALLATION_ID);
    assert_eq!(activated.fingerprint, FINGERPRINT);

    let heartbeat = client.heartbeat(activated.installation_id).unwrap();
    assert!(heartbeat.lease_expires_at.is_some());
    let deactivated = client.deactivate(activated.installation_id).unwrap();
    assert_eq!(deactivated.installation_id, activated.installation_id);
    assert!(deactivated.deactivated_at.is_some());

    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"key": KEY, "fingerprint": FINGERPRINT, "hostname": "build-07", "environment": "production"})
    );
    assert_eq!(
        requests[1].path,
        format!("/v1/activations/{INSTALLATION_ID}/heartbeat")
    );
    assert_eq!(requests[1].json(), json!({"key": KEY}));
    assert_eq!(
        requests[2].path,
        format!("/v1/activations/{INSTALLATION_ID}/deactivate")
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("X-App-Id") == Some(APP_ID))
    );
}

#[test]
fn too_many_activations_and_a_missing_fingerprint_are_errors() {
    let key = TestKey::generate();
    let store = TempDir::new("toomany");
    let server = TestServer::start(|_| Reply::problem(409, "TOO_MANY_ACTIVATIONS", "3 of 3 seats"));
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    let error = client
        .activate(None, None, Environment::Production)
        .unwrap_err();
    assert_eq!(error.problem_code(), Some("TOO_MANY_ACTIVATIONS"));

    let mut no_fingerprint = config(&server.url(), &key, &store);
    no_fingerprint.fingerprint = None;
    let client = Client::new(no_fingerprint).unwrap();
    assert!(matches!(
        client.activate(None, None, Environment::Test),
        Err(ClientError::FingerprintRequired)
    ));
}

#[test]
fn refreshed_keys_are_trusted_in_memory_only() {
    let pinned = TestKey::generate();
    let rotated = TestKey::generate();
    let store = TempDir::new("jwks");
    let published = json!({"keys": [pinned.public_jwk(), rotated.public_jwk()]});
    let token = rotated.token(&testkit::claims(now()));
    let server = TestServer::start(move |request| match request.path.as_str() {
        "/.well-known/jwks.json" => Reply::json(200, published.clone()),
        "/v1/offline-tokens" => Reply::json(
            201,
            json!({"token": token, "kid": "x", "expires_at": "2030-01-01T00:00:00Z"}),
        ),
        _ => Reply::text(404, "no"),
    });
    let client = Client::new(config(&server.url(), &pinned, &store)).unwrap();
    assert!(matches!(
        client.fetch_offline_token(),
        Err(ClientError::InvalidToken(VerifyError::UnknownKid(_)))
    ));
    assert_eq!(client.refresh_jwks().unwrap(), 1);
    assert_eq!(client.trusted_kids().len(), 2);
    client.fetch_offline_token().unwrap();

    // Nothing but the token was written; a new client trusts only the pinned key again.
    let written: Vec<_> = std::fs::read_dir(store.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(written, [client.token_path().file_name().unwrap()]);
    let restarted = Client::new(config(&server.url(), &pinned, &store)).unwrap();
    assert_eq!(restarted.trusted_kids(), std::slice::from_ref(&pinned.kid));
}

#[test]
fn a_fetched_key_set_with_a_private_key_is_refused() {
    let pinned = TestKey::generate();
    let store = TempDir::new("jwksprivate");
    let mut leaked = TestKey::generate().public_jwk();
    leaked["d"] = json!(testkit::b64(&[7u8; 32]));
    let published = json!({"keys": [leaked]});
    let server = TestServer::start(move |_| Reply::json(200, published.clone()));
    let client = Client::new(config(&server.url(), &pinned, &store)).unwrap();
    assert!(matches!(
        client.refresh_jwks(),
        Err(ClientError::Jwks(
            client::jwks::JwksError::PrivateKey { .. }
        ))
    ));
    assert_eq!(client.trusted_kids(), std::slice::from_ref(&pinned.kid));
}

#[test]
fn keys_are_not_fetched_over_plain_http_from_another_host() {
    let key = TestKey::generate();
    let store = TempDir::new("insecure");
    let client = Client::new(config("http://licenses.example.invalid", &key, &store)).unwrap();
    assert!(matches!(
        client.refresh_jwks(),
        Err(ClientError::InsecureKeySource)
    ));
}

#[test]
fn a_redirect_is_not_followed() {
    let key = TestKey::generate();
    let store = TempDir::new("redirect");
    let server = TestServer::start(|_| Reply {
        status: 307,
        content_type: "text/plain",
        body: String::new(),
    });
    let client = Client::new(config(&server.url(), &key, &store)).unwrap();
    let error = client
        .activate(None, None, Environment::Production)
        .unwrap_err();
    assert!(
        matches!(error, ClientError::UnexpectedResponse { status: 307, .. }),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
}
