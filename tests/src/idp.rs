//! A real OpenID Connect identity provider for the tests: `tests/idp/server.mjs`, the certified
//! `oidc-provider` npm package (version pinned in `tests/idp/package-lock.json`), run by Node.
//!
//! The ledger accepts OIDC access tokens (JWT) from configured issuers; these tests check it with
//! tokens a real provider signed, obtained through the authorization code flow with PKCE as a
//! real client obtains them, never with hand-made JWTs.
//!
//! - [`TestIdp::start`] installs the npm packages when they are missing or stale (`npm ci` in
//!   `tests/idp`, under an exclusive lock so concurrent test binaries install once), starts the
//!   provider on a free loopback port and reads its issuer. Node.js and npm must be installed;
//!   without them the tests fail saying so, they never skip. Dropping the [`TestIdp`] kills the
//!   provider (and it exits by itself when its stdin closes, should the test process die first).
//! - [`TestIdp::access_token`] logs a user in and returns an access token for the audience
//!   `license-ledger`, signed ES256 with a key of the provider's JWKS
//!   (`<issuer>/.well-known/openid-configuration` names it); [`TestIdp::access_token_for`] asks
//!   for another audience (a genuine wrong-audience token), [`TestIdp::access_token_with`] also
//!   for RS256 or a short lifetime.
//!
//! The provider accepts any user: the subject, email and `email_verified` of an [`IdpUser`] travel
//! in the authorization request's `login_hint`, and its interaction page logs that user in and
//! grants what was asked without a form. Its keys, sessions and tokens live in its memory only.
//!
//! The ledger's web UI (issue #18) is a client of its own: [`UI_CLIENT_ID`] (public) or
//! [`UI_CONFIDENTIAL_CLIENT_ID`] with [`UI_CONFIDENTIAL_CLIENT_SECRET`], redirect URIs
//! `http://127.0.0.1:<any port>/auth/callback` and `http://localhost:<any port>/auth/callback`,
//! scopes `openid email profile`, ID tokens that carry `email` and `email_verified`. Its
//! authorization requests have no `login_hint`, so the interaction page shows a login form
//! (Subject, Email, "Email verified", "Sign in") that a browser test fills
//! ([`crate::browser::Browser::login_through_idp`]). The form shows at every sign-in, even in a
//! browser that signed in before: the provider asks the user of a native client each time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64ct::Encoding;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin};

/// The audience the ledger's tokens are for.
pub const LEDGER_AUDIENCE: &str = "license-ledger";
/// The client this harness's flows use: public (no secret), PKCE required.
pub const CLIENT_ID: &str = "ledger-tests";
/// The web UI's public client (no secret, PKCE required); any port on its loopback redirect URIs
/// `http://127.0.0.1/auth/callback` and `http://localhost/auth/callback` is accepted.
pub const UI_CLIENT_ID: &str = "ledger-ui";
/// The web UI's confidential client: as [`UI_CLIENT_ID`], authenticated at the token endpoint
/// with HTTP Basic (`client_secret_basic`) and [`UI_CONFIDENTIAL_CLIENT_SECRET`].
pub const UI_CONFIDENTIAL_CLIENT_ID: &str = "ledger-ui-confidential";
/// [`UI_CONFIDENTIAL_CLIENT_ID`]'s secret.
pub const UI_CONFIDENTIAL_CLIENT_SECRET: &str = "ledger-ui-secret";
/// The client's redirect URI; nothing listens there, the code is read from the redirect.
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// RFC 8707 resource indicators are absolute URIs: `server.mjs` turns this prefix plus an
/// audience into a token whose `aud` is the audience.
const AUDIENCE_URN: &str = "urn:ledger-tests:audience:";
/// The scopes every token is asked with (`ledger` is the resource servers' scope).
const SCOPE: &str = "openid email ledger";
/// How long the provider may take to start (the first start may also install it).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A user of the provider: any subject is accepted, with the email the test gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpUser {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
}

impl IdpUser {
    /// A user whose email is verified.
    pub fn verified(subject: &str, email: &str) -> Self {
        Self {
            subject: subject.to_owned(),
            email: email.to_owned(),
            email_verified: true,
        }
    }

    /// The `login_hint` `server.mjs` reads the account from.
    fn login_hint(&self) -> String {
        for (what, value) in [("subject", &self.subject), ("email", &self.email)] {
            assert!(
                !value.is_empty() && !value.contains([';', '=']),
                "an IdpUser's {what} must be non-empty, without ';' or '=': {value:?}"
            );
        }
        format!(
            "sub={};email={};verified={}",
            self.subject, self.email, self.email_verified
        )
    }
}

/// The algorithm an access token is signed with (both keys are in the provider's JWKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SigningAlg {
    #[default]
    Es256,
    Rs256,
}

impl SigningAlg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// What to ask the provider for, beyond the user.
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    /// The token's `aud`; [`LEDGER_AUDIENCE`] when `None`. An absolute URI is its own audience.
    pub audience: Option<String>,
    /// ES256 unless told.
    pub alg: SigningAlg,
    /// The token's lifetime in whole seconds (at least 1); the provider's default, one hour,
    /// when `None`.
    pub ttl: Option<Duration>,
    /// The authorization request's `nonce`, which the ID token then carries.
    pub nonce: Option<String>,
}

