//! The unit tests of the verifier: every step of `docs/client-protocol.md`, each way a token
//! can be forged, damaged or misused, and the claims it yields once it verifies.

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::*;
use crate::testkit::{self, APP_ID, FINGERPRINT, NOW, OTHER_APP_ID, TestKey, b64};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn app() -> AppId {
    AppId::parse(APP_ID).unwrap()
}

fn setup() -> (TestKey, Verifier) {
    let key = TestKey::generate();
    let verifier = Verifier::new(Jwks::from_json(&key.jwks_json()).unwrap());
    (key, verifier)
}

fn verify(verifier: &Verifier, token: &str) -> Result<Claims, VerifyError> {
    verifier.verify(token, app(), Some(FINGERPRINT), at(NOW))
}

/// A token with the server's header and the given claims, signed over arbitrary header JSON.
fn with_claims(key: &TestKey, edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = testkit::claims(NOW);
    edit(&mut claims);
    key.token(&claims)
}

#[test]
fn a_valid_token_verifies() {
    let (key, verifier) = setup();
    let claims = verify(&verifier, &key.token(&testkit::claims(NOW))).unwrap();
    assert_eq!(claims.aud, app());
    assert_eq!(claims.kind, TokenKind::Offline);
    assert!(claims.has_feature("pro"));
    assert_eq!(claims.fingerprint.as_deref(), Some(FINGERPRINT));
    assert_eq!(claims.expires_at(), at(NOW + 86_400));
    assert_eq!(
        claims.policy.map(|p| p.model),
        Some(LicenseModel::NodeLocked)
    );
}

#[test]
fn a_token_with_one_byte_changed_anywhere_is_refused() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    assert!(verify(&verifier, &token).is_ok());
    let bytes = token.as_bytes();
    for position in 0..bytes.len() {
        // Two changes per position: the lowest bit (a neighbouring base64url character, which
        // in the last signature character only touches padding bits), and another character.
        let other = if bytes[position] == b'A' { b'B' } else { b'A' };
        for replacement in [bytes[position] ^ 1, other] {
            let mut tampered = bytes.to_vec();
            tampered[position] = replacement;
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(
                verify(&verifier, &tampered).is_err(),
                "changing byte {position} to {:?} was not noticed",
                char::from(replacement)
            );
        }
    }
}

#[test]
fn alg_none_is_refused() {
    let (key, verifier) = setup();
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    let token = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(testkit::claims(NOW).to_string().as_bytes())
    );
    assert_eq!(
        verify(&verifier, &token),
        Err(VerifyError::Algorithm("none".to_owned()))
    );
    // Without the kid too, and with the alg spelled differently.
    for alg in ["None", "NONE", "es256", "ES256 "] {
        let header = json!({"alg": alg, "kid": key.kid});
        let token = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(testkit::claims(NOW).to_string().as_bytes())
        );
        assert_eq!(
            verify(&verifier, &token),
            Err(VerifyError::Algorithm(alg.to_owned()))
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let (key, verifier) = setup();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(testkit::claims(NOW).to_string().as_bytes())
    );
    let secrets = [
        key.public_jwk().to_string().into_bytes(),
        key.jwks_json().into_bytes(),
        key.sec1(),
    ];
    for secret in secrets {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(signing_input.as_bytes());
        let tag = mac.finalize().into_bytes();
        let token = format!("{signing_input}.{}", b64(&tag));
        assert_eq!(
            verify(&verifier, &token),
            Err(VerifyError::Algorithm("HS256".to_owned()))
        );
    }
}

fn with_signature(token: &str, signature: &[u8]) -> String {
    let signing_input = token.rsplit_once('.').unwrap().0;
    format!("{signing_input}.{}", b64(signature))
}

#[test]
fn an_all_zero_signature_is_refused() {
    let (key, verifier) = setup();
    let token = with_signature(&key.token(&testkit::claims(NOW)), &[0u8; 64]);
    assert_eq!(verify(&verifier, &token), Err(VerifyError::SignatureRange));
}

