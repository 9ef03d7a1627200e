//! The claims' JSON both ways: serializing a value gives the protocol's members and nothing
//! else, reading it back gives the same value, and what cannot be verified cannot be written.

use serde_json::{Value, json};

use super::*;
use crate::jwks::Jwks;
use crate::testkit::{self, APP_ID, FINGERPRINT, NOW, TestKey};
use crate::verify::Verifier;

const LICENSE_ID: &str = "0e3b8f3c-5a5d-4b8e-9a51-6f3c2d1e0a9b";
const TOKEN_ID: &str = "7d0f4e2a-1c3b-4a5d-8e6f-9a0b1c2d3e4f";
const POLICY_ID: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const INSTALLATION_ID: &str = "1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b";

fn uuid(text: &str) -> Uuid {
    Uuid::parse_str(text).unwrap()
}

/// The claims of `testkit::claims(NOW)`, built as the server builds them: a struct literal. The
/// App GUID is parsed from upper case, so the test also shows what `aud` is written as.
fn offline_claims() -> Claims {
    Claims {
        iss: "license-ledger".to_owned(),
        sub: uuid(LICENSE_ID),
        aud: AppId::parse(&APP_ID.to_uppercase()).unwrap(),
        iat: NOW,
        nbf: NOW,
        exp: NOW + 86_400,
        jti: uuid(TOKEN_ID),
        features: vec!["pro".to_owned(), "export.pdf".to_owned()],
        fingerprint: Some(FINGERPRINT.to_owned()),
        installation_id: None,
        policy: Some(PolicyRef {
            id: uuid(POLICY_ID),
            version: 2,
            model: LicenseModel::NodeLocked,
        }),
        status: Some("active".to_owned()),
        kind: TokenKind::Offline,
    }
}

fn receipt_claims() -> ReceiptClaims {
    ReceiptClaims {
        iss: Some("license-ledger".to_owned()),
        sub: uuid(LICENSE_ID),
        aud: AppId::parse(APP_ID).unwrap(),
        iat: NOW,
        nbf: Some(NOW),
        exp: Some(NOW + 3650 * 86_400),
        jti: Some(uuid(TOKEN_ID)),
        installation_id: uuid(INSTALLATION_ID),
        fingerprint: FINGERPRINT.to_owned(),
        kind: TokenKind::DeactivationReceipt,
    }
}

/// Asserts that `actual` is a JSON object with exactly the members of `expected`, member by
/// member, so a failure names the member that differs or is extra.
fn assert_members(actual: &Value, expected: &Value) {
    let (actual, expected) = (actual.as_object().unwrap(), expected.as_object().unwrap());
    for (name, value) in expected {
        assert_eq!(actual.get(name), Some(value), "member {name:?}");
    }
    for name in actual.keys() {
        assert!(expected.contains_key(name), "unexpected member {name:?}");
    }
}

#[test]
fn license_claims_serialize_to_the_protocol_json_and_back() {
    let claims = offline_claims();
    let written = serde_json::to_value(&claims).unwrap();
    assert_members(
        &written,
        &json!({
            "iss": "license-ledger",
            "sub": LICENSE_ID,
            "aud": APP_ID,
            "iat": NOW, "nbf": NOW, "exp": NOW + 86_400,
            "jti": TOKEN_ID,
            "features": ["pro", "export.pdf"],
            "fingerprint": FINGERPRINT,
            "policy": {"id": POLICY_ID, "version": 2, "model": "node_locked"},
            "status": "active",
            "kind": "offline",
        }),
    );
    // The same JSON as the independent test kit writes for a server token.
    assert_eq!(written, testkit::claims(NOW));
    assert_eq!(serde_json::from_value::<Claims>(written).unwrap(), claims);
    let text = serde_json::to_string(&claims).unwrap();
    assert_eq!(serde_json::from_str::<Claims>(&text).unwrap(), claims);
}

#[test]
fn absent_license_members_are_omitted_not_null() {
    let claims = Claims {
        fingerprint: None,
        installation_id: None,
        policy: None,
        status: None,
        features: Vec::new(),
        ..offline_claims()
    };
    let written = serde_json::to_value(&claims).unwrap();
    assert_members(
        &written,
        &json!({
            "iss": "license-ledger", "sub": LICENSE_ID, "aud": APP_ID,
            "iat": NOW, "nbf": NOW, "exp": NOW + 86_400, "jti": TOKEN_ID,
            "features": [], "kind": "offline",
        }),
    );
    assert!(!serde_json::to_string(&claims).unwrap().contains("null"));
    assert_eq!(serde_json::from_value::<Claims>(written).unwrap(), claims);

    // Bound to an activation: both members present, with the protocol's spellings.
    let bound = Claims {
        installation_id: Some(uuid(INSTALLATION_ID)),
        kind: TokenKind::OfflineActivation,
        policy: Some(PolicyRef {
            id: uuid(POLICY_ID),
            version: 7,
            model: LicenseModel::Floating,
        }),
        ..offline_claims()
    };
    let written = serde_json::to_value(&bound).unwrap();
    assert_eq!(written["installation_id"], json!(INSTALLATION_ID));
    assert_eq!(written["fingerprint"], json!(FINGERPRINT));
    assert_eq!(written["kind"], json!("offline_activation"));
    assert_eq!(written["policy"]["model"], json!("floating"));
    assert_eq!(serde_json::from_value::<Claims>(written).unwrap(), bound);
}

