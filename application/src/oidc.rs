//! OpenID Connect access tokens from configured issuers: discovery, the issuers' keys, and the
//! checks a bearer JWT must pass before the ledger looks up its user (API.md "Identity,
//! organizations and access"; ADR 0020).
//!
//! - Issuers are configured (`--oidc-issuer`, repeatable); a token naming another issuer is
//!   refused before any key is fetched, so a caller cannot make the server fetch URLs.
//! - Discovery (`{issuer}/.well-known/openid-configuration`) and the JWKS are fetched on first
//!   use, not at start: the ledger serves its client applications while a provider is down. The
//!   discovery document must name the configured issuer exactly (OIDC Discovery 4.3).
//! - Keys are cached per issuer; a token whose `kid` the cache does not hold refetches the JWKS,
//!   at most once per [`REFETCH_INTERVAL`] per issuer (a flood of made-up `kid`s costs the
//!   provider nothing).
//! - Accepted algorithms: RS256, ES256 (P-256) and EdDSA (Ed25519), each only with a key of its
//!   own family from the issuer's JWKS. `none` and HMAC never verify: the header's `alg` must be
//!   one of those and the key's, so a token "signed" with the public key as an HMAC secret fails.
//! - `iss`, `aud` (the configured audience), `exp` and `sub` are required; `exp`, `nbf` and
//!   `iat` are checked against the server's clock with 60 s leeway (a token issued in the future
//!   is not valid yet).
//!
//! Every refusal is one [`OidcRejection`] whose text is for logs only: the API answers all of
//! them with the same 401 body.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::values::{Email, Issuer, Subject};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::Digest;
use tokio::sync::{Mutex, RwLock};

/// The least time between two fetches of an issuer's keys caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;
/// The longest a fetch from an identity provider may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The most verified tokens remembered (a client sends the same token until it expires).
const VERIFIED_CAPACITY: usize = 10_000;
/// The largest discovery document or JWKS read (providers' are a few kB).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// The longest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What the ledger accepts OIDC tokens from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuers: Vec<Issuer>,
    /// The `aud` a token must carry.
    pub audience: String,
}

impl OidcConfig {
    /// The audience tokens carry when none is configured.
    pub const DEFAULT_AUDIENCE: &'static str = "license-ledger";
}

/// A token that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub issuer: Issuer,
    pub subject: Subject,
    /// The `email` claim, when the token carries a well-formed one.
    pub email: Option<Email>,
    /// The `email_verified` claim (`true` or `"true"`); false when absent.
    pub email_verified: bool,
}

/// Why a bearer JWT was refused. For logs; the API answers each with the same 401.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OidcRejection {
    #[error("not a JWT")]
    Malformed,
    #[error("the issuer {0:?} is not configured")]
    UnknownIssuer(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key of the issuer matches the token's kid")]
    UnknownKey,
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the identity provider could not be reached: {0}")]
    Provider(String),
}

/// The claims read from a verified token.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    /// Only ID tokens carry these (OpenID Connect Core 3.1.3.6, 3.3.2.11): an ID token is not a
    /// bearer for an API, even when its `aud` (a client id) is the configured audience.
    #[serde(default)]
    at_hash: Option<serde_json::Value>,
    #[serde(default)]
    c_hash: Option<serde_json::Value>,
    /// ID tokens: the `nonce` of the authorization request, and the party the token was issued
    /// to when it has several audiences.
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    /// Checked by the library against the audience; read here to count the audiences.
    #[serde(default)]
    aud: serde_json::Value,
}

/// Only `iss`, read before verification to pick the issuer's keys.
#[derive(Deserialize)]
struct IssuerOnly {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    /// Where a browser logs in and where a code is exchanged (the web UI's login).
    #[serde(default)]
    authorization_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint: Option<String>,
}

/// Where the web UI sends a browser to log in and exchanges the code it comes back with
/// (OpenID Connect Discovery 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
}