#[test]
fn out_of_range_signatures_are_refused() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    let good = b64::decode(token.rsplit_once('.').unwrap().1).unwrap();
    let (r, s) = good.split_at(32);
    // The order n of the P-256 group.
    let n: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let ones = [0xffu8; 32];
    let zero = [0u8; 32];
    for (bad_r, bad_s) in [
        (&n[..], s),
        (r, &n[..]),
        (&ones[..], s),
        (r, &ones[..]),
        (&zero[..], s),
        (r, &zero[..]),
    ] {
        let signature = [bad_r, bad_s].concat();
        assert_eq!(
            verify(&verifier, &with_signature(&token, &signature)),
            Err(VerifyError::SignatureRange)
        );
    }
    // n - 1 is in range but is not the signature.
    let mut n_minus_1 = n;
    n_minus_1[31] -= 1;
    let signature = [r, &n_minus_1[..]].concat();
    assert_eq!(
        verify(&verifier, &with_signature(&token, &signature)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn signatures_of_the_wrong_length_are_refused() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    let good = b64::decode(token.rsplit_once('.').unwrap().1).unwrap();
    for len in [0, 32, 63, 65, 72] {
        let mut signature = good.clone();
        signature.resize(len, 1);
        assert_eq!(
            verify(&verifier, &with_signature(&token, &signature)),
            Err(VerifyError::SignatureLength(len))
        );
    }
    // A DER-encoded signature is not the JWS encoding either.
    let der = p256::ecdsa::Signature::from_slice(&good).unwrap().to_der();
    assert!(verify(&verifier, &with_signature(&token, der.as_bytes())).is_err());
}

#[test]
fn an_unknown_kid_is_refused() {
    let (key, verifier) = setup();
    let other = TestKey::generate();
    // Signed by a key the client does not trust, under its own kid.
    let token = other.token(&testkit::claims(NOW));
    assert_eq!(
        verify(&verifier, &token),
        Err(VerifyError::UnknownKid(other.kid.clone()))
    );
    // Signed by an untrusted key but claiming the trusted kid.
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
    let token = other.sign(&header, &testkit::claims(NOW));
    assert_eq!(verify(&verifier, &token), Err(VerifyError::BadSignature));
    // No kid at all.
    let token = key.sign(&json!({"alg": "ES256"}), &testkit::claims(NOW));
    assert_eq!(verify(&verifier, &token), Err(VerifyError::MissingKid));
}

#[test]
fn another_app_guid_in_aud_is_refused() {
    let (key, verifier) = setup();
    let token = with_claims(&key, |c| c["aud"] = json!(OTHER_APP_ID));
    assert_eq!(
        verify(&verifier, &token),
        Err(VerifyError::Audience {
            expected: app(),
            found: AppId::parse(OTHER_APP_ID).unwrap()
        })
    );
    // An array audience is not the protocol's.
    let token = with_claims(&key, |c| c["aud"] = json!([APP_ID]));
    assert!(matches!(
        verify(&verifier, &token),
        Err(VerifyError::Claims(_))
    ));
}

#[test]
fn aud_is_compared_as_a_uuid() {
    let (key, verifier) = setup();
    let token = with_claims(&key, |c| c["aud"] = json!(APP_ID.to_uppercase()));
    assert!(verify(&verifier, &token).is_ok());
}

#[test]
fn another_fingerprint_is_refused() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    assert_eq!(
        verifier.verify(&token, app(), Some("another-device"), at(NOW)),
        Err(VerifyError::FingerprintMismatch)
    );
    assert_eq!(
        verifier.verify(&token, app(), None, at(NOW)),
        Err(VerifyError::FingerprintRequired)
    );
    // An unbound token is good on any device, and without one.
    let unbound = with_claims(&key, |c| {
        c.as_object_mut().unwrap().remove("fingerprint");
    });
    assert!(verifier.verify(&unbound, app(), None, at(NOW)).is_ok());
    assert!(
        verifier
            .verify(&unbound, app(), Some("another-device"), at(NOW))
            .is_ok()
    );
}

#[test]
fn expiry_is_enforced_beyond_the_leeway_only() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    let exp = NOW + 86_400;
    let check = |now| verifier.verify(&token, app(), Some(FINGERPRINT), at(now));
    assert!(check(exp - 1).is_ok());
    assert!(check(exp).is_ok(), "within leeway");
    assert!(check(exp + 59).is_ok(), "within leeway");
    assert_eq!(
        check(exp + 60),
        Err(VerifyError::Expired { exp, now: exp + 60 })
    );
    assert!(check(exp + 3600).is_err());
}

#[test]
fn a_future_nbf_is_refused_beyond_the_leeway() {
    let (key, verifier) = setup();
    let token = key.token(&testkit::claims(NOW));
    let check = |now| verifier.verify(&token, app(), Some(FINGERPRINT), at(now));
    assert!(check(NOW - 60).is_ok(), "within leeway");
    assert_eq!(
        check(NOW - 61),
        Err(VerifyError::NotYetValid {
            nbf: NOW,
            now: NOW - 61
        })
    );
    assert!(check(NOW - 86_400).is_err());
}

