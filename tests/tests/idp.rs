//! The test identity provider (`tests::idp`, a real `oidc-provider` run by Node) against a
//! standard JWT library: its access tokens, obtained through the authorization code flow with
//! PKCE, verify with nothing but the keys its discovery document points to, and carry the claims
//! the ledger will read (`iss`, `aud`, `sub`, `email`, `email_verified`, `exp`, `iat`).
//!
//! And the web UI's clients (issue #18): their code flow goes through the provider's HTML login
//! form, as a browser's does, on whatever loopback port the UI listens, and ends with an ID token
//! for the client that names the user.

use std::time::Duration;

use base64ct::Encoding;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::Digest;
use tests::idp::{
    IdpUser, LEDGER_AUDIENCE, SigningAlg, TestIdp, TokenOptions, UI_CLIENT_ID,
    UI_CONFIDENTIAL_CLIENT_ID, UI_CONFIDENTIAL_CLIENT_SECRET, keep_cookies,
};

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

// ----- the web UI's clients, through the login form -----

/// A browser's side of one login at the provider, spoken with reqwest: no automatic redirects,
/// the provider's cookies kept by hand.
struct FormLogin {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
    client_id: &'static str,
    redirect_uri: String,
    state: String,
    nonce: String,
    verifier: String,
}

/// What a GET or POST answered.
struct Page {
    status: StatusCode,
    location: Option<Url>,
    content_type: String,
    body: String,
}

impl FormLogin {
    fn new(client_id: &'static str, redirect_uri: &str) -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        FormLogin {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
            client_id,
            redirect_uri: redirect_uri.to_owned(),
            state: random(),
            nonce: random(),
            verifier: format!("{}{}", random(), random()),
        }
    }

    /// The authorization request the UI sends: code flow, PKCE S256, `openid email profile`, no
    /// `login_hint` (so the provider asks a human) and no `resource`.
    fn authorization_url(&self, discovery: &Value) -> Url {
        let challenge = base64ct::Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(
            self.verifier.as_bytes(),
        ));
        Url::parse_with_params(
            discovery["authorization_endpoint"].as_str().unwrap(),
            [
                ("client_id", self.client_id),
                ("response_type", "code"),
                ("redirect_uri", &self.redirect_uri),
                ("scope", "openid email profile"),
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .unwrap()
    }

    /// Sends `request` with the provider's cookies and keeps the ones it sets.
    async fn send(&mut self, url: &Url, request: reqwest::RequestBuilder) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            request = request.header(COOKIE, header.join("; "));
        }
        let response = request.send().await.expect("a request to the provider");
        keep_cookies(&mut self.cookies, response.headers());
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(LOCATION).map(|l| url.join(&l).expect("a Location URL"));
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        Page {
            status: response.status(),
            location,
            content_type,
            body: response.text().await.unwrap_or_default(),
        }
    }

    async fn get(&mut self, url: &Url) -> Page {
        let request = self.http.get(url.clone());
        self.send(url, request).await
    }

    /// POSTs `fields` as `application/x-www-form-urlencoded`, as a browser submits a form.
    async fn post_form(&mut self, url: &Url, fields: &[(&str, &str)]) -> Page {
        let request = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(urlencoded(fields));
        self.send(url, request).await
    }

    /// From the authorization request to the login form: returns the form page's URL and HTML.
    async fn open_form(&mut self, idp: &TestIdp, discovery: &Value) -> (Url, String) {
        let start = self.authorization_url(discovery);
        let page = self.get(&start).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "the authorization request {start}: {}\nprovider stderr:\n{}",
            page.body,
            idp.logs()
        );
        let form_url = page.location.expect("a redirect to the interaction");
        assert!(
            form_url.path().starts_with("/interaction/"),
            "the provider sent the browser to {form_url}"
        );
        let page = self.get(&form_url).await;
        assert_eq!(page.status, StatusCode::OK, "the login form: {}", page.body);
        assert!(
            page.content_type.starts_with("text/html"),
            "{}",
            page.content_type
        );
        (form_url, page.body)
    }

    /// Submits the form and follows the provider's redirects to the client: returns `code`.
    async fn submit(&mut self, idp: &TestIdp, form_url: &Url, fields: &[(&str, &str)]) -> String {
        let mut page = self.post_form(form_url, fields).await;
        for _ in 0..5 {
            let location = page.location.clone().unwrap_or_else(|| {
                panic!(
                    "the provider answered {} without a redirect: {}\nprovider stderr:\n{}",
                    page.status,
                    page.body,
                    idp.logs()
                )
            });
            if location.as_str().starts_with(&self.redirect_uri) {
                let get = |name: &str| {
                    location
                        .query_pairs()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.into_owned())
                };
                assert_eq!(get("error"), None, "{location}");
                assert_eq!(get("state").as_deref(), Some(self.state.as_str()));
                assert_eq!(get("iss").as_deref(), Some(idp.issuer()));
                return get("code").unwrap_or_else(|| panic!("no code in {location}"));
            }
            page = self.get(&location).await;
        }
        panic!("the login did not reach the client after 5 redirects");
    }

    /// The code exchanged at the token endpoint with the PKCE verifier; the client authenticates
    /// with HTTP Basic when it has a secret.
    async fn exchange(
        &self,
        discovery: &Value,
        code: &str,
        secret: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut fields = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &self.verifier),
        ];
        let mut request = self
            .http
            .post(discovery["token_endpoint"].as_str().unwrap())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        match secret {
            Some(secret) => {
                // RFC 6749 section 2.3.1: both halves form-urlencoded, then Base64.
                let pair = format!("{}:{}", form_encode(self.client_id), form_encode(secret));
                let basic = base64ct::Base64::encode_string(pair.as_bytes());
                request = request.header(AUTHORIZATION, format!("Basic {basic}"));
            }
            None => fields.push(("client_id", self.client_id)),
        }
        let response = request
            .body(urlencoded(&fields))
            .send()
            .await
            .expect("the token request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, json)
    }

    /// The ID token's claims, verified with the provider's JWKS: RS256, issuer, audience (this
    /// client), expiry; and its `nonce` is the one this login sent.
    fn id_token_claims(&self, response: &Value, jwks: &JwkSet, issuer: &str) -> Value {
        let token = response["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token in {response}"));
        let header = jsonwebtoken::decode_header(token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        let jwk = jwks
            .find(header.kid.as_deref().expect("a kid"))
            .expect("the ID token's kid is in the JWKS");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[self.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims =
            jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
                .unwrap_or_else(|e| panic!("{e}: {token}"))
                .claims;
        assert_eq!(claims["aud"], self.client_id, "{claims}");
        assert_eq!(claims["nonce"], self.nonce.as_str(), "{claims}");
        claims
    }
}

