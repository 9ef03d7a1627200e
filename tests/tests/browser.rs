//! The browser harness itself (`tests::browser`, headless Chromium over WebDriver), before any UI
//! test leans on it: against a tiny page served here and the test identity provider, not the
//! ledger. It navigates, fills, clicks and reads; its screenshots are PNG files; a download
//! arrives with its bytes; it reads cookies with their flags; a wait that fails names the
//! selector and the page; the provider's login form takes it through to the client's callback;
//! and nothing of chromedriver or Chromium outlives it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64ct::Encoding;
use reqwest::Url;
use serde_json::Value;
use sha2::Digest;
use tests::browser::Browser;
use tests::idp::{IdpUser, TestIdp, UI_CLIENT_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The download's bytes: every byte value, so that no text conversion goes unnoticed.
fn file_bytes() -> Vec<u8> {
    (0..64 * 1024).map(|i| (i % 251) as u8).collect()
}

/// A little site on `127.0.0.1:PORT`, one connection at a time, `Connection: close`:
/// - `/`: a form (`#name`, `#go`) that GETs `/greet`, a download link `#download`, and two
///   cookies (`session`: HttpOnly, SameSite=Strict; `theme`: SameSite=Lax);
/// - `/greet?name=N`: `Hello, N` in `#greeting`, escaped;
/// - `/file.bin`: [`file_bytes`] as an attachment named `ledger-test.bin`;
/// - `/auth/callback?...`: records its query (what the identity provider sent back) and shows
///   `#callback`.
struct Site {
    base: String,
    port: u16,
    callbacks: Arc<Mutex<Vec<String>>>,
}

impl Site {
    async fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let callbacks = Arc::new(Mutex::new(Vec::new()));
        let kept = callbacks.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    // A GET's head only; it ends with an empty line.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let response = respond(&target, &kept);
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Site {
            base: format!("http://127.0.0.1:{port}"),
            port,
            callbacks,
        }
    }
}

fn respond(target: &str, callbacks: &Mutex<Vec<String>>) -> Vec<u8> {
    let url = Url::parse(&format!("http://site.invalid{target}")).unwrap();
    let html = |body: &str| {
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>harness page</title></head><body>{body}</body></html>"
        )
    };
    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = match url.path() {
        "/" => (
            "200 OK",
            vec![
                "Content-Type: text/html; charset=utf-8".into(),
                "Set-Cookie: session=s3cr3t; Path=/; HttpOnly; SameSite=Strict".into(),
                "Set-Cookie: theme=dark; Path=/; SameSite=Lax".into(),
            ],
            html(
                r#"<h1>Harness</h1>
                <form method="get" action="/greet">
                  <label for="name">Name</label> <input id="name" name="name">
                  <button id="go" type="submit">Greet</button>
                </form>
                <p><a id="download" href="/file.bin">Download the file</a></p>"#,
            )
            .into_bytes(),
        ),
        "/greet" => {
            let name = url
                .query_pairs()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let name = name
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            (
                "200 OK",
                vec!["Content-Type: text/html; charset=utf-8".into()],
                html(&format!(r#"<p id="greeting">Hello, {name}</p>"#)).into_bytes(),
            )
        }
        "/file.bin" => (
            "200 OK",
            vec![
                "Content-Type: application/octet-stream".into(),
                "Content-Disposition: attachment; filename=\"ledger-test.bin\"".into(),
            ],
            file_bytes(),
        ),
        "/auth/callback" => {
            callbacks
                .lock()
                .unwrap()
                .push(url.query().unwrap_or_default().to_owned());
            (
                "200 OK",
                vec!["Content-Type: text/html; charset=utf-8".into()],
                html(r#"<p id="callback">Back at the client</p>"#).into_bytes(),
            )
        }
        _ => (
            "404 Not Found",
            vec!["Content-Type: text/plain".into()],
            b"not found".to_vec(),
        ),
    };
    let mut response = format!("HTTP/1.1 {status}\r\n");
    for header in headers {
        response.push_str(&header);
        response.push_str("\r\n");
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut response = response.into_bytes();
    response.extend_from_slice(&body);
    response
}

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{}: {cmdline}", name.to_string_lossy()));
            }
        }
    }
    found
}