/// The web UI as a client of the first issuer (`--ui-oidc-client-id`): a public client relying
/// on PKCE, or a confidential one with its secret (sent with HTTP Basic authentication).
#[derive(Clone, PartialEq, Eq)]
pub struct UiClient {
    pub client_id: String,
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for UiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: configurations are logged.
        f.debug_struct("UiClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A usable key from an issuer's JWKS.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    keys: Vec<Key>,
}

impl Keys {
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&Key> {
        let mut candidates = self.keys.iter().filter(|k| k.algorithm == algorithm);
        match kid {
            Some(kid) => candidates.find(|k| k.kid.as_deref() == Some(kid)),
            // No `kid`: only unambiguous when the issuer has one key for this algorithm.
            None => {
                let first = candidates.next()?;
                candidates.next().is_none().then_some(first)
            }
        }
    }
}

struct Provider {
    issuer: Issuer,
    keys: RwLock<Keys>,
    /// When the keys were last fetched; serializes fetches.
    fetched: Mutex<Option<Instant>>,
}

/// Verifies OIDC access tokens of the configured issuers.
#[derive(Clone)]
pub struct Oidc(Arc<Inner>);

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<hyper::body::Bytes>,
>;

/// A token that verified, remembered by the SHA-256 of its text until it expires: its
/// signature (a quarter of a millisecond for ES256) is not checked again on every request. The
/// times are checked again on every use, against the server's clock.
#[derive(Clone)]
struct Remembered {
    token: VerifiedToken,
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
}

struct Inner {
    issuers: Vec<Issuer>,
    verified: std::sync::Mutex<HashMap<[u8; 32], Remembered>>,
    providers: HashMap<String, Provider>,
    audience: String,
    /// `None` without issuers: a server that accepts no OIDC token needs no TLS roots (a
    /// minimal image may have none).
    http: Option<HttpClient>,
    /// The first issuer's endpoints for the web UI's login, and when they were read: a login
    /// page opened by anyone must not make the server fetch the provider's document each time.
    endpoints: Mutex<Option<(Instant, EndpointsRead)>>,
}

/// What reading the first issuer's endpoints gave.
type EndpointsRead = Result<(Issuer, Endpoints), OidcRejection>;

/// How long the web UI keeps the provider's endpoints before reading its document again.
const ENDPOINTS_FOR: Duration = Duration::from_secs(300);
/// How long a failure to read them is answered without asking the provider again.
const ENDPOINTS_FAILURE_FOR: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuers", &self.0.providers.keys().collect::<Vec<_>>())
            .field("audience", &self.0.audience)
            .finish()
    }
}