/// `application/x-www-form-urlencoded` of `fields`.
fn urlencoded(fields: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(fields);
    url.query().unwrap_or_default().to_owned()
}

/// One value form-urlencoded.
fn form_encode(value: &str) -> String {
    urlencoded(&[("v", value)])["v=".len()..].to_owned()
}

/// A free loopback port, as the UI's would be (nothing needs to listen: the code is read from
/// the redirect).
fn some_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_ui_client_logs_in_through_the_form_on_any_loopback_port() {
    let idp = TestIdp::start().await;
    let (discovery, jwks) = discovery_and_jwks(&idp).await;
    for scope in ["openid", "email", "profile"] {
        assert!(
            discovery["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&Value::from(scope)),
            "{discovery}"
        );
    }

    let redirect_uri = format!("http://127.0.0.1:{}/auth/callback", some_port());
    let mut login = FormLogin::new(UI_CLIENT_ID, &redirect_uri);
    let (form_url, html) = login.open_form(&idp, &discovery).await;
    // The form a person sees: every field labelled, the checkbox checked, posting back here.
    let uid = form_url.path().trim_start_matches("/interaction/");
    for expected in [
        format!(r#"<form method="post" action="/interaction/{uid}">"#),
        r#"<label for="subject">Subject</label>"#.to_owned(),
        r#"<input id="subject" name="subject" type="text" required"#.to_owned(),
        r#"<label for="email">Email</label>"#.to_owned(),
        r#"<input id="email" name="email" type="text""#.to_owned(),
        r#"<input id="email_verified" name="email_verified" type="checkbox" value="true" checked>"#
            .to_owned(),
        r#"<label for="email_verified">Email verified</label>"#.to_owned(),
        r#"<button type="submit">Sign in</button>"#.to_owned(),
        r#"<html lang="en">"#.to_owned(),
    ] {
        assert!(
            html.contains(&expected),
            "{expected} is not in the form:\n{html}"
        );
    }

    let code = login
        .submit(
            &idp,
            &form_url,
            &[
                ("subject", "carol"),
                ("email", "carol@example.net"),
                ("email_verified", "true"),
            ],
        )
        .await;
    let (status, response) = login.exchange(&discovery, &code, None).await;
    assert_eq!(status, StatusCode::OK, "{response}\n{}", idp.logs());
    let claims = login.id_token_claims(&response, &jwks, idp.issuer());
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["email"], "carol@example.net");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "carol");
    // The access token is the ledger's, as the hint path's are.
    let access = response["access_token"].as_str().unwrap();
    let access = verify(
        access,
        &jwks,
        idp.issuer(),
        LEDGER_AUDIENCE,
        Algorithm::ES256,
    )
    .unwrap();
    assert_eq!(access["sub"], "carol");
    assert_eq!(access["client_id"], UI_CLIENT_ID);

    // `localhost` on another port, the box unchecked (an unchecked checkbox is not sent) and the
    // email left empty.
    let redirect_uri = format!("http://localhost:{}/auth/callback", some_port());
    let mut login = FormLogin::new(UI_CLIENT_ID, &redirect_uri);
    let (form_url, _) = login.open_form(&idp, &discovery).await;
    let code = login
        .submit(&idp, &form_url, &[("subject", "dave"), ("email", "")])
        .await;
    let (status, response) = login.exchange(&discovery, &code, None).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let claims = login.id_token_claims(&response, &jwks, idp.issuer());
    assert_eq!(claims["sub"], "dave");
    assert_eq!(claims["email"], "dave@example.com");
    assert_eq!(claims["email_verified"], false);
}

