//! The unit tests of the request, response and receipt files: the exact format written, what
//! reading tolerates and refuses, and that a response is trusted only once it verifies.

use base64ct::{Base64, Encoding};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::jwks::Jwks;
use crate::testkit::{self, APP_ID, FINGERPRINT, NOW, TestKey};
use crate::values::{AppId, Fingerprint, Label, LicenseKey};
use crate::verify::{Verifier, VerifyError};

fn app() -> AppId {
    AppId::parse(APP_ID).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 123_456_789).unwrap()
}

fn activation() -> ActivationRequest {
    let mut request = ActivationRequest::new(
        app(),
        LicenseKey::parse("ACME-1234-5678").unwrap(),
        Fingerprint::parse(FINGERPRINT).unwrap(),
        now(),
    );
    request.hostname = Some(Label::parse("build-07").unwrap());
    request
}

/// The JSON inside a request file, decoded independently of the parser under test.
fn decoded_json(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    let body: String = lines[1..lines.len() - 1].concat();
    serde_json::from_slice(&Base64::decode_vec(&body).unwrap()).unwrap()
}

#[test]
fn an_activation_request_file_follows_the_protocol() {
    let request = activation();
    let text = request.to_file_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----")
    );
    assert_eq!(
        lines.last(),
        Some(&"-----END LICENSE-LEDGER ACTIVATION REQUEST-----")
    );
    assert!(text.ends_with("-----\n"));
    let body = &lines[1..lines.len() - 1];
    assert!(body.len() > 1, "long enough to wrap");
    for line in &body[..body.len() - 1] {
        assert_eq!(line.len(), 64);
    }
    assert!(body[body.len() - 1].len() <= 64);

    let json = decoded_json(&text);
    assert_eq!(
        json,
        json!({
            "version": 1, "type": "activation", "app_id": APP_ID, "key": "ACME-1234-5678",
            "fingerprint": FINGERPRINT, "hostname": "build-07", "platform": null,
            "environment": "production", "created_at": "2026-03-01T00:00:00Z",
            "nonce": request.nonce.to_string(),
        })
    );
    // The members are written in the protocol's order.
    let raw = String::from_utf8(Base64::decode_vec(&body.concat()).unwrap()).unwrap();
    let positions: Vec<usize> = [
        "version",
        "type",
        "app_id",
        "key",
        "fingerprint",
        "hostname",
        "platform",
        "environment",
        "created_at",
        "nonce",
    ]
    .iter()
    .map(|k| raw.find(&format!("\"{k}\":")).unwrap())
    .collect();
    assert!(positions.is_sorted(), "{raw}");
    assert!(raw.starts_with(r#"{"version":1,"type":"activation","app_id""#));
}

#[test]
fn request_files_round_trip() {
    let request = activation();
    assert_eq!(
        ActivationRequest::parse_file_text(&request.to_file_text()),
        Ok(request.clone())
    );

    let deactivation = DeactivationRequest::new(
        app(),
        LicenseKey::parse("ACME-1234-5678").unwrap(),
        Fingerprint::parse(FINGERPRINT).unwrap(),
        now(),
    );
    let text = deactivation.to_file_text();
    assert!(text.starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION REQUEST-----\n"));
    assert!(text.ends_with("-----END LICENSE-LEDGER DEACTIVATION REQUEST-----\n"));
    assert_eq!(
        decoded_json(&text),
        json!({
            "version": 1, "type": "deactivation", "app_id": APP_ID, "key": "ACME-1234-5678",
            "fingerprint": FINGERPRINT, "created_at": "2026-03-01T00:00:00Z",
            "nonce": deactivation.nonce.to_string(),
        })
    );
    assert_eq!(
        DeactivationRequest::parse_file_text(&text),
        Ok(deactivation)
    );
}

#[test]
fn reading_tolerates_mail_damage() {
    let request = activation();
    let text = request.to_file_text();
    let mangled = format!(
        "Hello admin, here is the file:\r\n\r\n{}\r\n-- \r\nsent from a phone\r\n",
        text.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\r\n")
    );
    assert_eq!(ActivationRequest::parse_file_text(&mangled), Ok(request));
}

#[test]
fn wrong_or_damaged_request_files_are_refused() {
    let request = activation();
    let text = request.to_file_text();
    assert_eq!(
        DeactivationRequest::parse_file_text(&text),
        Err(FileError::MissingArmor("DEACTIVATION REQUEST"))
    );
    // The right armor around the wrong type.
    let swapped = text.replace("ACTIVATION REQUEST", "DEACTIVATION REQUEST");
    assert!(matches!(
        DeactivationRequest::parse_file_text(&swapped),
        Err(FileError::WrongType { .. })
    ));
    let truncated: String = text.lines().take(2).collect::<Vec<_>>().join("\n");
    assert_eq!(
        ActivationRequest::parse_file_text(&truncated),
        Err(FileError::MissingArmor("ACTIVATION REQUEST"))
    );
    let empty = "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----\n";
    assert_eq!(
        ActivationRequest::parse_file_text(empty),
        Err(FileError::Empty("ACTIVATION REQUEST"))
    );
    let not_base64 = empty.replace("-----\n-----END", "-----\n!!!!\n-----END");
    assert_eq!(
        ActivationRequest::parse_file_text(&not_base64),
        Err(FileError::Base64)
    );

    let rewrite = |edit: &dyn Fn(&mut Value)| {
        let mut json = decoded_json(&text);
        edit(&mut json);
        let body = Base64::encode_string(json.to_string().as_bytes());
        format!(
            "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n{body}\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----\n"
        )
    };
    assert_eq!(
        ActivationRequest::parse_file_text(&rewrite(&|j| j["version"] = json!(2))),
        Err(FileError::Version(2))
    );
    for edit in [
        &(|j: &mut Value| j["fingerprint"] = json!("has space")) as &dyn Fn(&mut Value),
        &|j| j["app_id"] = json!("nope"),
        &|j| j["environment"] = json!("staging"),
        &|j| j["nonce"] = json!(1),
    ] {
        assert!(matches!(
            ActivationRequest::parse_file_text(&rewrite(edit)),
            Err(FileError::Json(_))
        ));
    }
}

#[test]
fn an_activation_response_is_verified_like_any_offline_token() {
    let key = TestKey::generate();
    let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
    let mut claims = testkit::claims(NOW);
    claims["kind"] = json!("offline_activation");
    claims["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
    let token = key.token(&claims);
    let text = format!(
        "-----BEGIN LICENSE-LEDGER ACTIVATION RESPONSE-----\n{token}\n-----END LICENSE-LEDGER ACTIVATION RESPONSE-----\n"
    );
    assert_eq!(ActivationResponse::new(token.clone()).to_file_text(), text);

    let response = ActivationResponse::parse_file_text(&text).unwrap();
    assert_eq!(response.token(), token);
    let at = DateTime::from_timestamp(NOW, 0).unwrap();
    let verified = response
        .verify(&verifier, app(), Some(FINGERPRINT), at)
        .unwrap();
    assert_eq!(
        verified.installation_id.map(|i| i.to_string()).as_deref(),
        Some("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b")
    );
    assert_eq!(
        response.verify(&verifier, app(), Some("another-device"), at),
        Err(VerifyError::FingerprintMismatch)
    );

    // A wrapped token (mail) still reads; a forged one does not verify.
    let (head, tail) = token.split_at(40);
    let wrapped = text.replace(&token, &format!("{head}\n{tail}"));
    assert_eq!(
        ActivationResponse::parse_file_text(&wrapped).unwrap(),
        response
    );
    let forged = TestKey::generate().token(&claims);
    let forged = ActivationResponse::parse_file_text(&text.replace(&token, &forged)).unwrap();
    assert!(
        forged
            .verify(&verifier, app(), Some(FINGERPRINT), at)
            .is_err()
    );

    assert_eq!(token_from_text(&text).unwrap(), token);
    assert_eq!(token_from_text(&format!("  {token}\n")).unwrap(), token);
    assert_eq!(token_from_text("not a token"), Err(FileError::NotAToken));
    assert_eq!(
        ActivationResponse::parse_file_text(&text.replace(&token, "a b")),
        Err(FileError::NotAToken)
    );
}

#[test]
fn a_deactivation_receipt_reads_and_verifies() {
    let key = TestKey::generate();
    let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
    let mut claims = testkit::claims(NOW);
    claims["kind"] = json!("deactivation_receipt");
    claims["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
    let token = key.token(&claims);
    let text = DeactivationReceipt::new(token.clone()).to_file_text();
    assert!(text.starts_with("-----BEGIN LICENSE-LEDGER DEACTIVATION RECEIPT-----\n"));
    let receipt = DeactivationReceipt::parse_file_text(&text).unwrap();
    let at = DateTime::from_timestamp(NOW, 0).unwrap();
    let verified = receipt
        .verify(&verifier, app(), Some(FINGERPRINT), at)
        .unwrap();
    assert_eq!(verified.fingerprint, FINGERPRINT);
    // A receipt file is not an activation response.
    assert_eq!(
        ActivationResponse::parse_file_text(&text),
        Err(FileError::MissingArmor("ACTIVATION RESPONSE"))
    );
}