#[test]
fn absurd_times_do_not_panic() {
    let (key, verifier) = setup();
    let token = with_claims(&key, |c| {
        c["nbf"] = json!(i64::MIN);
        c["exp"] = json!(i64::MAX);
    });
    assert!(
        verifier
            .verify(&token, app(), Some(FINGERPRINT), at(NOW))
            .is_ok()
    );
    let token = with_claims(&key, |c| c["exp"] = json!(i64::MIN));
    let err = verify(&verifier, &token).unwrap_err();
    assert!(matches!(err, VerifyError::Expired { .. }));
    assert!(!err.to_string().is_empty());
    let token = with_claims(&key, |c| c["exp"] = json!(1.5e9));
    assert!(matches!(
        verify(&verifier, &token),
        Err(VerifyError::Claims(_))
    ));
}

#[test]
fn a_deactivation_receipt_is_not_a_license() {
    let (key, verifier) = setup();
    let receipt = with_claims(&key, |c| {
        c["kind"] = json!("deactivation_receipt");
        c["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
    });
    assert_eq!(
        verify(&verifier, &receipt),
        Err(VerifyError::Kind {
            expected: "offline or offline_activation",
            found: TokenKind::DeactivationReceipt
        })
    );
    let claims = verifier
        .verify_receipt(&receipt, app(), Some(FINGERPRINT), at(NOW + 400 * 86_400))
        .unwrap();
    assert_eq!(claims.fingerprint, FINGERPRINT);
    assert!(
        verifier
            .verify_receipt(&receipt, app(), Some("another-device"), at(NOW))
            .is_err()
    );

    let unknown = with_claims(&key, |c| c["kind"] = json!("session"));
    assert!(matches!(
        verify(&verifier, &unknown),
        Err(VerifyError::Kind {
            found: TokenKind::Unknown,
            ..
        })
    ));
    // And a license is not a receipt.
    let license = key.token(&testkit::claims(NOW));
    assert!(matches!(
        verifier.verify_receipt(&license, app(), None, at(NOW)),
        Err(VerifyError::Kind { .. })
    ));
}

#[test]
fn an_offline_activation_token_verifies() {
    let (key, verifier) = setup();
    let token = with_claims(&key, |c| {
        c["kind"] = json!("offline_activation");
        c["installation_id"] = json!("1b2c3d4e-5f60-4718-9a2b-3c4d5e6f7a8b");
    });
    let claims = verify(&verifier, &token).unwrap();
    assert_eq!(claims.kind, TokenKind::OfflineActivation);
    assert!(claims.installation_id.is_some());
}

#[test]
fn malformed_tokens_are_errors_not_panics() {
    let (key, verifier) = setup();
    let good = key.token(&testkit::claims(NOW));
    let (h, rest) = good.split_once('.').unwrap();
    let (c, s) = rest.split_once('.').unwrap();
    let cases: Vec<(String, VerifyError)> = vec![
        (String::new(), VerifyError::PartCount(1)),
        ("a.b".to_owned(), VerifyError::PartCount(2)),
        (format!("{good}.x"), VerifyError::PartCount(4)),
        (format!("{h}=.{c}.{s}"), VerifyError::Base64(Part::Header)),
        (
            format!("{h}.{c}.{s}="),
            VerifyError::Base64(Part::Signature),
        ),
        (format!("{h}.{c}!.{s}"), VerifyError::BadSignature),
        ("x".repeat(MAX_TOKEN_LEN + 1), VerifyError::TooLong),
    ];
    for (token, expected) in cases {
        assert_eq!(verify(&verifier, &token), Err(expected), "{token:?}");
    }
    assert!(matches!(
        verify(&verifier, ".."),
        Err(VerifyError::Header(_))
    ));
    // A header that is JSON but not an object, or an alg that is not a string.
    for header in [
        "[]",
        "\"ES256\"",
        r#"{"alg": null}"#,
        r#"{"kid": "x"}"#,
        "{",
    ] {
        let token = format!("{}.{c}.{s}", b64(header.as_bytes()));
        assert!(
            matches!(verify(&verifier, &token), Err(VerifyError::Header(_))),
            "{header}"
        );
    }
    // Claims that are signed but not JSON, or not the protocol's.
    for claims in ["not json", "{}", "[]", r#"{"aud": 1}"#] {
        let header = key.header().to_string();
        let token = key.sign(&serde_json::from_str(&header).unwrap(), &json!(null));
        assert!(verify(&verifier, &token).is_err());
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature: Signature =
            p256::ecdsa::signature::Signer::sign(&key.signing, input.as_bytes());
        let token = format!("{input}.{}", b64(&signature.to_bytes()));
        assert!(
            matches!(verify(&verifier, &token), Err(VerifyError::Claims(_))),
            "{claims}"
        );
    }
    // A critical header extension is refused even when signed.
    let token = key.sign(
        &json!({"alg": "ES256", "kid": key.kid, "crit": ["exp"]}),
        &testkit::claims(NOW),
    );
    assert_eq!(verify(&verifier, &token), Err(VerifyError::CriticalHeader));
}
