//! Helpers the client API tests share: reading answers, a second App GUID, and JWTs checked with
//! the standard `jsonwebtoken` crate rather than our own code.

use base64ct::Encoding;
use serde_json::Value;

/// The string field `k` of `v`; panics naming the field when it is missing.
pub(crate) fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} in {v}"))
        .to_owned()
}

/// An App GUID no product in the tests is registered under.
pub(crate) const OTHER_APP: &str = "0f0e0d0c-0b0a-4999-8888-777766665555";

/// The claims of `token`, decoded without verifying it.
pub(crate) fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64ct::Base64UrlUnpadded::decode_vec(payload).unwrap()).unwrap()
}

/// Verifies `token` with nothing but the JWKS, using the `jsonwebtoken` crate.
pub(crate) fn verify_with_jsonwebtoken(
    token: &str,
    jwks: &Value,
    audience: &str,
) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["license-ledger"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}