#[tokio::test]
async fn the_browser_navigates_fills_clicks_reads_and_takes_screenshots() {
    let site = Site::start().await;
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", site.base)).await;
    assert_eq!(browser.text_of("h1").await, "Harness");
    browser.fill("#name", "Ada <Lovelace>").await;
    browser.click("#go").await;
    assert_eq!(
        browser.text_of("#greeting").await,
        "Hello, Ada <Lovelace>",
        "{}",
        browser.page_source().await
    );
    let url = browser.current_url().await;
    assert_eq!(url.path(), "/greet", "{url}");
    assert!(
        browser
            .page_source()
            .await
            .contains("Hello, Ada &lt;Lovelace&gt;")
    );
    assert!(!browser.exists("#download").await);

    let shot = browser.screenshot("browser-harness-greeting").await;
    assert!(shot.ends_with("ui-screenshots/browser-harness-greeting.png"));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {}",
        shot.display()
    );

    // The cookies of `/`, with their flags, HttpOnly included.
    browser.goto(&format!("{}/", site.base)).await;
    let session = browser.cookie("session").await.expect("the session cookie");
    assert_eq!(session.value, "s3cr3t");
    assert!(session.http_only, "{session:?}");
    assert!(!session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"), "{session:?}");
    assert_eq!(session.expiry, None, "a session cookie: {session:?}");
    assert_eq!(
        browser.attribute_of("#download", "href").await.as_deref(),
        Some("/file.bin")
    );
    let theme = browser.cookie("theme").await.expect("the theme cookie");
    assert!(!theme.http_only, "{theme:?}");
    assert_eq!(theme.same_site.as_deref(), Some("Lax"), "{theme:?}");

    // A narrow screen.
    assert_eq!(browser.eval("return window.innerWidth").await, 1280);
    browser.set_window_size(390, 844).await;
    let width = browser.eval("return window.innerWidth").await;
    assert!(
        width.as_u64().is_some_and(|w| w <= 390),
        "innerWidth {width} after resizing to 390"
    );
    let narrow = browser.screenshot("browser-harness-narrow").await;
    assert!(std::fs::read(narrow).unwrap().starts_with(b"\x89PNG"));

    // Dropped, nothing of it is left: no chromedriver answering, no process of its own
    // directory (the profile's Chromium included).
    let webdriver = browser.webdriver_url().to_owned();
    let dir = browser
        .download_dir()
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert!(!processes_mentioning(&dir).is_empty(), "Chromium runs");
    drop(browser);
    let mut left = processes_mentioning(&dir);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = processes_mentioning(&dir);
    }
    assert!(left.is_empty(), "left running: {left:#?}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was not removed"
    );
    assert!(
        reqwest::get(format!("{webdriver}/status")).await.is_err(),
        "chromedriver still answers on {webdriver}"
    );
}

#[tokio::test]
async fn a_download_arrives_with_its_bytes() {
    let site = Site::start().await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/", site.base)).await;

    let download = browser.download("#download").await;
    assert_eq!(download.file_name, "ledger-test.bin");
    assert_eq!(
        download.path,
        browser.download_dir().join("ledger-test.bin")
    );
    assert!(download.bytes == file_bytes(), "the bytes differ");
    // The page stays where it was: an attachment does not navigate.
    assert_eq!(browser.current_url().await.path(), "/");
    // And it can be waited for by name as well.
    assert!(browser.downloaded("ledger-test.bin").await.bytes == file_bytes());
    // The polite end: the session closed, then chromedriver stopped.
    browser.close().await;
}

#[tokio::test]
async fn a_failed_wait_names_the_selector_and_the_page() {
    let site = Site::start().await;
    let mut browser = Browser::start().await;
    browser.set_wait(Duration::from_millis(500));
    let page = format!("{}/", site.base);
    browser.goto(&page).await;

    // The browser moves into the task that panics, and is dropped as it unwinds.
    let failed = tokio::spawn(async move {
        browser.wait_for("#not-there").await;
    })
    .await
    .expect_err("waiting for a missing element fails");
    let panic = failed.into_panic();
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| format!("{panic:?}"));
    assert!(message.contains("`#not-there`"), "{message}");
    assert!(message.contains(&page), "{message}");
    let shot = message
        .split("screenshot: ")
        .nth(1)
        .expect("a screenshot in the message")
        .trim();
    assert!(
        std::fs::read(shot).unwrap().starts_with(b"\x89PNG"),
        "{shot}"
    );
    // A screenshot of a failure this test made on purpose is nobody's to look at.
    std::fs::remove_file(shot).unwrap();
}

/// One authorization request of the UI client, as the UI will send it (code flow, PKCE S256,
/// `openid email profile`, no `login_hint`), and the exchange of its code.
struct Authorization {
    verifier: String,
    state: String,
    nonce: String,
    redirect_uri: String,
}