impl Oidc {
    /// A verifier for `config`'s issuers.
    ///
    /// # Errors
    /// When issuers are configured and the HTTP client cannot be built (no TLS roots on the
    /// machine).
    pub fn new(config: &OidcConfig) -> Result<Self, anyhow::Error> {
        let http = if config.issuers.is_empty() {
            None
        } else {
            // ring, the provider sqlx's rustls uses, given explicitly: nothing process-wide.
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))?
                // Plain http only for issuers configured with http:// (a provider on the same
                // host or network, which the operator chose); `fetch_keys` refuses keys over
                // http for an https issuer.
                .https_or_http()
                .enable_http1()
                .build();
            Some(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(https),
            )
        };
        let providers = config
            .issuers
            .iter()
            .map(|issuer| {
                (
                    issuer.as_str().to_owned(),
                    Provider {
                        issuer: issuer.clone(),
                        keys: RwLock::new(Keys::default()),
                        fetched: Mutex::new(None),
                    },
                )
            })
            .collect();
        Ok(Self(Arc::new(Inner {
            issuers: config.issuers.clone(),
            verified: std::sync::Mutex::new(HashMap::new()),
            endpoints: Mutex::new(None),
            providers,
            audience: config.audience.clone(),
            http,
        })))
    }

    /// The configured issuers.
    pub fn issuers(&self) -> &[Issuer] {
        &self.0.issuers
    }

    /// Whether any issuer is configured.
    pub fn enabled(&self) -> bool {
        !self.0.providers.is_empty()
    }

    /// Whether `token` looks like a JWT (three base64url parts) rather than a ledger token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.len() <= MAX_TOKEN_BYTES
            && token.split('.').count() == 3
            && token.starts_with("eyJ")
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// Verifies `token` at `now` (the server's clock): issuer configured, signature by one of
    /// its keys with an accepted algorithm, `aud`, `sub`, and the times: `exp` not passed, `nbf`
    /// and `iat` not ahead, each with [`LEEWAY_SECONDS`].
    ///
    /// # Errors
    /// Why it was refused.
    pub async fn verify(
        &self,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedToken, OidcRejection> {
        if !Self::looks_like_jwt(token) {
            return Err(OidcRejection::Malformed);
        }
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let hit = self.remembered().get(&digest).cloned();
        if let Some(r) = hit {
            check_times(r.exp, r.nbf, r.iat, now.timestamp())?;
            return Ok(r.token);
        }
        let (issuer, claims) = self.decode(token, &self.0.audience).await?;
        // ID tokens carry `at_hash`/`c_hash` or, from a code flow without them (Auth0, Okta),
        // the login's `nonce`: none of them is a bearer for the API.
        if claims.at_hash.is_some() || claims.c_hash.is_some() || claims.nonce.is_some() {
            return Err(OidcRejection::Invalid(
                "an ID token, not an access token".into(),
            ));
        }
        check_times(claims.exp, claims.nbf, claims.iat, now.timestamp())?;
        let subject =
            Subject::parse(&claims.sub).map_err(|e| OidcRejection::Invalid(format!("sub: {e}")))?;
        let email_verified = email_verified(claims.email_verified.as_ref());
        let verified = VerifiedToken {
            issuer,
            subject,
            email: claims.email.as_deref().and_then(|e| Email::parse(e).ok()),
            email_verified,
        };
        let mut remembered = self.remembered();
        if remembered.len() >= VERIFIED_CAPACITY {
            // Forget the expired; when every one is still valid, forget them all (the next
            // requests verify once more): bounded memory whatever tokens arrive.
            let now = now.timestamp();
            remembered.retain(|_, r| r.exp.saturating_add(LEEWAY_SECONDS as i64) > now);
            if remembered.len() >= VERIFIED_CAPACITY {
                remembered.clear();
            }
        }
        remembered.insert(
            digest,
            Remembered {
                token: verified.clone(),
                exp: claims.exp,
                nbf: claims.nbf,
                iat: claims.iat,
            },
        );
        Ok(verified)
    }

    /// Checks `token`'s signature by a key of the issuer it names (which must be configured),
    /// its algorithm, `iss` and `aud` (`audience`); the times are the caller's to check.
    async fn decode(&self, token: &str, audience: &str) -> Result<(Issuer, Claims), OidcRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcRejection::Malformed)?;
        let algorithm = header.alg;
        if !matches!(
            algorithm,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(OidcRejection::Algorithm(format!("{algorithm:?}")));
        }
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(token)
            .map_err(|_| OidcRejection::Malformed)?
            .iss
            .ok_or_else(|| OidcRejection::Invalid("no iss claim".into()))?;
        let provider = self
            .0
            .providers
            .get(&iss)
            .ok_or_else(|| OidcRejection::UnknownIssuer(iss.clone()))?;
        let kid = header.kid.as_deref();
        let claims = {
            let keys = self.keys_for(provider, kid, algorithm).await?;
            let key = keys.find(kid, algorithm).ok_or(OidcRejection::UnknownKey)?;
            let mut validation = Validation::new(algorithm);
            validation.algorithms = vec![key.algorithm];
            // The times are checked below against the server's clock, which the rest of the
            // ledger decides with (the library would read the system's).
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.set_issuer(&[provider.issuer.as_str()]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
                .map_err(|e| OidcRejection::Invalid(e.to_string()))?
                .claims
        };
        Ok((provider.issuer.clone(), claims))
    }

    /// Verifies an ID token the web UI received from the token endpoint of the first issuer
    /// (OpenID Connect Core 3.1.3.7): signature, `iss`, `aud` holding `client_id` (and `azp`
    /// naming it when there are several audiences), the `nonce` the login sent, and the times.
    ///
    /// # Errors
    /// Why it was refused.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
        nonce: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<VerifiedToken, OidcRejection> {
        if !Self::looks_like_jwt(token) {
            return Err(OidcRejection::Malformed);
        }
        let (issuer, claims) = self.decode(token, client_id).await?;
        // The login talks to the first issuer only: a token of another configured one is not
        // the answer to this login.
        if self.0.issuers.first() != Some(&issuer) {
            return Err(OidcRejection::Invalid(
                "an ID token of another issuer than the login's".into(),
            ));
        }
        // Several audiences: the token must say it was issued to this client (Core 3.1.3.7
        // step 4).
        let audiences = match &claims.aud {
            serde_json::Value::Array(a) => a.len(),
            _ => 1,
        };
        if audiences > 1 && claims.azp.as_deref() != Some(client_id) {
            return Err(OidcRejection::Invalid(
                "several audiences and no azp naming this client".into(),
            ));
        }
        if claims.iat.is_none() {
            return Err(OidcRejection::Invalid("no iat claim".into()));
        }
        let sent: &[u8] = nonce.as_bytes();
        let nonce_matches = claims
            .nonce
            .as_deref()
            .is_some_and(|n| subtle::ConstantTimeEq::ct_eq(n.as_bytes(), sent).into());
        if !nonce_matches {
            return Err(OidcRejection::Invalid(
                "the nonce is not the login's".into(),
            ));
        }
        if claims.azp.as_deref().is_some_and(|azp| azp != client_id) {
            return Err(OidcRejection::Invalid(
                "issued to another party (azp)".into(),
            ));
        }
        check_times(claims.exp, claims.nbf, claims.iat, now.timestamp())?;
        let subject =
            Subject::parse(&claims.sub).map_err(|e| OidcRejection::Invalid(format!("sub: {e}")))?;
        Ok(VerifiedToken {
            issuer,
            subject,
            email: claims.email.as_deref().and_then(|e| Email::parse(e).ok()),
            email_verified: email_verified(claims.email_verified.as_ref()),
        })
    }

    /// The first issuer's login and token endpoints, from its discovery document (read again
    /// after [`ENDPOINTS_FOR`]: a provider that moved its endpoints is followed, and a flood of
    /// logins costs the provider nothing).
    ///
    /// # Errors
    /// No issuer configured, the provider unreachable, or a document that names another issuer
    /// or lacks the endpoints.
    pub async fn endpoints(&self) -> Result<(Issuer, Endpoints), OidcRejection> {
        // The lock is held to look, never while fetching: a provider that hangs does not queue
        // every login behind one fetch. A failure is remembered a few seconds, so a provider
        // that is down is not asked again by every login page.
        {
            let cached = self.0.endpoints.lock().await;
            if let Some((at, result)) = cached.as_ref() {
                let fresh_for = if result.is_ok() {
                    ENDPOINTS_FOR
                } else {
                    ENDPOINTS_FAILURE_FOR
                };
                if at.elapsed() < fresh_for {
                    return result.clone();
                }
            }
        }
        let result = self.read_endpoints().await;
        *self.0.endpoints.lock().await = Some((Instant::now(), result.clone()));
        result
    }

    async fn read_endpoints(&self) -> Result<(Issuer, Endpoints), OidcRejection> {
        let issuer = self.0.issuers.first().ok_or_else(|| {
            OidcRejection::Provider("no OpenID Connect issuer is configured".into())
        })?;
        let discovery = self.discover(issuer).await?;
        let (Some(authorization), Some(token)) =
            (discovery.authorization_endpoint, discovery.token_endpoint)
        else {
            return Err(OidcRejection::Provider(
                "the discovery document names no authorization or token endpoint".into(),
            ));
        };
        // A code and a client secret travel to the token endpoint: https for an https issuer.
        if issuer.as_str().starts_with("https://")
            && !(token.starts_with("https://") && authorization.starts_with("https://"))
        {
            return Err(OidcRejection::Provider(
                "the issuer is https but names an endpoint over http".into(),
            ));
        }
        Ok((
            issuer.clone(),
            Endpoints {
                authorization,
                token,
            },
        ))
    }

    /// Exchanges an authorization code for tokens at `token_endpoint` (RFC 6749 4.1.3, with
    /// the PKCE verifier of RFC 7636 4.5) and returns the ID token.
    ///
    /// # Errors
    /// The provider unreachable or refusing the code; an answer without an ID token.
    pub async fn exchange_code(
        &self,
        token_endpoint: &str,
        client: &UiClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, OidcRejection> {
        use http_body_util::BodyExt;
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
        }
        let failed = |e: &dyn std::fmt::Display| {
            OidcRejection::Provider(format!("token endpoint {token_endpoint}: {e}"))
        };
        // Built before any await: the serializer is not `Send`.
        let (form, authorization) = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("code_verifier", verifier);
            let authorization = match &client.client_secret {
                // RFC 6749 2.3.1: each part form-encoded, then Basic.
                Some(secret) => {
                    let encode = |v: &str| -> String {
                        url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
                    };
                    let pair = format!("{}:{}", encode(&client.client_id), encode(secret));
                    Some(format!(
                        "Basic {}",
                        <base64ct::Base64 as base64ct::Encoding>::encode_string(pair.as_bytes())
                    ))
                }
                None => {
                    form.append_pair("client_id", &client.client_id);
                    None
                }
            };
            (form.finish(), authorization)
        };
        let mut request = hyper::Request::post(token_endpoint)
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some(authorization) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(http_body_util::Full::new(hyper::body::Bytes::from(form)))
            .map_err(|e| failed(&e))?;
        let exchange = async {
            let http = self
                .0
                .http
                .as_ref()
                .ok_or_else(|| failed(&"no issuer is configured"))?;
            let response = http.request(request).await.map_err(|e| failed(&e))?;
            let status = response.status();
            let limited = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
            let body = limited.collect().await.map_err(|e| failed(&e))?.to_bytes();
            if !status.is_success() {
                // The provider's `error` (RFC 6749 5.2), for the log: never the request.
                let error = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(short))
                    .unwrap_or_default();
                // 4xx: this code (or this client) was refused; anything else: the provider
                // failed, and a later login may work.
                if status.is_client_error() {
                    return Err(OidcRejection::Invalid(format!(
                        "the token endpoint refused the code: {status} {error}"
                    )));
                }
                return Err(failed(&format!("{status} {error}")));
            }
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| failed(&e))?;
            answer
                .id_token
                .ok_or_else(|| failed(&"the answer carries no id_token (was `openid` granted?)"))
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(&"timed out"))?
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Remembered>> {
        self.0
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The issuer's keys, fetched when none are held yet or when none matches `kid` (then at
    /// most once per [`REFETCH_INTERVAL`]).
    async fn keys_for<'a>(
        &self,
        provider: &'a Provider,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<tokio::sync::RwLockReadGuard<'a, Keys>, OidcRejection> {
        {
            let keys = provider.keys.read().await;
            if keys.find(kid, algorithm).is_some() {
                return Ok(keys);
            }
        }
        let mut fetched = provider.fetched.lock().await;
        // Another request may have fetched while this one waited.
        {
            let keys = provider.keys.read().await;
            if keys.find(kid, algorithm).is_some() {
                return Ok(keys);
            }
        }
        if fetched.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Err(OidcRejection::UnknownKey);
        }
        let jwks_uri = provider.keys.read().await.jwks_uri.clone();
        let result = self.fetch_keys(&provider.issuer, jwks_uri).await;
        // A failed fetch counts too: a provider that is down is not asked again at once.
        *fetched = Some(Instant::now());
        let fresh = result?;
        *provider.keys.write().await = fresh;
        Ok(provider.keys.read().await)
    }

    /// The issuer's discovery document, which must name the issuer exactly (OIDC Discovery
    /// 4.3): what the keys and the web UI's endpoints are read from.
    async fn discover(&self, issuer: &Issuer) -> Result<Discovery, OidcRejection> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.as_str().trim_end_matches('/')
        );
        let discovery: Discovery = self.fetch_json(&url).await?;
        if discovery.issuer != issuer.as_str() {
            return Err(OidcRejection::Provider(format!(
                "the discovery document names issuer {:?}, not {:?}",
                discovery.issuer,
                issuer.as_str()
            )));
        }
        Ok(discovery)
    }

    async fn fetch_keys(
        &self,
        issuer: &Issuer,
        jwks_uri: Option<String>,
    ) -> Result<Keys, OidcRejection> {
        let jwks_uri = match jwks_uri {
            Some(uri) => uri,
            None => self.discover(issuer).await?.jwks_uri,
        };
        if issuer.as_str().starts_with("https://") && !jwks_uri.starts_with("https://") {
            return Err(OidcRejection::Provider(format!(
                "the issuer is https but names its keys at {jwks_uri:?}: keys are fetched over https"
            )));
        }
        let set: JwkSet = self.fetch_json(&jwks_uri).await?;
        let keys = set.keys.iter().filter_map(usable_key).collect::<Vec<_>>();
        tracing::info!(issuer = %issuer.as_str(), keys = keys.len(), "fetched the identity provider's keys");
        Ok(Keys {
            jwks_uri: Some(jwks_uri),
            keys,
        })
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, OidcRejection> {
        use http_body_util::BodyExt;
        let failed = |e: &dyn std::fmt::Display| OidcRejection::Provider(format!("{url}: {e}"));
        let uri: hyper::Uri = url.parse().map_err(|e| failed(&e))?;
        let request = hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Full::default())
            .map_err(|e| failed(&e))?;
        let fetch = async {
            // No redirect is followed: the documents live at the URLs the issuer names.
            let http = self
                .0
                .http
                .as_ref()
                .ok_or_else(|| failed(&"no issuer is configured"))?;
            let response = http.request(request).await.map_err(|e| failed(&e))?;
            if !response.status().is_success() {
                return Err(failed(&response.status()));
            }
            let limited = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
            let body = limited.collect().await.map_err(|e| failed(&e))?.to_bytes();
            serde_json::from_slice(&body).map_err(|e| failed(&e))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| failed(&"timed out"))?
    }
}

