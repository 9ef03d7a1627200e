//! The web UI end to end (issue #18, ADR 0025): `ledger serve` started as users start it, with
//! the test OIDC provider (`tests/idp`, npm's `oidc-provider`) as its issuer and `ledger-ui` as
//! its client, driven by headless Chromium (`tests::browser`) and, for what a browser never
//! sends, by plain HTTP.
//!
//! - A vendor administrator logs in through the provider's form, sees the dashboard, finds a
//!   license by its key prefix, suspends it through the confirmation page, and travels back to
//!   an instant before the suspension.
//! - A customer administrator logs in, sees the suspension on its organization's page,
//!   deactivates an installation, invites a colleague, downloads a release's file whose
//!   SHA-256 is the one the page shows, and gets the same 404 for a foreign organization as for an
//!   unknown one.
//! - A form posted without its CSRF token changes nothing; the session cookie is `HttpOnly` and
//!   `SameSite=Lax`; a callback replayed, or taken from another browser, logs nobody in; logout
//!   ends the session on the server.
//!
//! Screenshots of the main pages are saved under `<target>/ui-screenshots/` (the README shows
//! two of them, copied to `docs/screenshots/`).

use std::time::Duration;

use base64ct::Encoding;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sha2::Digest;
use tests::browser::Browser;
use tests::idp::{IdpUser, TestIdp, UI_CLIENT_ID};
use tests::{ServerProcess, count_events, mint_token, spawn_server_logged, temp_data_dir};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");
/// The webhook secret the world's server takes Stripe events with.
const STRIPE_SECRET: &str = "whsec_web_ui_test";

/// A server with the UI's login configured, an administration token, and a small world: a
/// vendor organization, a customer (Acme) with a license and an installation, and a foreign
/// customer (Globex).
struct World {
    idp: TestIdp,
    db: testdb::TestDb,
    server: ServerProcess,
    http: reqwest::Client,
    token: String,
    acme: String,
    globex: String,
    license_id: String,
    key: String,
    installation_id: String,
    /// The bytes of the one file of release 1.0.0, which Acme's second license sees.
    artifact: Vec<u8>,
    /// The application's id (`X-App-Id`).
    app_id: String,
    /// The key of Acme's second license (never suspended).
    key2: String,
    /// Globex's license and its installation: out of Acme's reach.
    globex_license: String,
    globex_installation: String,
}