impl Authorization {
    fn new(site: &Site) -> Self {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Authorization {
            verifier: format!("{}{}", random(), random()),
            state: random(),
            nonce: random(),
            redirect_uri: format!("http://127.0.0.1:{}/auth/callback", site.port),
        }
    }

    fn url(&self, discovery: &Value) -> String {
        let challenge = base64ct::Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(
            self.verifier.as_bytes(),
        ));
        Url::parse_with_params(
            discovery["authorization_endpoint"].as_str().unwrap(),
            [
                ("client_id", UI_CLIENT_ID),
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
        .into()
    }

    /// The callback the site recorded last: checks `state` and `iss`, returns `code`.
    fn code(&self, site: &Site, idp: &TestIdp) -> String {
        let query = site.callbacks.lock().unwrap().last().cloned();
        let query = query.expect("the site saw a callback");
        let pairs: Vec<(String, String)> = Url::parse(&format!("http://q.invalid/?{query}"))
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("state").as_deref(),
            Some(self.state.as_str()),
            "{pairs:?}"
        );
        assert_eq!(get("iss").as_deref(), Some(idp.issuer()), "{pairs:?}");
        get("code").unwrap_or_else(|| panic!("no code in {pairs:?}"))
    }

    /// The code exchanged at the token endpoint: the ID token's claims (decoded only; the
    /// provider's own tests verify its signature), its `nonce` checked.
    async fn id_token_claims(&self, discovery: &Value, code: &str, idp: &TestIdp) -> Value {
        let mut form = Url::parse("http://form.invalid/").unwrap();
        form.query_pairs_mut().extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", UI_CLIENT_ID),
            ("code_verifier", &self.verifier),
        ]);
        let response = reqwest::Client::new()
            .post(discovery["token_endpoint"].as_str().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.query().unwrap().to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", idp.logs());
        let tokens: Value = response.json().await.unwrap();
        let id_token = tokens["id_token"].as_str().expect("an ID token");
        let payload = id_token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64ct::Base64UrlUnpadded::decode_vec(payload).expect("base64url"),
        )
        .unwrap();
        assert_eq!(claims["nonce"], self.nonce.as_str(), "{claims}");
        claims
    }
}

#[tokio::test]
async fn the_browser_signs_in_through_the_test_idp_to_the_callback() {
    let idp = TestIdp::start().await;
    let site = Site::start().await;
    let browser = Browser::start().await;
    let discovery: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();

    let first = Authorization::new(&site);
    browser.goto(&first.url(&discovery)).await;
    // The provider's form, as a person sees it.
    assert_eq!(browser.text_of("h1").await, "Sign in");
    assert_eq!(browser.text_of("label[for=subject]").await, "Subject");
    assert_eq!(browser.text_of("label[for=email]").await, "Email");
    assert_eq!(
        browser.text_of("label[for=email_verified]").await,
        "Email verified"
    );
    browser.screenshot("browser-harness-idp-form").await;
    browser
        .login_through_idp("grace", "grace@example.com")
        .await;
    assert_eq!(browser.text_of("#callback").await, "Back at the client");
    let url = browser.current_url().await;
    assert!(url.as_str().starts_with(&first.redirect_uri), "{url}");
    assert_eq!(site.callbacks.lock().unwrap().len(), 1);
    let claims = first
        .id_token_claims(&discovery, &first.code(&site, &idp), &idp)
        .await;
    assert_eq!(claims["sub"], "grace", "{claims}");
    assert_eq!(claims["email"], "grace@example.com", "{claims}");
    assert_eq!(claims["email_verified"], true, "{claims}");

    // A second sign-in in the same browser meets the form again: oidc-provider asks the user of
    // a native client at every authorization (its `native_client_prompt` check), so a UI test
    // that signs out and in as someone else sees the form each time. Here a user whose email
    // is not verified.
    let other = Authorization::new(&site);
    browser.goto(&other.url(&discovery)).await;
    assert_eq!(browser.text_of("h1").await, "Sign in");
    browser
        .login_through_idp_as(&IdpUser {
            subject: "heidi".to_owned(),
            email: "heidi@example.org".to_owned(),
            email_verified: false,
        })
        .await;
    assert_eq!(browser.text_of("#callback").await, "Back at the client");
    let claims = other
        .id_token_claims(&discovery, &other.code(&site, &idp), &idp)
        .await;
    assert_eq!(claims["sub"], "heidi", "{claims}");
    assert_eq!(claims["email"], "heidi@example.org", "{claims}");
    assert_eq!(claims["email_verified"], false, "{claims}");
    assert_eq!(site.callbacks.lock().unwrap().len(), 2);
}