/// At most 64 characters of `text`, each of RFC 6749's error-code set minus quotes and
/// backslashes: what a provider's error says, fit for a log line.
pub fn short(text: &str) -> String {
    text.chars()
        .filter(|c| (' '..='~').contains(c) && !matches!(c, '"' | '\\'))
        .take(64)
        .collect()
}

/// The `email_verified` claim: `true`, or `"true"` as some providers send it.
fn email_verified(claim: Option<&serde_json::Value>) -> bool {
    matches!(claim, Some(serde_json::Value::Bool(true)))
        || matches!(claim, Some(serde_json::Value::String(s)) if s == "true")
}

/// `exp` not passed, `nbf` and `iat` not ahead of `now`, each with [`LEEWAY_SECONDS`].
fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    now: i64,
) -> Result<(), OidcRejection> {
    let leeway = LEEWAY_SECONDS as i64;
    if exp.saturating_add(leeway) <= now {
        return Err(OidcRejection::Invalid("expired".into()));
    }
    if nbf.is_some_and(|nbf| nbf.saturating_sub(leeway) > now) {
        return Err(OidcRejection::Invalid("not valid yet (nbf)".into()));
    }
    if iat.is_some_and(|iat| iat.saturating_sub(leeway) > now) {
        return Err(OidcRejection::Invalid("issued in the future (iat)".into()));
    }
    Ok(())
}