impl World {
    async fn start() -> Self {
        let (idp, db, _data_dir, server, http) =
            ui_server(&["--stripe-webhook-secret", STRIPE_SECRET]).await;
        let token = mint_token(BIN, &db);
        let mut world = Self {
            idp,
            db,
            server,
            http,
            token,
            acme: String::new(),
            globex: String::new(),
            license_id: String::new(),
            key: String::new(),
            installation_id: String::new(),
            artifact: Vec::new(),
            globex_license: String::new(),
            globex_installation: String::new(),
            app_id: String::new(),
            key2: String::new(),
        };
        let vendor = world
            .api(
                "/v1/organizations",
                json!({"name": "Ledger Vendor", "kind": "vendor"}),
            )
            .await;
        world
            .api(
                &format!("/v1/organizations/{}/users", vendor["id"].as_str().unwrap()),
                json!({"email": "ada@vendor.example", "roles": ["vendor_admin"]}),
            )
            .await;
        let acme = world
            .api(
                "/v1/organizations",
                json!({"name": "Acme GmbH", "kind": "customer"}),
            )
            .await;
        world.acme = acme["id"].as_str().unwrap().to_owned();
        world
            .api(
                &format!("/v1/organizations/{}/users", world.acme),
                json!({"email": "cam@acme.example", "roles": ["customer_admin"]}),
            )
            .await;
        let globex = world
            .api(
                "/v1/organizations",
                json!({"name": "Globex", "kind": "customer"}),
            )
            .await;
        world.globex = globex["id"].as_str().unwrap().to_owned();
        let product = world
            .api(
                "/v1/products",
                json!({"name": "Acme Studio", "kind": "application"}),
            )
            .await;
        let policy = world
            .api(
                "/v1/policies",
                json!({"product_id": product["id"], "name": "Pro", "model": "node_locked",
                       "seats": 3, "duration_days": 365, "features": ["pro"],
                       "offline_allowed": true, "offline_grace_days": 14, "payment_grace_days": 7}),
            )
            .await;
        let license = world
            .api(
                "/v1/licenses",
                json!({"policy_id": policy["id"], "organization_id": world.acme}),
            )
            .await;
        world.license_id = license["id"].as_str().unwrap().to_owned();
        world.app_id = product["app_id"].as_str().unwrap().to_owned();
        world.key = license["key"].as_str().unwrap().to_owned();
        let activation = world
            .http
            .post(format!("{}/v1/activations", world.server.base))
            .header("X-App-Id", product["app_id"].as_str().unwrap())
            .json(&json!({"key": world.key, "fingerprint": "laptop-1",
                          "hostname": "cams-laptop", "platform": "windows-x64"}))
            .send()
            .await
            .unwrap();
        assert!(
            activation.status().is_success(),
            "{:?}",
            activation.text().await
        );
        let activation: Value = activation.json().await.unwrap();
        world.installation_id = installation_of(&activation);
        let globex_license = world
            .api(
                "/v1/licenses",
                json!({"policy_id": policy["id"], "organization_id": world.globex}),
            )
            .await;
        world.globex_license = globex_license["id"].as_str().unwrap().to_owned();
        let activation = world
            .http
            .post(format!("{}/v1/activations", world.server.base))
            .header("X-App-Id", product["app_id"].as_str().unwrap())
            .json(&json!({"key": globex_license["key"], "fingerprint": "globex-1"}))
            .send()
            .await
            .unwrap();
        assert!(activation.status().is_success());
        world.globex_installation = installation_of(&activation.json().await.unwrap());
        // A second license, never suspended, and a release with one file.
        let second = world
            .api(
                "/v1/licenses",
                json!({"policy_id": policy["id"], "organization_id": world.acme}),
            )
            .await;
        world.key2 = second["key"].as_str().unwrap().to_owned();
        let release = world
            .api(
                &format!("/v1/products/{}/releases", product["id"].as_str().unwrap()),
                json!({"version": "1.0.0", "channel": "stable"}),
            )
            .await;
        let release = release["id"].as_str().unwrap().to_owned();
        world.artifact = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let upload = world
            .http
            .put(world.url(&format!(
                "/v1/releases/{release}/artifacts/studio-1.0.0.tar.gz?platform=linux&arch=x86_64"
            )))
            .bearer_auth(&world.token)
            .body(world.artifact.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), StatusCode::CREATED);
        world
            .api(&format!("/v1/releases/{release}/publish"), json!({}))
            .await;
        // Validations for the dashboard: three valid, one of a key no license has.
        for key in [
            &world.key,
            &world.key,
            &world.key,
            &"ACMEST-NONE-NONE-NONE-NONE".to_owned(),
        ] {
            let answer = world
                .http
                .post(world.url("/v1/validate"))
                .header("X-App-Id", &world.app_id)
                .json(&json!({"key": key, "fingerprint": "laptop-1"}))
                .send()
                .await
                .unwrap();
            assert!(answer.status().as_u16() < 500);
        }
        // A Stripe event of a type the ledger records and ignores, for the billing inbox.
        let t = chrono::Utc::now().timestamp();
        let event = json!({"id": "evt_web_ui_1", "object": "event", "type": "charge.succeeded",
            "created": t, "livemode": false, "api_version": "2025-03-31.basil",
            "data": {"object": {"id": "ch_1", "object": "charge"}}});
        let posted = tests::stripe::post_signed(
            &world.http,
            &world.server.base,
            STRIPE_SECRET,
            t,
            serde_json::to_vec(&event).unwrap(),
        )
        .await
        .unwrap();
        assert!(posted.status().is_success(), "{:?}", posted.text().await);
        world
    }

    /// POSTs `body` with the administration token and returns the 2xx answer's body.
    async fn api(&self, path: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(format!("{}{path}", self.server.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    /// GETs `path` with the administration token and returns the answer's body.
    async fn read(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    /// The license's status as the API reads it now.
    async fn status(&self) -> String {
        let answer: Value = self
            .http
            .get(self.url(&format!("/v1/licenses/{}", self.license_id)))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["status"].as_str().unwrap().to_owned()
    }

    /// Logs `user` in over plain HTTP (the provider told who by a login hint) and returns the
    /// session cookie's secret.
    async fn login(&self, user: &IdpUser) -> String {
        let start = self.http.get(self.url("/auth/login")).send().await.unwrap();
        let state = start
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("ledger_login="))
            .unwrap();
        let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
        let callback = self.idp.follow_authorization(&authorize, user).await;
        let back = self
            .http
            .get(callback.as_str())
            .header(COOKIE, state)
            .send()
            .await
            .unwrap();
        assert_eq!(back.status(), StatusCode::SEE_OTHER);
        back.headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find_map(|c| c.strip_prefix("ledger_session=").map(str::to_owned))
            .expect("a session cookie")
    }

    /// A form POSTed with a session cookie, its CSRF token read from the session's home page.
    async fn post_form(&self, path: &str, session: &str, fields: &str) -> reqwest::Response {
        let home = self
            .get_with_session("/", session)
            .await
            .text()
            .await
            .unwrap();
        let csrf = csrf_of(&home);
        self.http
            .post(self.url(path))
            .header(COOKIE, format!("ledger_session={session}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}&{fields}"))
            .send()
            .await
            .unwrap()
    }

    /// The page at `path` for the session `session`, as text.
    async fn page(&self, path: &str, session: &str) -> String {
        self.get_with_session(path, session)
            .await
            .text()
            .await
            .unwrap()
    }

    /// A GET with the browser's session cookie, as plain HTTP (for statuses a browser hides).
    async fn get_with_session(&self, path: &str, session: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header(COOKIE, format!("ledger_session={session}"))
            .send()
            .await
            .unwrap()
    }
}

/// The test provider, a database, and `ledger serve` started as users start it with the
/// provider as its issuer and `ledger-ui` as the UI's client (and `extra` flags); an HTTP
/// client that follows no redirect.
async fn ui_server(
    extra: &[&str],
) -> (
    TestIdp,
    testdb::TestDb,
    std::path::PathBuf,
    ServerProcess,
    reqwest::Client,
) {
    let idp = TestIdp::start().await;
    let db = testdb::TestDb::create().await;
    let data_dir = temp_data_dir();
    let mut flags = vec![
        "--oidc-issuer",
        idp.issuer(),
        "--ui-oidc-client-id",
        UI_CLIENT_ID,
    ];
    flags.extend_from_slice(extra);
    let (server, _logs) = spawn_server_logged(BIN, &db, &data_dir, &flags, None);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (idp, db, data_dir, server, http)
}

/// The installation an activation's answer names.
fn installation_of(activation: &Value) -> String {
    activation["installation_id"]
        .as_str()
        .or_else(|| activation["activation"]["installation_id"].as_str())
        .unwrap_or_else(|| panic!("an installation id in {activation}"))
        .to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("a form with a CSRF token in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The start of a license key a customer reads out to support: the product's prefix, a hyphen
/// and the next four characters.
fn prefix_of(key: &str) -> String {
    let mut groups = key.split('-');
    let product = groups.next().unwrap();
    let next: String = groups.next().unwrap().chars().take(4).collect();
    format!("{product}-{next}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_and_customer_do_their_daily_work_in_the_browser() {
    let world = World::start().await;
    let browser = Browser::start().await;

    // ----- the vendor's administrator -----
    // Any page of the UI without a session goes to the provider's login, and back to it.
    browser.goto(&world.url("/licenses")).await;
    browser.login_through_idp("ada", "ada@vendor.example").await;
    browser
        .wait_for_url("the license search after the login", |u| {
            u.path() == "/licenses"
        })
        .await;
    let session = browser
        .cookie("ledger_session")
        .await
        .expect("a session cookie after the login");
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"), "{session:?}");
    assert_eq!(session.path.as_deref(), Some("/"), "{session:?}");
    assert_eq!(
        session.expiry, None,
        "a browser-session cookie: {session:?}"
    );

    // The validations are counted within seconds (the server writes them every 2 s).
    let mut counted = String::new();
    for _ in 0..20 {
        browser.goto(&world.url("/")).await;
        browser.wait_for("svg.plot").await;
        counted = browser
            .eval(
                "return Array.from(document.querySelectorAll('table.validations tbody tr'))\
                 .map(r => r.cells[0].textContent + '=' + r.cells[1].textContent).join(' ')",
            )
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if counted.contains("VALID=") && counted.contains("NOT_FOUND=") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let cells: Vec<&str> = counted.split_whitespace().collect();
    assert!(cells.contains(&"VALID=3"), "{counted}");
    assert!(cells.contains(&"NOT_FOUND=1"), "{counted}");
    assert!(browser.text_of("main h1").await.contains("Dashboard"));
    assert!(
        browser.page_source().await.contains("Licenses by status"),
        "the dashboard's plots"
    );
    browser.screenshot("dashboard").await;

    // Find the license: support pastes the whole key, the search keeps what the ledger keeps
    // of it (the product's prefix and four characters).
    browser.goto(&world.url("/licenses")).await;
    browser.fill("input#key_prefix", &world.key).await;
    browser.submit("form.search button[type=submit]").await;
    browser.wait_for("table.list").await;
    browser
        .click(&format!("a[href='/licenses/{}']", world.license_id))
        .await;
    browser
        .wait_for_url("the license page", |u| {
            u.path() == format!("/licenses/{}", world.license_id)
        })
        .await;
    assert_eq!(browser.text_of("span.status").await, "active");
    browser.screenshot("license").await;

    // Suspend it, through the confirmation page.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before_suspension = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    browser.click("a.action-suspend").await;
    browser.wait_for("input#reason").await;
    browser.screenshot("confirm-suspend").await;
    browser
        .fill("input#reason", "chargeback under review")
        .await;
    browser.submit("form.confirm button[type=submit]").await;
    browser
        .wait_for_url("the license page after suspending", |u| {
            u.path() == format!("/licenses/{}", world.license_id)
        })
        .await;
    browser.wait_for("span.status.suspended").await;
    assert_eq!(world.status().await, "suspended");
    assert_eq!(count_events(&world.db, "LicenseSuspended").await, 1);

    // A form posted without its CSRF token changes nothing (with the browser's own session).
    let cookie = browser.cookie("ledger_session").await.unwrap().value;
    let forged = world
        .http
        .post(world.url(&format!("/licenses/{}/reinstate", world.license_id)))
        .header(COOKIE, format!("ledger_session={cookie}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("form_key={}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let wrong = world
        .http
        .post(world.url(&format!("/licenses/{}/reinstate", world.license_id)))
        .header(COOKIE, format!("ledger_session={cookie}"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("csrf=not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        world.status().await,
        "suspended",
        "the forged forms changed nothing"
    );

    // Time travel: the license as it was before the suspension, and the events behind it.
    browser
        .goto(&world.url(&format!("/licenses/{}", world.license_id)))
        .await;
    // A datetime-local field is typed in the browser's locale; its value is set as a picker
    // would set it.
    browser
        .eval(&format!(
            "document.getElementById('at').value = '{}'",
            before_suspension.format("%Y-%m-%dT%H:%M:%S")
        ))
        .await;
    browser.submit("form.timetravel button[type=submit]").await;
    browser.wait_for("p.banner").await;
    assert_eq!(browser.text_of("span.status").await, "active");
    let events = browser.text_of("table.events").await;
    assert!(events.contains("LicenseIssued"), "{events}");
    assert!(!events.contains("LicenseSuspended"), "{events}");
    browser.screenshot("license-time-travel").await;

    // The audit trail, filtered to the license, and its export.
    browser.goto(&world.url("/audit")).await;
    browser.fill("input#license_id", &world.license_id).await;
    browser.submit("form.search button[type=submit]").await;
    browser.wait_for("table.audit").await;
    let trail = browser.text_of("table.audit").await;
    assert!(trail.contains("LicenseSuspended"), "{trail}");
    assert!(
        !trail.contains("ArtifactAdded"),
        "only the license's: {trail}"
    );
    browser.screenshot("audit").await;
    let export = browser.download("a.export").await;
    let csv = String::from_utf8(export.bytes).unwrap();
    assert!(csv.starts_with("position,recorded_at,actor,"), "{csv}");
    assert!(csv.contains("LicenseSuspended"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        1 + 3,
        "the header, the issue, the activation, the suspension: {csv}"
    );

    // The billing inbox: the Stripe event as received, retried by the administrator.
    browser.goto(&world.url("/billing")).await;
    browser.wait_for("table.billing").await;
    assert!(
        browser
            .text_of("table.billing")
            .await
            .contains("evt_web_ui_1")
    );
    browser.submit("form.retry button").await;
    browser
        .wait_for_url("the inbox after a retry", |u| u.path() == "/billing")
        .await;
    browser.wait_for("table.billing").await;
    browser.screenshot("billing").await;

    // Every organization, as a tree.
    browser.goto(&world.url("/organizations")).await;
    let tree = browser.text_of("ul.tree").await;
    assert!(
        tree.contains("Acme GmbH") && tree.contains("Globex"),
        "{tree}"
    );

    // A release through the browser: draft, upload a file, publish, and yank.
    browser.goto(&world.url("/products")).await;
    browser.click("table.products a").await;
    let policies = browser.text_of("table.policies").await;
    assert!(
        policies.contains("Pro") && policies.contains("node_locked"),
        "{policies}"
    );
    browser.fill("input#version", "2.0.0").await;
    browser.submit("form.draft button[type=submit]").await;
    browser.wait_for("form.upload").await;
    let file = std::env::temp_dir().join(format!("studio-2.0.0-{}.zip", uuid::Uuid::new_v4()));
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    browser
        .wait_for("input#file")
        .await
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    browser.submit("form.upload button[type=submit]").await;
    browser.wait_for("table.files").await;
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        browser.text_of("table.files code.sha256").await,
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    browser.click("form.publish input[name=confirm]").await;
    browser.submit("form.publish button[type=submit]").await;
    browser.wait_for("form.yank").await;
    assert_eq!(browser.text_of("h1 span.status").await, "published");
    browser.screenshot("release").await;
    browser.fill("input#reason", "crashes on start").await;
    browser.click("form.yank input[name=confirm]").await;
    browser.submit("form.yank button[type=submit]").await;
    browser.wait_for("p.banner").await;
    assert_eq!(browser.text_of("h1 span.status").await, "yanked");
    assert_eq!(count_events(&world.db, "ReleasePublished").await, 2);
    assert_eq!(count_events(&world.db, "ReleaseYanked").await, 1);

    // Regenerate the key: shown once, the old one stops working.
    browser
        .goto(&world.url(&format!("/licenses/{}", world.license_id)))
        .await;
    browser.click("a.action-rotate-key").await;
    browser.submit("form.confirm button[type=submit]").await;
    let new_key = browser
        .attribute_of("input#key", "value")
        .await
        .expect("the new key on the page");
    assert_ne!(new_key, world.key);
    assert_eq!(prefix_of(&new_key)[..6], prefix_of(&world.key)[..6]);
    for (key, known) in [(&world.key, false), (&new_key, true)] {
        let validated: Value = world
            .http
            .post(world.url("/v1/validate"))
            .header("X-App-Id", &world.app_id)
            .json(&json!({"key": key, "fingerprint": "laptop-1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The new key finds the license (suspended); the old one finds nothing.
        assert_eq!(
            validated["code"] != "NOT_FOUND",
            known,
            "{key}: {validated}"
        );
    }
    assert_eq!(count_events(&world.db, "LicenseKeyRotated").await, 1);

    // Log out: the session ends on the server, not only in the browser.
    browser.submit("form.logout button").await;
    browser
        .wait_for_url("the logged-out page", |u| u.path() == "/auth/logged-out")
        .await;
    let after = world.get_with_session("/", &cookie).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert!(
        after.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/auth/login"),
        "the ended session is sent to log in again"
    );

    // ----- the customer's administrator -----
    browser.goto(&world.url("/")).await;
    browser.login_through_idp("cam", "cam@acme.example").await;
    browser.wait_for("ul.tree").await;
    browser
        .click(&format!("a[href='/organizations/{}']", world.acme))
        .await;
    browser.wait_for("table.list").await;
    // The vendor's suspension shows in the portal.
    assert_eq!(
        browser
            .text_of(&format!(
                "tr:has(a[href='/licenses/{}']) span.status",
                world.license_id
            ))
            .await,
        "suspended"
    );
    assert!(browser.page_source().await.contains("cams-laptop"));
    browser.screenshot("portal-organization").await;

    // Deactivate the installation, through the confirmation page.
    browser
        .click(&format!(
            "a[href='/installations/{}/deactivate?organization_id={}']",
            world.installation_id, world.acme
        ))
        .await;
    browser.wait_for("form.confirm button.danger").await;
    browser.submit("form.confirm button.danger").await;
    browser
        .wait_for_url("the organization page after deactivating", |u| {
            u.path() == format!("/organizations/{}", world.acme)
        })
        .await;
    assert!(!browser.page_source().await.contains("cams-laptop"));
    assert_eq!(count_events(&world.db, "InstallationDeactivated").await, 1);

    // Their own audit trail: the vendor's suspension and their deactivation, nothing of Globex.
    browser
        .goto(&world.url(&format!("/organizations/{}/audit", world.acme)))
        .await;
    let trail = browser.text_of("table.audit").await;
    assert!(
        trail.contains("LicenseSuspended") && trail.contains("InstallationDeactivated"),
        "{trail}"
    );
    let source = browser.page_source().await;
    assert!(source.contains(&format!("/licenses/{}", world.license_id)));
    assert!(!source.contains(&world.globex_license), "nothing of Globex");

    // Invite a colleague as download manager.
    browser
        .goto(&world.url(&format!("/organizations/{}/users", world.acme)))
        .await;
    browser.fill("input#email", "dora@acme.example").await;
    browser
        .eval("document.getElementById('role').value = 'download_manager'")
        .await;
    browser.submit("form.invite button[type=submit]").await;
    browser.wait_for("table.users").await;
    let users = browser.text_of("table.users").await;
    assert!(
        users.contains("dora@acme.example") && users.contains("download_manager"),
        "{users}"
    );
    browser.screenshot("portal-users").await;
    // Change her role, then deactivate her.
    let dora = "tr:has(button[aria-label='Set the role of dora@acme.example'])";
    browser
        .eval(&format!(
            "document.querySelector(\"{dora} select\").value = 'license_manager'"
        ))
        .await;
    browser.submit(&format!("{dora} form.roles button")).await;
    browser.wait_for("table.users").await;
    assert!(browser.text_of(dora).await.contains("license_manager"));
    browser
        .click("a[aria-label='Deactivate dora@acme.example']")
        .await;
    browser.submit("form.confirm button.danger").await;
    browser.wait_for("table.users").await;
    let users = browser.text_of("table.users").await;
    assert!(users.contains("deactivated"), "{users}");
    assert_eq!(count_events(&world.db, "UserDeactivated").await, 1);
    // A mistake: reactivated, with her role.
    browser
        .submit("button[aria-label='Reactivate dora@acme.example']")
        .await;
    let row = browser.text_of(dora).await;
    // Still "invited": she never logged in.
    assert!(
        row.contains("invited") && !row.contains("deactivated") && row.contains("license_manager"),
        "{row}"
    );
    assert_eq!(count_events(&world.db, "UserReactivated").await, 1);
    // And deactivated again: she is not the customer's any more.
    browser
        .click("a[aria-label='Deactivate dora@acme.example']")
        .await;
    browser.submit("form.confirm button.danger").await;
    assert!(browser.text_of("table.users").await.contains("deactivated"));

    // Download the release's file, and check it against the SHA-256 the page shows.
    browser
        .goto(&world.url(&format!("/organizations/{}/downloads", world.acme)))
        .await;
    let file = "button[aria-label='Download studio-1.0.0.tar.gz']";
    let shown = browser
        .text_of(&format!("tr:has({file}) code.sha256"))
        .await;
    browser.screenshot("portal-downloads").await;
    let download = browser.download(file).await;
    assert_eq!(download.file_name, "studio-1.0.0.tar.gz");
    assert_eq!(download.bytes, world.artifact, "the bytes uploaded");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&download.bytes)),
        shown,
        "the SHA-256 the page shows"
    );
    assert_eq!(count_events(&world.db, "DownloadGranted").await, 1);

    // Offline activation by file: the machine's request file in, the answer file out, with
    // nobody at the vendor involved.
    let request = json!({"version": 1, "type": "activation", "app_id": world.app_id,
        "key": world.key2, "fingerprint": "vault-pc-7", "hostname": "vault",
        "platform": "linux-x64", "environment": "production",
        "created_at": "2026-12-05T10:00:00Z", "nonce": uuid::Uuid::new_v4()});
    let encoded = base64ct::Base64::encode_string(request.to_string().as_bytes());
    let request_file = std::env::temp_dir().join(format!("ledger-ui-{}.req", uuid::Uuid::new_v4()));
    std::fs::write(
        &request_file,
        format!(
            "-----BEGIN LICENSE-LEDGER ACTIVATION REQUEST-----\n{encoded}\n-----END LICENSE-LEDGER ACTIVATION REQUEST-----\n"
        ),
    )
    .unwrap();
    browser
        .goto(&world.url(&format!("/organizations/{}/offline", world.acme)))
        .await;
    browser
        .wait_for("input#request")
        .await
        .send_keys(request_file.to_str().unwrap())
        .await
        .unwrap();
    browser.screenshot("portal-offline").await;
    let answer = browser.download("form.offline button[type=submit]").await;
    std::fs::remove_file(&request_file).unwrap();
    assert_eq!(answer.file_name, "activation-response.txt");
    let answer = String::from_utf8(answer.bytes).unwrap();
    assert!(
        answer.starts_with("-----BEGIN LICENSE-LEDGER ACTIVATION RESPONSE-----"),
        "{answer}"
    );
    assert_eq!(count_events(&world.db, "InstallationActivated").await, 3);
    // The page of an organization out of reach takes no file, whatever the file's key.
    let foreign_page = world
        .http
        .post(world.url(&format!("/organizations/{}/offline", world.globex)))
        .header(
            COOKIE,
            format!(
                "ledger_session={}",
                browser.cookie("ledger_session").await.unwrap().value
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_page.status(), StatusCode::NOT_FOUND);

    // With a valid CSRF token, what the API refuses the UI refuses: a customer may not lift
    // the vendor's suspension (403), nor reach another customer's installation or license
    // (the same 404 as unknown ones).
    let customer = browser.cookie("ledger_session").await.unwrap().value;
    let reinstate = world
        .post_form(
            &format!("/licenses/{}/reinstate", world.license_id),
            &customer,
            "",
        )
        .await;
    assert_eq!(reinstate.status(), StatusCode::FORBIDDEN);
    assert_eq!(world.status().await, "suspended");
    let foreign = world
        .post_form(
            &format!("/installations/{}/deactivate", world.globex_installation),
            &customer,
            "",
        )
        .await;
    let unknown = world
        .post_form(
            &format!("/installations/{}/deactivate", uuid::Uuid::new_v4()),
            &customer,
            "",
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(foreign.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(count_events(&world.db, "InstallationDeactivated").await, 1);
    let foreign = world
        .get_with_session(&format!("/licenses/{}", world.globex_license), &customer)
        .await;
    let unknown = world
        .get_with_session(&format!("/licenses/{}", uuid::Uuid::new_v4()), &customer)
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(foreign.text().await.unwrap(), unknown.text().await.unwrap());
    // Another site's form, even with the right token: refused before anything is read.
    let home = world.page("/", &customer).await;
    let cross_site = world
        .http
        .post(world.url("/auth/logout"))
        .header(COOKIE, format!("ledger_session={customer}"))
        .header("Origin", "https://evil.example")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={}", csrf_of(&home)))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        world.get_with_session("/", &customer).await.status(),
        StatusCode::OK,
        "the forged logout ended nothing"
    );

    // A foreign organization is the same 404 as an unknown one.
    let foreign = world
        .get_with_session(&format!("/organizations/{}", world.globex), &customer)
        .await;
    let unknown = world
        .get_with_session(
            &format!("/organizations/{}", uuid::Uuid::new_v4()),
            &customer,
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        foreign.text().await.unwrap(),
        unknown.text().await.unwrap(),
        "no existence leaks"
    );
    browser
        .goto(&world.url(&format!("/organizations/{}", world.globex)))
        .await;
    assert_eq!(browser.text_of("main h1").await, "Not found");
    // Nor may a customer reach the vendor's search.
    let search = world.get_with_session("/licenses", &customer).await;
    assert_eq!(search.status(), StatusCode::FORBIDDEN);

    // Vendor support acts as the customer's administrator: a banner on every page, the
    // portal as they see it, every change recorded as theirs and as support's; "End" stops it.
    browser.goto(&world.url("/")).await;
    browser.submit("form.logout button").await;
    browser
        .wait_for_url("the logged-out page", |u| u.path() == "/auth/logged-out")
        .await;
    browser
        .goto(&world.url(&format!("/organizations/{}/users", world.acme)))
        .await;
    browser.login_through_idp("ada", "ada@vendor.example").await;
    browser.wait_for("table.users").await;
    browser
        .click("a.impersonate[aria-label='Act as cam@acme.example']")
        .await;
    browser
        .fill("input#reason", "ticket 4711: cannot see downloads")
        .await;
    browser.submit("form.confirm button[type=submit]").await;
    browser.wait_for(".impersonation").await;
    assert!(
        browser
            .text_of(".impersonation")
            .await
            .contains("cam@acme.example")
    );
    assert!(
        browser
            .text_of("main h1")
            .await
            .contains("My organizations")
    );
    browser.screenshot("impersonation").await;
    // The vendor's pages are not the customer's.
    browser.goto(&world.url("/licenses")).await;
    assert_eq!(browser.text_of("main h1").await, "Not allowed");
    // An error page keeps the navigation and the banner (and its End).
    assert!(browser.exists(".impersonation button").await);
    assert!(browser.exists("form.logout").await);
    assert_eq!(count_events(&world.db, "ImpersonationStarted").await, 1);
    browser.goto(&world.url("/")).await;
    browser.click(".impersonation button").await;
    browser.wait_for("svg.plot").await;
    assert!(!browser.exists(".impersonation").await);
    assert_eq!(count_events(&world.db, "ApiTokenRevoked").await, 1);

    // A narrow screen: the same page, readable.
    browser.set_window_size(390, 844).await;
    browser
        .goto(&world.url(&format!("/organizations/{}", world.acme)))
        .await;
    browser.wait_for("main h1").await;
    browser.screenshot("portal-narrow").await;

    browser.close().await;
    drop(world.server);
    let _ = world.idp;
}

/// What a browser does not show: a callback replayed, or taken from a browser that did not
/// start the login, logs nobody in; `return_to` stays on this server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_is_bound_to_its_browser_and_used_once() {
    let world = World::start().await;
    let user = IdpUser::verified("ada", "ada@vendor.example");

    let start = world
        .http
        .get(world.url("/auth/login?return_to=https://evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let state_cookie = start
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ledger_login="))
        .expect("the login's state cookie");
    assert!(state_cookie.contains("HttpOnly"), "{state_cookie}");
    assert!(
        state_cookie.contains("Path=/auth/callback"),
        "{state_cookie}"
    );
    let state_cookie = state_cookie.split(';').next().unwrap().to_owned();
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let callback = world.idp.follow_authorization(&authorize, &user).await;
    assert_eq!(callback.path(), "/auth/callback");

    // Another browser (no state cookie) presenting the callback: refused, and the login is
    // not consumed by it... but nobody is logged in either.
    let stranger = world.http.get(callback.as_str()).send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::BAD_REQUEST);
    assert!(
        !stranger
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("ledger_session=")),
        "no session for a browser that did not start the login"
    );
    // It says where the login must start (the browser may have opened another name of it).
    let told = stranger.text().await.unwrap();
    assert!(told.contains(&world.server.base), "{told}");

    // The browser that started it: logged in, sent home (not to the foreign return_to).
    let own = world
        .http
        .get(callback.as_str())
        .header(COOKIE, &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::SEE_OTHER);
    assert_eq!(own.headers()[LOCATION], "/");
    let session = own
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ledger_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let token = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("ledger_session=")
        .to_owned();
    let home = world.get_with_session("/", &token).await;
    assert_eq!(home.status(), StatusCode::OK);
    let csp = home.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    // Only the hash of the secret is stored: the row is found by SHA-256(secret), and no
    // column holds the secret itself.
    let pool = sqlx::PgPool::connect(&world.db.url).await.unwrap();
    let hash = sha2::Sha256::digest(token.as_bytes()).to_vec();
    let (by_hash, holding): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_hash = $1), \
                count(*) FILTER (WHERE row_to_json(s)::text LIKE '%' || $2 || '%') \
           FROM ui_sessions s",
    )
    .bind(&hash)
    .bind(&token)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((by_hash, holding), (1, 0));

    // A session unused past the idle limit ends, and its row with it.
    sqlx::query("UPDATE ui_sessions SET last_seen = last_seen - interval '2 hours'")
        .execute(&pool)
        .await
        .unwrap();
    let idle = world.get_with_session("/", &token).await;
    assert_eq!(idle.status(), StatusCode::SEE_OTHER, "idle: sent to log in");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ui_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);

    // The same callback again (a replayed code): refused.
    let replayed = world
        .http
        .get(callback.as_str())
        .header(COOKIE, &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);

    // An identity the ledger does not know: no session, a page that says so.
    let start = world
        .http
        .get(world.url("/auth/login"))
        .send()
        .await
        .unwrap();
    let state_cookie = start
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ledger_login="))
        .unwrap();
    let state_cookie = state_cookie.split(';').next().unwrap().to_owned();
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let stranger = IdpUser::verified("mallory", "mallory@elsewhere.example");
    let callback = world.idp.follow_authorization(&authorize, &stranger).await;
    let refused = world
        .http
        .get(callback.as_str())
        .header(COOKIE, &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("No access"));

    // A user deactivated during a session: the next page sends it to log in, and the session
    // is gone. (Ada logs in again first.)
    let token = world.login(&user).await;
    assert_eq!(
        world.get_with_session("/", &token).await.status(),
        StatusCode::OK
    );
    let ada: String = sqlx::query_scalar("SELECT user_id::text FROM ui_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    world
        .api(&format!("/v1/users/{ada}/deactivate"), json!({}))
        .await;
    let after = world.get_with_session("/", &token).await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ui_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the deactivated user's session is deleted");
    pool.close().await;
}

/// Behind https (`--public-url https://…`) the cookies are `Secure` and `__Host-`: no sibling
/// subdomain can plant a login's state or a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_https_the_cookies_are_secure_and_host_bound() {
    let (idp, db, data_dir, server, http) =
        ui_server(&["--public-url", "https://ledger.example"]).await;
    let start = http
        .get(format!("{}/auth/login", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let cookie = start.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-ledger_login="), "{cookie}");
    for flag in ["Path=/;", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let authorize = start.headers()[LOCATION].to_str().unwrap();
    assert!(
        authorize.contains("redirect_uri=https%3A%2F%2Fledger.example%2Fauth%2Fcallback"),
        "{authorize}"
    );
    // The UI's client may not be the API's audience: its ID tokens would pass for access tokens.
    let refused = std::process::Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db.url,
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--oidc-issuer",
            idp.issuer(),
            "--ui-oidc-client-id",
            "license-ledger",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--oidc-audience"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// ID tokens from the real provider, checked as OpenID Connect Core 3.1.3.7 asks, and never
/// taken for an API access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_are_checked_and_never_taken_for_access_tokens() {
    use application::oidc::{Oidc, OidcConfig};
    let idp = TestIdp::start().await;
    let user = IdpUser::verified("ada", "ada@vendor.example");
    let answer = idp
        .token_response(
            &user,
            &tests::idp::TokenOptions {
                nonce: Some("n-0001".into()),
                ..Default::default()
            },
        )
        .await;
    let id_token = answer["id_token"].as_str().unwrap();
    let issuer = domain::values::Issuer::parse(idp.issuer()).unwrap();
    // The API's verifier with the client id as its audience: still no bearer.
    let as_api = Oidc::new(&OidcConfig {
        issuers: vec![issuer.clone()],
        audience: tests::idp::CLIENT_ID.into(),
    })
    .unwrap();
    let now = chrono::Utc::now();
    assert!(as_api.verify(id_token, now).await.is_err());
    let ok = as_api
        .verify_id_token(id_token, tests::idp::CLIENT_ID, "n-0001", now)
        .await
        .unwrap();
    assert_eq!(ok.subject.as_str(), "ada");
    assert!(ok.email_verified);
    for (client, nonce, at, why) in [
        (tests::idp::CLIENT_ID, "n-0002", now, "another nonce"),
        (UI_CLIENT_ID, "n-0001", now, "another client"),
        (
            tests::idp::CLIENT_ID,
            "n-0001",
            now + chrono::Duration::hours(3),
            "expired",
        ),
    ] {
        assert!(
            as_api
                .verify_id_token(id_token, client, nonce, at)
                .await
                .is_err(),
            "{why}"
        );
    }
    // A verifier whose first issuer is another one: not this login's provider.
    let elsewhere = Oidc::new(&OidcConfig {
        issuers: vec![
            domain::values::Issuer::parse("https://elsewhere.example").unwrap(),
            issuer,
        ],
        audience: "license-ledger".into(),
    })
    .unwrap();
    assert!(
        elsewhere
            .verify_id_token(id_token, tests::idp::CLIENT_ID, "n-0001", now)
            .await
            .is_err()
    );
}

/// A vendor starts selling without the API: defines a product and its policy, revises the
/// policy, registers a customer and issues it a license whose key an application validates;
/// retiring the policy takes it off the form. A customer administrator adds a location below
/// its organization, and nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_sets_up_a_product_and_issues_a_license_in_the_browser() {
    let world = World::start().await;
    let browser = Browser::start().await;
    browser.goto(&world.url("/products")).await;
    browser.login_through_idp("ada", "ada@vendor.example").await;
    browser
        .wait_for_url("the products after the login", |u| u.path() == "/products")
        .await;

    // A product: its key prefix given, its App GUID generated.
    browser
        .fill("form.product input#name", "Initech Draw")
        .await;
    browser
        .click("select#kind option[value='application']")
        .await;
    browser.fill("form.product input#key_prefix", "DRAW").await;
    browser.submit("form.product button[type=submit]").await;
    browser
        .wait_for_url("the new product's page", |u| {
            u.path().starts_with("/products/")
        })
        .await;
    assert_eq!(browser.text_of("main h1").await, "Initech Draw");
    let page = browser.page_source().await;
    let app_id = page
        .split("App GUID <code>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the product's App GUID")
        .to_owned();

    // A policy of it: two seats, a year, a feature, offline allowed.
    browser.fill("form.policy input#policy-name", "Team").await;
    browser.fill("form.policy input#seats", "2").await;
    browser
        .fill("form.policy input#policy-features", "export, cloud")
        .await;
    browser
        .click("form.policy input[name=offline_allowed]")
        .await;
    browser
        .fill("form.policy input#offline_grace_days", "10")
        .await;
    browser.submit("form.policy button[type=submit]").await;
    let policy_url = browser
        .wait_for_url("the new policy's page", |u| {
            u.path().starts_with("/policies/")
        })
        .await;
    let policy_id = policy_url.path().rsplit('/').next().unwrap().to_owned();
    let terms = browser.text_of("dl.facts").await;
    assert!(terms.contains("seats") && terms.contains('2'), "{terms}");
    assert!(terms.contains("cloud, export"), "{terms}");
    browser.screenshot("policy").await;

    // Revised: three seats from version 2 on; the form starts on the present terms.
    assert_eq!(
        browser
            .attribute_of("input#seats", "value")
            .await
            .as_deref(),
        Some("2")
    );
    browser.fill("form.policy input#seats", "3").await;
    browser.submit("form.policy button[type=submit]").await;
    assert!(browser.text_of("main h1").await.contains("version 2"));
    let policy: Value = world.read(&format!("/v1/policies/{policy_id}")).await;
    assert_eq!(policy["version"], 2, "{policy}");
    assert_eq!(policy["seats"], 3, "{policy}");
    assert_eq!(policy["offline_grace_days"], 10, "{policy}");

    // A customer, registered from the organizations page.
    browser.goto(&world.url("/organizations")).await;
    browser.click("a[href='/organizations/new']").await;
    browser.wait_for("form.organization").await;
    browser
        .fill("form.organization input#name", "Initech AG")
        .await;
    browser
        .submit("form.organization button[type=submit]")
        .await;
    let initech_url = browser
        .wait_for_url("the new organization's page", |u| {
            u.path().starts_with("/organizations/") && !u.path().ends_with("/new")
        })
        .await;
    let initech = initech_url.path().rsplit('/').next().unwrap().to_owned();
    assert_eq!(browser.text_of("main h1").await, "Initech AG");

    // Refused, and nothing recorded: a name that reorders the text after it, an App GUID
    // another product holds, and the organization's form key posted again with another name.
    let ada = world
        .login(&IdpUser::verified("ada", "ada@vendor.example"))
        .await;
    let sly = world
        .post_form(
            "/organizations/new",
            &ada,
            "name=Evil%E2%80%AEexe.gpj&kind=customer",
        )
        .await;
    assert_eq!(sly.status(), StatusCode::BAD_REQUEST);
    let taken = world
        .post_form(
            "/products",
            &ada,
            &format!("name=Copycat&kind=application&app_id={app_id}"),
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert!(
        taken
            .text()
            .await
            .unwrap()
            .contains("Another product already has this App GUID")
    );
    let key = "0b5d6c4e-52a4-4f0e-9a53-6a1f0f3b9e21";
    let first = world
        .post_form(
            "/organizations/new",
            &ada,
            &format!("name=Hooli&kind=customer&form_key={key}"),
        )
        .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let again = world
        .post_form(
            "/organizations/new",
            &ada,
            &format!("name=Hooli&kind=customer&form_key={key}"),
        )
        .await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "a double submit");
    assert_eq!(again.headers()[LOCATION], first.headers()[LOCATION]);
    let other = world
        .post_form(
            "/organizations/new",
            &ada,
            &format!("name=Pied+Piper&kind=customer&form_key={key}"),
        )
        .await;
    assert_eq!(
        other.status(),
        StatusCode::CONFLICT,
        "the key with other fields"
    );

    // Vendor support reads products and policies but is offered none of these forms, and
    // its posts are refused.
    let vendor: Value = world.read("/v1/organizations?kind=vendor").await;
    let vendor = vendor["organizations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    world
        .api(
            &format!("/v1/organizations/{vendor}/users"),
            json!({"email": "sam@vendor.example", "roles": ["vendor_support"]}),
        )
        .await;
    let sam = world
        .login(&IdpUser::verified("sam", "sam@vendor.example"))
        .await;
    for (path, form) in [
        ("/products", "form class=\"product\""),
        (policy_url.path(), "form class=\"policy\""),
        (&format!("/organizations/{initech}"), "/licenses/new"),
        ("/organizations", "/organizations/new"),
    ] {
        let page = world.get_with_session(path, &sam).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert!(!page.text().await.unwrap().contains(form), "{path}: {form}");
    }
    for (path, fields) in [
        ("/products", "name=Nope&kind=application".to_owned()),
        (
            &format!("/policies/{policy_id}/retire"),
            "confirm=yes".to_owned(),
        ),
        (
            "/licenses/new",
            format!("organization_id={initech}&policy_id={policy_id}"),
        ),
        ("/organizations/new", "name=Nope&kind=customer".to_owned()),
    ] {
        let answer = world.post_form(path, &sam, &fields).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let answer = world.get_with_session("/licenses/new", &sam).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);

    // Its license, issued from its page; the key is shown once and validates.
    browser
        .click(&format!(
            "a[href='/licenses/new?organization_id={initech}']"
        ))
        .await;
    browser.wait_for("form.issue").await;
    assert!(browser.text_of("main h1").await.contains("Initech AG"));
    browser
        .click(&format!("select#policy_id option[value='{policy_id}']"))
        .await;
    browser.submit("form.issue button[type=submit]").await;
    browser.wait_for("input#key").await;
    let key = browser
        .attribute_of("input#key", "value")
        .await
        .expect("the key, shown once");
    assert!(key.starts_with("DRAW-"), "{key}");
    browser.screenshot("license-issued").await;
    let answer: Value = world
        .http
        .post(world.url("/v1/validate"))
        .header("X-App-Id", &app_id)
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["license"]["seats"], 3, "version 2's seats: {answer}");

    // The issue form posted twice (a double click, a reload) issues once; the second answer
    // has no key to show.
    let key_once = "5c0ffee0-1111-4222-8333-944455556666";
    let fields = format!("organization_id={initech}&policy_id={policy_id}&form_key={key_once}");
    let first = world.post_form("/licenses/new", &ada, &fields).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.text().await.unwrap().contains("id=\"key\""));
    let again = world.post_form("/licenses/new", &ada, &fields).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again = again.text().await.unwrap();
    assert!(
        !again.contains("id=\"key\"") && again.contains("earlier press"),
        "{again}"
    );
    let listed: Value = world
        .read(&format!("/v1/organizations/{initech}/licenses"))
        .await;
    assert_eq!(listed["licenses"].as_array().unwrap().len(), 2, "{listed}");

    // The license list names the organization and the product.
    browser
        .goto(&world.url(&format!("/licenses?organization_id={initech}")))
        .await;
    browser.wait_for("table.list").await;
    let row = browser.text_of("table.list tbody tr").await;
    assert!(
        row.contains("Initech AG") && row.contains("Initech Draw"),
        "{row}"
    );

    // Retired, the policy leaves the form, and a post naming it is refused.
    browser.goto(policy_url.as_str()).await;
    browser.click("form.retire input[name=confirm]").await;
    browser.submit("form.retire button[type=submit]").await;
    assert!(browser.text_of("main h1").await.contains("retired"));
    let form = world
        .page(&format!("/licenses/new?organization_id={initech}"), &ada)
        .await;
    assert!(
        !form.contains(&policy_id),
        "a retired policy is not offered"
    );
    let refused = world
        .post_form(
            "/licenses/new",
            &ada,
            &format!("organization_id={initech}&policy_id={policy_id}"),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert!(refused.text().await.unwrap().contains("retired"));

    // The search: a product's prefix alone lists its licenses; a pasted key is cut, and the
    // page says what was compared.
    let by_product = world.page("/licenses?key_prefix=draw", &ada).await;
    assert!(
        by_product.contains("its licenses are listed") && by_product.contains("Initech AG"),
        "{by_product}"
    );
    let pasted = world
        .page(&format!("/licenses?key_prefix={key}-WRONG"), &ada)
        .await;
    assert!(pasted.contains("is not compared"), "{pasted}");

    // Time travel says why there is nothing to show before the issue, and refuses the future.
    let license_id = world
        .read(&format!("/v1/organizations/{initech}/licenses"))
        .await["licenses"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = world
        .get_with_session(
            &format!("/licenses/{license_id}?at=2001-01-01T00:00:00"),
            &ada,
        )
        .await;
    assert_eq!(before.status(), StatusCode::BAD_REQUEST);
    assert!(before.text().await.unwrap().contains("not issued yet"));
    let future = world
        .get_with_session(
            &format!("/licenses/{license_id}?at=2999-01-01T00:00:00"),
            &ada,
        )
        .await;
    assert_eq!(future.status(), StatusCode::BAD_REQUEST);
    assert!(future.text().await.unwrap().contains("in the future"));

    // The vendor's staff adds an organization below Acme: the vendor's audit trail names Ada,
    // Acme's keeps her an id (the vendor's staff are not the customer's to know by name).
    let by_ada = world
        .post_form(
            "/organizations/new",
            &ada,
            &format!("parent_id={}&name=Acme+Hamburg&kind=customer", world.acme),
        )
        .await;
    assert_eq!(by_ada.status(), StatusCode::SEE_OTHER);
    let vendor_audit = world.page("/audit", &ada).await;
    assert!(
        vendor_audit.contains("ada@vendor.example"),
        "{vendor_audit}"
    );

    // ----- a customer administrator -----
    let cam = world
        .login(&IdpUser::verified("cam", "cam@acme.example"))
        .await;
    // Not the vendor's forms.
    for path in ["/licenses/new", "/organizations/new"] {
        let answer = world.get_with_session(path, &cam).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let refused = world
        .post_form(
            "/licenses/new",
            &cam,
            &format!("organization_id={}&policy_id={policy_id}", world.acme),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // An e-mail another user has: refused in the page's words, not a "try again".
    let taken = world
        .post_form(
            &format!("/organizations/{}/users", world.acme),
            &cam,
            "email=ada%40vendor.example&role=license_manager",
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert!(
        taken
            .text()
            .await
            .unwrap()
            .contains("Another user already has this e-mail address")
    );
    // A location below its own organization: offered customers only, and registered.
    let form = world
        .get_with_session(
            &format!("/organizations/new?parent_id={}", world.acme),
            &cam,
        )
        .await;
    assert_eq!(form.status(), StatusCode::OK);
    let form = form.text().await.unwrap();
    assert!(!form.contains("value=\"partner\"") && !form.contains("value=\"vendor\""));
    let added = world
        .post_form(
            "/organizations/new",
            &cam,
            &format!("parent_id={}&name=Acme+Berlin&kind=customer", world.acme),
        )
        .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let location = added.headers()[LOCATION].to_str().unwrap().to_owned();
    let page = world.page(&location, &cam).await;
    assert!(page.contains("Acme Berlin"), "{page}");
    // Not a partner below it, nothing below a foreign organization (404 as an unknown one),
    // and no root.
    let partner = world
        .post_form(
            "/organizations/new",
            &cam,
            &format!("parent_id={}&name=Sneaky&kind=partner", world.acme),
        )
        .await;
    assert_eq!(partner.status(), StatusCode::FORBIDDEN);
    let foreign = world
        .post_form(
            "/organizations/new",
            &cam,
            &format!("parent_id={}&name=Sneaky&kind=customer", world.globex),
        )
        .await;
    let unknown = world
        .post_form(
            "/organizations/new",
            &cam,
            &format!("parent_id={}&name=Sneaky&kind=customer", uuid_like()),
        )
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let root = world
        .post_form("/organizations/new", &cam, "name=Sneaky&kind=customer")
        .await;
    assert_eq!(root.status(), StatusCode::FORBIDDEN);
    let organizations: Value = world.read("/v1/organizations?q=Sneaky").await;
    assert_eq!(
        organizations["organizations"],
        json!([]),
        "nothing refused was registered: {organizations}"
    );
    let piper: Value = world.read("/v1/organizations?q=Pied").await;
    assert_eq!(piper["organizations"], json!([]), "{piper}");

    // Globex's license transferred to Acme: Acme's audit trail holds the transfer, not what
    // happened under Globex before it (its issue, its installation's activation).
    world
        .api(
            &format!("/v1/licenses/{}/transfer", world.globex_license),
            json!({"organization_id": world.acme}),
        )
        .await;
    let link = format!("/licenses/{}\"", world.globex_license);
    let mut trail = String::new();
    for _ in 0..50 {
        trail = world
            .page(&format!("/organizations/{}/audit", world.acme), &cam)
            .await;
        if trail.contains(&link) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        trail.matches(&link).count(),
        1,
        "the transfer alone: {trail}"
    );
    assert!(trail.contains("LicenseTransferred"), "{trail}");
    assert!(
        trail.contains("cam@acme.example"),
        "its own people by e-mail"
    );
    assert!(
        !trail.contains("ada@vendor.example") && trail.contains("user:"),
        "the vendor's staff by id: {trail}"
    );

    // Her own role is not hers to change here (a slip would lock her out).
    let users: Value = world
        .read(&format!("/v1/organizations/{}/users", world.acme))
        .await;
    let cam_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "cam@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = world
        .page(&format!("/organizations/{}/users", world.acme), &cam)
        .await;
    assert!(!page.contains(&format!("/users/{cam_id}/roles")), "{page}");
    let demoted = world
        .post_form(
            &format!("/users/{cam_id}/roles"),
            &cam,
            &format!("organization_id={}&role=none", world.acme),
        )
        .await;
    assert_eq!(demoted.status(), StatusCode::FORBIDDEN);
    let gone = world
        .post_form(
            &format!("/users/{cam_id}/deactivate"),
            &cam,
            &format!("organization_id={}", world.acme),
        )
        .await;
    assert_eq!(
        gone.status(),
        StatusCode::FORBIDDEN,
        "nor deactivate herself"
    );

    // A license manager is not offered the users tab (it would answer 403).
    world
        .api(
            &format!("/v1/organizations/{}/users", world.acme),
            json!({"email": "lem@acme.example", "roles": ["license_manager"]}),
        )
        .await;
    let lem = world
        .login(&IdpUser::verified("lem", "lem@acme.example"))
        .await;
    let page = world
        .page(&format!("/organizations/{}", world.acme), &lem)
        .await;
    assert!(
        !page.contains(&format!("/organizations/{}/users\"", world.acme)),
        "{page}"
    );
    assert_eq!(
        world
            .get_with_session(&format!("/organizations/{}/users", world.acme), &lem)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    // Nor does its audit trail give it the people's e-mails the users page keeps from it.
    let trail = world
        .page(&format!("/organizations/{}/audit", world.acme), &lem)
        .await;
    assert!(
        trail.contains("LicenseTransferred") && !trail.contains("cam@acme.example"),
        "{trail}"
    );

    // Deactivated, her session ends at once: reactivated, she logs in anew (an unused session
    // does not come back).
    let lem_id = world
        .read(&format!("/v1/organizations/{}/users", world.acme))
        .await["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "lem@acme.example")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for step in ["deactivate", "reactivate"] {
        world
            .api(&format!("/v1/users/{lem_id}/{step}"), json!({}))
            .await;
    }
    let after = world
        .get_with_session(&format!("/organizations/{}", world.acme), &lem)
        .await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "to the login");
    browser.close().await;
}

/// An id no organization has.
fn uuid_like() -> String {
    "7d444840-9dc0-11d1-b245-5ffdce74fad2".to_owned()
}