#[test]
fn receipt_claims_serialize_to_the_protocol_json_and_back() {
    let receipt = receipt_claims();
    let written = serde_json::to_value(&receipt).unwrap();
    assert_members(
        &written,
        &json!({
            "iss": "license-ledger",
            "sub": LICENSE_ID,
            "aud": APP_ID,
            "iat": NOW, "nbf": NOW, "exp": NOW + 3650 * 86_400,
            "jti": TOKEN_ID,
            "kind": "deactivation_receipt",
            "installation_id": INSTALLATION_ID,
            "fingerprint": FINGERPRINT,
        }),
    );
    assert_eq!(
        serde_json::from_value::<ReceiptClaims>(written).unwrap(),
        receipt
    );

    // Only the members a receipt needs, the optional ones left out.
    let minimal = ReceiptClaims {
        iss: None,
        nbf: None,
        exp: None,
        jti: None,
        ..receipt_claims()
    };
    let written = serde_json::to_value(&minimal).unwrap();
    assert_members(
        &written,
        &json!({
            "sub": LICENSE_ID, "aud": APP_ID, "iat": NOW,
            "installation_id": INSTALLATION_ID, "fingerprint": FINGERPRINT,
            "kind": "deactivation_receipt",
        }),
    );
    assert_eq!(
        serde_json::from_value::<ReceiptClaims>(written).unwrap(),
        minimal
    );
}

#[test]
fn unknown_kinds_and_models_refuse_to_serialize() {
    assert!(serde_json::to_string(&TokenKind::Unknown).is_err());
    assert!(serde_json::to_string(&LicenseModel::Unknown).is_err());
    let claims = Claims {
        kind: TokenKind::Unknown,
        ..offline_claims()
    };
    assert!(serde_json::to_value(&claims).is_err());
    assert!(serde_json::to_string(&claims).is_err());
    let claims = Claims {
        policy: Some(PolicyRef {
            id: uuid(POLICY_ID),
            version: 2,
            model: LicenseModel::Unknown,
        }),
        ..offline_claims()
    };
    assert!(serde_json::to_value(&claims).is_err());
    let receipt = ReceiptClaims {
        kind: TokenKind::Unknown,
        ..receipt_claims()
    };
    assert!(serde_json::to_value(&receipt).is_err());

    // The known ones write their protocol spelling, and read back; unknown text still reads.
    for (kind, text) in [
        (TokenKind::Offline, "offline"),
        (TokenKind::OfflineActivation, "offline_activation"),
        (TokenKind::DeactivationReceipt, "deactivation_receipt"),
    ] {
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(text));
        assert_eq!(kind.as_str(), text);
        assert_eq!(
            serde_json::from_value::<TokenKind>(json!(text)).unwrap(),
            kind
        );
    }
    for (model, text) in [
        (LicenseModel::NodeLocked, "node_locked"),
        (LicenseModel::Floating, "floating"),
        (LicenseModel::NamedUser, "named_user"),
    ] {
        assert_eq!(serde_json::to_value(model).unwrap(), json!(text));
        assert_eq!(
            serde_json::from_value::<LicenseModel>(json!(text)).unwrap(),
            model
        );
    }
    assert_eq!(
        serde_json::from_value::<TokenKind>(json!("session")).unwrap(),
        TokenKind::Unknown
    );
    assert_eq!(
        serde_json::from_value::<LicenseModel>(json!("site")).unwrap(),
        LicenseModel::Unknown
    );
}

#[test]
fn serialized_claims_signed_verify_to_the_same_claims() {
    // What the server will do: sign the SDK's own serialization; the verifier reads it back.
    let key = TestKey::generate();
    let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
    let at = DateTime::from_timestamp(NOW, 0).unwrap();
    let claims = offline_claims();
    let token = key.token(&serde_json::to_value(&claims).unwrap());
    assert_eq!(
        verifier.verify(&token, claims.aud, Some(FINGERPRINT), at),
        Ok(claims)
    );
    let receipt = receipt_claims();
    let token = key.token(&serde_json::to_value(&receipt).unwrap());
    assert_eq!(
        verifier.verify_receipt(&token, receipt.aud, Some(FINGERPRINT), at),
        Ok(receipt)
    );
}