/// The provider, running until dropped.
pub struct TestIdp {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    logs: Arc<Mutex<String>>,
    // Killed on drop (`kill_on_drop`); its stdin, held open here, closes with the test process.
    _child: Child,
    _stdin: ChildStdin,
}

impl TestIdp {
    /// Installs the provider if needed, starts it on `127.0.0.1:0` and reads its discovery
    /// document.
    pub async fn start() -> TestIdp {
        Self::start_with(&[]).await
    }

    /// [`TestIdp::start`] with extra flags for `server.mjs`, such as
    /// `["--access-token-ttl", "60"]`.
    pub async fn start_with(args: &[&str]) -> TestIdp {
        let dir = idp_dir();
        tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || ensure_installed(&dir)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

        let mut child = tokio::process::Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--exit-with-stdin"])
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting `node {}/server.mjs`: {e}", dir.display()));
        let stdin = child.stdin.take().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut logs = kept.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });

        let announced = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                if let Ok(Value::Object(line)) = serde_json::from_str::<Value>(&line)
                    && let Some(Value::String(issuer)) = line.get("issuer")
                {
                    return Some(issuer.clone());
                }
            }
            None
        })
        .await;
        let issuer = match announced {
            Ok(Some(issuer)) => issuer,
            failed => {
                // The stderr reader may still be catching up with a crash's last words.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "the OIDC provider did not announce its issuer ({}); its stderr:\n{}",
                    if failed.is_err() {
                        "timed out"
                    } else {
                        "it exited"
                    },
                    logs.lock().unwrap()
                )
            }
        };
        // Nothing else is written to stdout, but a full pipe must never block the provider.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

        let discovery = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .expect("the provider's discovery document")
            .json::<Value>()
            .await
            .expect("the discovery document is JSON");
        let endpoint = |name: &str| {
            discovery[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in the discovery document {discovery}"))
                .to_owned()
        };
        TestIdp {
            authorization_endpoint: endpoint("authorization_endpoint"),
            token_endpoint: endpoint("token_endpoint"),
            issuer,
            logs,
            _child: child,
            _stdin: stdin,
        }
    }

    /// `http://127.0.0.1:PORT`, the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Everything the provider wrote to stderr so far (its errors, for a failing test's message).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// An access token for `user` with the audience [`LEDGER_AUDIENCE`], signed ES256.
    pub async fn access_token(&self, user: &IdpUser) -> String {
        self.access_token_with(user, &TokenOptions::default()).await
    }

    /// An access token for `user` whose `aud` is `audience` (such as `other-api`).
    pub async fn access_token_for(&self, user: &IdpUser, audience: &str) -> String {
        let options = TokenOptions {
            audience: Some(audience.to_owned()),
            ..TokenOptions::default()
        };
        self.access_token_with(user, &options).await
    }

    /// An access token for `user` as `options` say.
    pub async fn access_token_with(&self, user: &IdpUser, options: &TokenOptions) -> String {
        let answer = self.token_response(user, options).await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in the token response {answer}"))
            .to_owned()
    }

    /// Follows an authorization request a client (the ledger's UI) built, as `user` (named to
    /// the provider by a `login_hint` added to the request, so no form is filled), through the
    /// provider's redirects, and returns the URL it sends the browser back to: the client's
    /// redirect URI with `code` and `state`, or with `error`.
    pub async fn follow_authorization(&self, authorization_url: &str, user: &IdpUser) -> Url {
        let mut url = Url::parse(authorization_url).expect("an authorization URL");
        url.query_pairs_mut()
            .append_pair("login_hint", &user.login_hint());
        let redirect_uri = url
            .query_pairs()
            .find(|(n, _)| n == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .expect("the authorization request names its redirect_uri");
        self.follow(url, &redirect_uri).await
    }

    /// GETs `url` and its redirects, with the provider's cookies (the interaction keeps its state
    /// in them), until a redirect leads to `redirect_uri`, and returns that URL.
    async fn follow(&self, mut url: Url, redirect_uri: &str) -> Url {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // A jar of name -> value, all sent back to the provider (they are all its own).
        let mut cookies: Vec<(String, String)> = Vec::new();
        for _ in 0..10 {
            let mut request = client.get(url.clone());
            if !cookies.is_empty() {
                let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
                request = request.header(COOKIE, header.join("; "));
            }
            let response = request.send().await.expect("a request to the provider");
            keep_cookies(&mut cookies, response.headers());
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = response.text().await.unwrap_or_default();
                panic!(
                    "GET {url} answered {status}, not a redirect: {body}\nprovider stderr:\n{}",
                    self.logs()
                );
            };
            url = url.join(&location).expect("a redirect location");
            if url.as_str().starts_with(redirect_uri) {
                return url;
            }
        }
        panic!("the authorization flow did not reach the client after 10 redirects");
    }

    /// The token endpoint's whole answer (`access_token`, `id_token`, `expires_in`, `scope`,
    /// `token_type`) after the authorization code flow with PKCE for `user`: the authorization
    /// request, the provider's interaction (login and consent), the redirect back to the client
    /// with `code`, and the code exchange.
    pub async fn token_response(&self, user: &IdpUser, options: &TokenOptions) -> Value {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let verifier = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let challenge =
            base64ct::Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(verifier.as_bytes()));
        let state = uuid::Uuid::new_v4().simple().to_string();
        let audience = options.audience.as_deref().unwrap_or(LEDGER_AUDIENCE);
        let resource = format!("{AUDIENCE_URN}{audience}");
        let mut params = vec![
            ("client_id", CLIENT_ID.to_owned()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("scope", SCOPE.to_owned()),
            ("state", state.clone()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".to_owned()),
            ("resource", resource.clone()),
            ("login_hint", user.login_hint()),
            ("access_token_alg", options.alg.as_str().to_owned()),
        ];
        if let Some(ttl) = options.ttl {
            assert!(ttl.as_secs() >= 1, "an access token lives at least 1 s");
            params.push(("access_token_ttl", ttl.as_secs().to_string()));
        }
        if let Some(nonce) = &options.nonce {
            params.push(("nonce", nonce.clone()));
        }
        let url = Url::parse_with_params(&self.authorization_endpoint, &params).unwrap();
        let back = self.follow(url, REDIRECT_URI).await;
        let query: Vec<(String, String)> = back.query_pairs().into_owned().collect();
        let get = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("state"), Some(state.as_str()), "state in {back}");
        if let Some(error) = get("error") {
            panic!(
                "the provider refused the authorization: {error}: {}\nprovider stderr:\n{}",
                get("error_description").unwrap_or_default(),
                self.logs()
            );
        }
        let code = get("code")
            .unwrap_or_else(|| panic!("no code in {back}"))
            .to_owned();

        let mut form = Url::parse("http://form.invalid/").unwrap();
        form.query_pairs_mut().extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", &verifier),
            ("resource", &resource),
        ]);
        let response = client
            .post(&self.token_endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.query().unwrap().to_owned())
            .send()
            .await
            .expect("the token request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::OK,
            "the token endpoint answered {body}\nprovider stderr:\n{}",
            self.logs()
        );
        serde_json::from_str(&body).expect("the token response is JSON")
    }
}