/// A JWK the ledger verifies with: RSA (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA), for
/// signatures. Others (encryption keys, HMAC secrets, other curves) are left out.
fn usable_key(jwk: &Jwk) -> Option<Key> {
    use jsonwebtoken::jwk::PublicKeyUse;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    // A key that declares an algorithm is used with that one only.
    if let Some(declared) = jwk.common.key_algorithm {
        let same = matches!(
            (declared, algorithm),
            (jsonwebtoken::jwk::KeyAlgorithm::RS256, Algorithm::RS256)
                | (jsonwebtoken::jwk::KeyAlgorithm::ES256, Algorithm::ES256)
                | (jsonwebtoken::jwk::KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        );
        if !same {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compact_jwts_are_looked_at() {
        assert!(Oidc::looks_like_jwt(
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
        ));
        assert!(!Oidc::looks_like_jwt("llt_0193_secret"));
        assert!(!Oidc::looks_like_jwt("eyJ.a.b.c"));
        assert!(!Oidc::looks_like_jwt("eyJ a.b.c"));
        assert!(!Oidc::looks_like_jwt(&format!(
            "eyJ{}.a.b",
            "x".repeat(MAX_TOKEN_BYTES)
        )));
    }

    #[tokio::test]
    async fn a_token_of_an_issuer_not_configured_is_refused_before_any_fetch() {
        let oidc = Oidc::new(&OidcConfig {
            issuers: vec![Issuer::parse("https://login.example.com").unwrap()],
            audience: OidcConfig::DEFAULT_AUDIENCE.into(),
        })
        .unwrap();
        // header {"alg":"ES256","kid":"k"}, payload {"iss":"https://evil.example","sub":"a"}
        let header = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ";
        let payload = "eyJpc3MiOiJodHRwczovL2V2aWwuZXhhbXBsZSIsInN1YiI6ImEifQ";
        let token = format!("{header}.{payload}.c2ln");
        assert_eq!(
            oidc.verify(&token, chrono::Utc::now()).await,
            Err(OidcRejection::UnknownIssuer("https://evil.example".into()))
        );
        // {"alg":"HS256"} and {"alg":"none"} never reach the keys.
        let hs = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln");
        assert!(matches!(
            oidc.verify(&hs, chrono::Utc::now()).await,
            Err(OidcRejection::Algorithm(_))
        ));
        let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
        assert!(oidc.verify(&none, chrono::Utc::now()).await.is_err());
    }
}