#[tokio::test]
async fn the_confidential_ui_client_exchanges_its_code_with_its_secret() {
    let idp = TestIdp::start().await;
    let (discovery, jwks) = discovery_and_jwks(&idp).await;
    let redirect_uri = format!("http://127.0.0.1:{}/auth/callback", some_port());
    let mut login = FormLogin::new(UI_CONFIDENTIAL_CLIENT_ID, &redirect_uri);
    let (form_url, _) = login.open_form(&idp, &discovery).await;
    let code = login
        .submit(
            &idp,
            &form_url,
            &[
                ("subject", "erin"),
                ("email", "erin@example.com"),
                ("email_verified", "true"),
            ],
        )
        .await;

    // Without its secret, or with a wrong one, the client is refused (and the code survives).
    let (status, response) = login
        .exchange(&discovery, &code, Some("not-the-secret"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{response}");
    assert_eq!(response["error"], "invalid_client", "{response}");
    let (status, response) = login.exchange(&discovery, &code, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{response}");

    let (status, response) = login
        .exchange(&discovery, &code, Some(UI_CONFIDENTIAL_CLIENT_SECRET))
        .await;
    assert_eq!(status, StatusCode::OK, "{response}\n{}", idp.logs());
    let claims = login.id_token_claims(&response, &jwks, idp.issuer());
    assert_eq!(claims["aud"], UI_CONFIDENTIAL_CLIENT_ID);
    assert_eq!(claims["sub"], "erin");
    assert_eq!(claims["email"], "erin@example.com");
    assert_eq!(claims["email_verified"], true);
}

#[tokio::test]
async fn the_form_escapes_what_it_echoes_and_requires_a_subject() {
    let idp = TestIdp::start().await;
    let (discovery, jwks) = discovery_and_jwks(&idp).await;
    let redirect_uri = format!("http://127.0.0.1:{}/auth/callback", some_port());
    let mut login = FormLogin::new(UI_CLIENT_ID, &redirect_uri);
    let (form_url, _) = login.open_form(&idp, &discovery).await;

    let hostile = r#""><script>alert('x')</script>"#;
    let page = login
        .post_form(&form_url, &[("subject", "  "), ("email", hostile)])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("Subject is required."), "{}", page.body);
    assert!(page.body.contains(r#"role="alert""#), "{}", page.body);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(
        page.body
            .contains("&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{}",
        page.body
    );
    // What was typed stays, the unchecked box too.
    assert!(
        page.body
            .contains(r#"name="email_verified" type="checkbox" value="true">"#),
        "{}",
        page.body
    );

    // The same interaction takes a corrected form.
    let code = login
        .submit(
            &idp,
            &form_url,
            &[("subject", "frank"), ("email_verified", "true")],
        )
        .await;
    let (status, response) = login.exchange(&discovery, &code, None).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    let claims = login.id_token_claims(&response, &jwks, idp.issuer());
    assert_eq!(claims["sub"], "frank");
    assert_eq!(claims["email"], "frank@example.com");
}

#[tokio::test]
async fn the_ui_clients_redirect_only_to_their_loopback_callbacks() {
    let idp = TestIdp::start().await;
    let (discovery, _) = discovery_and_jwks(&idp).await;
    let port = some_port();
    for redirect_uri in [
        // Not loopback: a port is not free to choose there, nor is the host.
        format!("http://ledger.example:{port}/auth/callback"),
        // Loopback, another path.
        format!("http://127.0.0.1:{port}/callback"),
        // Loopback over https is not the loopback redirection of RFC 8252.
        format!("https://127.0.0.1:{port}/auth/callback"),
    ] {
        let mut login = FormLogin::new(UI_CLIENT_ID, &redirect_uri);
        let url = login.authorization_url(&discovery);
        let page = login.get(&url).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{redirect_uri}: {}",
            page.body
        );
        assert!(page.body.contains("invalid_redirect_uri"), "{}", page.body);
    }
}