/// Applies a response's `Set-Cookie` headers to `jar` (an expired or empty cookie is removed): the
/// provider's interaction keeps its state in cookies, so a test that drives it by hand with
/// reqwest keeps them here.
pub fn keep_cookies(jar: &mut Vec<(String, String)>, headers: &reqwest::header::HeaderMap) {
    for header in headers.get_all(SET_COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        let mut attributes = header.split(';');
        let Some((name, value)) = attributes.next().and_then(|pair| pair.split_once('=')) else {
            continue;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let expired = attributes.any(|attribute| {
            let attribute = attribute.trim().to_ascii_lowercase();
            attribute.starts_with("expires=thu, 01 jan 1970") || attribute == "max-age=0"
        });
        jar.retain(|(n, _)| *n != name);
        if !expired && !value.is_empty() {
            jar.push((name, value));
        }
    }
}

/// `tests/idp`, where `server.mjs` and its npm packages are.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// Runs `npm ci` in `dir` unless its `node_modules` already holds the pinned `oidc-provider`.
/// Test binaries run concurrently: the first takes an exclusive lock on `package-lock.json`
/// (which `npm ci` only reads) and installs, the others wait for it and find the install done.
fn ensure_installed(dir: &Path) {
    check_tool("node");
    check_tool("npm");
    if installed(dir) {
        return;
    }
    let lock = std::fs::File::open(dir.join("package-lock.json"))
        .unwrap_or_else(|e| panic!("{}/package-lock.json: {e}", dir.display()));
    lock.lock().expect("locking package-lock.json");
    if !installed(dir) {
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .output()
            .expect("running npm ci");
        assert!(
            out.status.success() && installed(dir),
            "`npm ci` in {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The lock is released when `lock` closes.
}

/// Whether `dir/node_modules` is a finished install (npm writes `node_modules/.package-lock.json`
/// last) of the `oidc-provider` version `package.json` pins.
fn installed(dir: &Path) -> bool {
    let read = |path: PathBuf| -> Option<Value> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let Some(manifest) = read(dir.join("package.json")) else {
        panic!("{}/package.json is missing or not JSON", dir.display());
    };
    let pinned = manifest["dependencies"]["oidc-provider"].clone();
    let modules = dir.join("node_modules");
    modules.join(".package-lock.json").is_file()
        && read(modules.join("oidc-provider").join("package.json"))
            .is_some_and(|package| package["version"] == pinned)
}

/// Fails with instructions when `tool` (node or npm) cannot be run.
fn check_tool(tool: &str) {
    let ok = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        ok,
        "`{tool}` is needed: the OIDC tests run a real identity provider (tests/idp, the npm \
         package oidc-provider) with Node.js 18 or newer and npm; install them (for example \
         `apt-get install nodejs npm`) and run the tests again"
    );
}
