//! The test identity provider (`tests::idp`, a real `oidc-provider` run by Node) against a
//! standard JWT library: its access tokens, obtained through the authorization code flow with
//! PKCE, verify with nothing but the keys its discovery document points to, and carry the claims
//! the ledger will read (`iss`, `aud`, `sub`, `email`, `email_verified`, `exp`, `iat`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::Value;
use tests::idp::{IdpUser, LEDGER_AUDIENCE, SigningAlg, TestIdp, TokenOptions};

/// The provider's discovery document and the JWKS it names.
async fn discovery_and_jwks(idp: &TestIdp) -> (Value, JwkSet) {
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(discovery["issuer"], idp.issuer(), "{discovery}");
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri").to_owned();
    let jwks: Value = reqwest::get(jwks_uri).await.unwrap().json().await.unwrap();
    for key in jwks["keys"].as_array().expect("keys") {
        assert!(key.get("d").is_none(), "a private key in the JWKS: {key}");
    }
    (discovery, serde_json::from_value(jwks).unwrap())
}

/// Verifies `token` with the JWKS alone: signature with the key its `kid` names, `alg`,
/// `typ: at+jwt`, issuer, audience, expiry (no leeway); returns the claims.
fn verify(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
    alg: Algorithm,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, alg);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("a kid in the header");
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation).map(|data| data.claims)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_ledger_token_verifies_with_the_jwks_and_names_the_user() {
    let idp = TestIdp::start().await;
    let (discovery, jwks) = discovery_and_jwks(&idp).await;
    assert!(
        discovery["code_challenge_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&Value::from("S256")),
        "{discovery}"
    );

    let alice = IdpUser::verified("alice", "alice@example.com");
    let token = idp.access_token(&alice).await;
    let claims = verify(
        &token,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::ES256,
    )
    .unwrap_or_else(|e| panic!("{e}: {token}"));
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], "license-ledger");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["client_id"], "ledger-tests");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((iat - now()).abs() < 60, "{claims}");
    assert_eq!(exp - iat, 3600, "{claims}");

    // Another user, with an unverified email, gets a token of their own.
    let bob = IdpUser {
        subject: "bob-7".to_owned(),
        email: "bob@example.org".to_owned(),
        email_verified: false,
    };
    let token = idp.access_token(&bob).await;
    let claims = verify(
        &token,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::ES256,
    )
    .unwrap();
    assert_eq!(claims["sub"], "bob-7");
    assert_eq!(claims["email"], "bob@example.org");
    assert_eq!(claims["email_verified"], false);
}

#[tokio::test]
async fn another_resource_gives_a_token_with_another_audience() {
    let idp = TestIdp::start().await;
    let (_, jwks) = discovery_and_jwks(&idp).await;
    let alice = IdpUser::verified("alice", "alice@example.com");

    let token = idp.access_token_for(&alice, "other-api").await;
    let claims = verify(&token, &jwks, idp.issuer(), "other-api", Algorithm::ES256).unwrap();
    assert_eq!(claims["aud"], "other-api");
    assert_eq!(claims["sub"], "alice");
    // Signed by the same provider, and still not a token for the ledger.
    let refused = verify(
        &token,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::ES256,
    )
    .unwrap_err();
    assert_eq!(
        refused.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
}

#[tokio::test]
async fn rs256_and_a_short_lifetime_on_request() {
    let idp = TestIdp::start().await;
    let (_, jwks) = discovery_and_jwks(&idp).await;
    let alice = IdpUser::verified("alice", "alice@example.com");
    let options = TokenOptions {
        alg: SigningAlg::Rs256,
        ttl: Some(Duration::from_secs(1)),
        ..TokenOptions::default()
    };

    let token = idp.access_token_with(&alice, &options).await;
    let claims = verify(
        &token,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::RS256,
    )
    .unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    let exp = claims["exp"].as_i64().unwrap();
    assert_eq!(exp - claims["iat"].as_i64().unwrap(), 1, "{claims}");

    // The token really expires.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = verify(
        &token,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::RS256,
    )
    .unwrap_err();
    assert_eq!(
        expired.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}
