//! The unit tests of the online client that need no server: what it refuses to be configured
//! with, how answers are classified, and where keys may be fetched from.

use super::wire::{answer_error, is_loopback_http};
use super::*;
use crate::decision::Problem;

#[test]
fn a_client_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
}

#[test]
fn loopback_detection() {
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost",
        "http://LOCALHOST:1/x",
        "http://[::1]:80",
        "http://127.9.9.9",
    ] {
        assert!(is_loopback_http(url), "{url}");
    }
    for url in [
        "http://example.com",
        "http://127.0.0.1.example.com",
        "http://10.0.0.1",
        "https://127.0.0.1",
        "http://localhost.evil.com",
    ] {
        assert!(!is_loopback_http(url), "{url}");
    }
}

#[test]
fn answers_without_a_problem_are_not_refusals() {
    assert!(matches!(
        answer_error(
            403,
            r#"{"status": 403, "code": "NOT_FOUND", "title": "Forbidden"}"#
        ),
        ClientError::Refused(Problem { status: 403, .. })
    ));
    assert!(answer_error(429, "slow down").server_unavailable());
    assert!(answer_error(302, "").server_unavailable());
    assert!(answer_error(503, "").server_unavailable());
    assert!(!answer_error(400, r#"{"code": "BAD_REQUEST"}"#).server_unavailable());
}

#[test]
fn a_bad_base_url_is_refused() {
    let key = crate::testkit::TestKey::generate();
    let config = |url: &str| {
        Config::new(
            url,
            AppId::parse(crate::testkit::APP_ID).unwrap(),
            LicenseKey::parse("K-1").unwrap(),
            Jwks::from_json(&key.jwks_json()).unwrap(),
            std::env::temp_dir(),
        )
    };
    assert!(Client::new(config("ftp://x")).is_err());
    assert!(Client::new(config("https://")).is_err());
    assert!(Client::new(config("https://x/?a=b")).is_err());
    assert!(Client::new(config("https://licenses.example.com/")).is_ok());
    let debug = format!("{:?}", config("https://x"));
    assert!(!debug.contains("K-1"), "{debug}");
}
