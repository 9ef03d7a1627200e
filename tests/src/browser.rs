//! A real browser for the tests of the ledger's web UI (issue #18): headless Chromium driven over
//! WebDriver, Debian's `chromedriver` and `chromium` with the `fantoccini` client.
//!
//! Why a browser and not reqwest: the UI is server-rendered HTML whose behaviour lives in what a
//! browser does with it (cookies and their flags, redirects through the identity provider, forms,
//! downloads, narrow screens). The tests look at it the way a person's browser does.
//!
//! - [`Browser::start`] installs Chromium and its driver when either is missing (`apt-get install
//!   chromium chromium-driver`, as root or through `sudo -n`, under an exclusive lock so
//!   concurrent test binaries install once); a machine where that is impossible fails the test
//!   saying what to install, never skips it. It starts `chromedriver` on a free loopback port and
//!   opens a headless session with a fresh profile and a download directory of its own.
//! - The helpers wait the way a person does: [`Browser::wait_for`] polls for a CSS selector (10 s
//!   by default) and fails naming the selector and the page, with a screenshot of it.
//! - Dropping the [`Browser`] kills chromedriver and the Chromium it started (their whole process
//!   group) and removes the profile. A test process that dies without dropping it (SIGKILL, abort)
//!   does not leave them running either: chromedriver runs under a small `sh` supervisor that
//!   kills the group when its stdin, a pipe from the test process, closes.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::Url;
use serde_json::{Value, json};

/// Debian's `chromedriver` (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium` (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// What [`Browser::wait_for`] and the helpers built on it wait at most, unless
/// [`Browser::set_wait`] says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// The window of a new session: a laptop's.
pub const WINDOW_SIZE: (u32, u32) = (1280, 900);
/// How often the waits look again.
const POLL: Duration = Duration::from_millis(100);
/// How long chromedriver may take to answer after its start.
const DRIVER_START: Duration = Duration::from_secs(20);
/// The machine-wide lock of the install: `apt-get` itself is machine-wide.
const INSTALL_LOCK: &str = "license-ledger-chromium-install.lock";
/// What a machine without a browser is told.
const INSTALL_HINT: &str = "the browser tests need Debian's `chromium` and `chromium-driver` \
     (/usr/bin/chromium, /usr/bin/chromedriver): install them with \
     `apt-get install chromium chromium-driver` as root (the tests install them by themselves \
     when run as root or with password-less sudo) and run the tests again";

/// A headless Chromium session, and the chromedriver that runs it, until dropped.
pub struct Browser {
    client: Client,
    // `None` once dropped (it must go before `dir` is removed).
    driver: Option<Driver>,
    /// This session's own directory: Chromium's profile, its downloads and chromedriver's log.
    dir: PathBuf,
    downloads: PathBuf,
    wait: Duration,
}

/// A cookie as the browser holds it for the current page (HttpOnly ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it; `None` (no value) when it reports
    /// none.
    pub same_site: Option<String>,
    /// Unix seconds; `None` for a session cookie.
    pub expiry: Option<i64>,
}

/// A file the browser downloaded.
#[derive(Debug, Clone)]
pub struct Download {
    /// Its name as saved (the `Content-Disposition` filename, or the link's `download` name).
    pub file_name: String,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Browser {
    /// Installs Chromium and chromedriver if needed, starts chromedriver on a free loopback port
    /// and opens a headless session ([`WINDOW_SIZE`], a fresh profile, downloads saved without
    /// asking into [`Browser::download_dir`]).
    pub async fn start() -> Browser {
        tokio::task::spawn_blocking(ensure_installed)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

        let dir = std::env::temp_dir().join(format!("ledger-browser-{}", uuid::Uuid::now_v7()));
        let profile = dir.join("profile");
        let downloads = dir.join("downloads");
        for d in [&profile, &downloads] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }

        // A port found free may be taken before chromedriver binds it: try a few.
        let mut failures = Vec::new();
        let mut driver = None;
        for _ in 0..3 {
            let mut candidate = Driver::spawn(&dir);
            match candidate.ready().await {
                Ok(()) => {
                    driver = Some(candidate);
                    break;
                }
                Err(why) => failures.push(why),
            }
        }
        let Some(driver) = driver else {
            panic!(
                "chromedriver did not start: {}\n{INSTALL_HINT}",
                failures.join("\n")
            );
        };

        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        // Fail a stuck page load or script within a test's patience, not WebDriver's 300 s.
        capabilities.insert(
            "timeouts".into(),
            json!({"pageLoad": 30_000, "script": 30_000, "implicit": 0}),
        );
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    // Containers have a small /dev/shm; Chromium then crashes on big pages.
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW_SIZE.0, WINDOW_SIZE.1),
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--password-store=basic",
                    // Nothing but the pages under test: no calls to Google's services (this
                    // machine reaches none, and they would only slow the start).
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    "--lang=en-US",
                ],
                // Downloads land in the session's own directory without a dialog.
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "intl.accept_languages": "en-US,en",
                },
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "opening a Chromium session through chromedriver failed: {e}\n\
                     chromedriver's log:\n{}",
                    driver.log_tail()
                )
            });
        Browser {
            client,
            driver: Some(driver),
            dir,
            downloads,
            wait: DEFAULT_WAIT,
        }
    }

    /// The WebDriver client itself, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How long the waits of this browser last (default [`DEFAULT_WAIT`]).
    pub fn set_wait(&mut self, wait: Duration) {
        self.wait = wait;
    }

    /// chromedriver's address, `http://127.0.0.1:PORT`.
    pub fn webdriver_url(&self) -> &str {
        &self.driver.as_ref().unwrap().url
    }

    /// Navigates to `url` and waits for its page to load.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            self.fail(format!("navigating to {url} failed: {e}")).await;
        }
    }

    /// The address of the current page.
    pub async fn current_url(&self) -> Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// The current page's HTML as the browser holds it now (after scripts ran).
    pub async fn page_source(&self) -> String {
        self.client.source().await.expect("the page source")
    }

    /// The first element matching the CSS selector `css`, polled for until it appears; fails
    /// after the wait (10 s by default) naming the selector and the current URL, and saving a
    /// screenshot of the page.
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + self.wait;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) if e.is_no_such_element() => {}
                Err(e) => self.fail(format!("looking for `{css}` failed: {e}")).await,
            }
            if Instant::now() >= deadline {
                self.fail(format!(
                    "no element matches `{css}` after waiting {:?}",
                    self.wait
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether an element matches `css` now (no waiting): for asserting that something is
    /// absent.
    pub async fn exists(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(_) => true,
            Err(e) if e.is_no_such_element() => false,
            Err(e) => self.fail(format!("looking for `{css}` failed: {e}")).await,
        }
    }

    /// Clicks the element `css` (waiting for it as [`Browser::wait_for`] does); a click that
    /// navigates returns once the new page has loaded.
    pub async fn click(&self, css: &str) {
        let element = self.wait_for(css).await;
        if let Err(e) = element.click().await {
            self.fail(format!("clicking `{css}` failed: {e}")).await;
        }
    }

    /// Clicks the element `css` that submits a form, and returns once the page that answers
    /// it has replaced this one. A click returns before a slow answer arrives, and an answer
    /// that redirects back to the same address shows no change of URL to wait for: the old
    /// document is marked, and the wait ends when the marked document is gone. Not for a form
    /// answered with an attachment (the page stays: use [`Browser::download`]), nor right after
    /// another navigation that may still be under way (the mark would go with that page).
    pub async fn submit(&self, css: &str) {
        self.eval("window.__ledgerLeaving = true; return true")
            .await;
        self.click(css).await;
        let deadline = Instant::now() + self.wait;
        loop {
            let left = self
                .eval(
                    "return window.__ledgerLeaving === undefined \
                     && document.readyState === 'complete'",
                )
                .await;
            if left == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(format!(
                    "the page did not answer the form of `{css}` within {:?}",
                    self.wait
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Replaces the value of the field `css` with `text`, typed as keystrokes.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        if let Err(e) = element.clear().await {
            self.fail(format!("clearing `{css}` failed: {e}")).await;
        }
        if let Err(e) = element.send_keys(text).await {
            self.fail(format!("typing into `{css}` failed: {e}")).await;
        }
    }

    /// The text of the element `css` as rendered (what a person reads: hidden parts left out).
    pub async fn text_of(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(e) => {
                self.fail(format!("reading the text of `{css}` failed: {e}"))
                    .await
            }
        }
    }

    /// An attribute of the element `css` (`None` when it has none).
    pub async fn attribute_of(&self, css: &str, attribute: &str) -> Option<String> {
        let element = self.wait_for(css).await;
        match element.attr(attribute).await {
            Ok(value) => value,
            Err(e) => {
                self.fail(format!("reading `{attribute}` of `{css}` failed: {e}"))
                    .await
            }
        }
    }

    /// Waits until the current URL satisfies `accept` (say, a redirect back from the identity
    /// provider) and returns it; fails after the wait naming `what` and the last URL.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&Url) -> bool) -> Url {
        let deadline = Instant::now() + self.wait;
        loop {
            let url = self.current_url().await;
            if accept(&url) {
                return url;
            }
            if Instant::now() >= deadline {
                self.fail(format!(
                    "the browser did not reach {what} after waiting {:?}",
                    self.wait
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` (a function body: `return` gives the result) in the page and returns its
    /// result, e.g. `return document.documentElement.scrollWidth`.
    pub async fn eval(&self, script: &str) -> Value {
        match self.client.execute(script, Vec::new()).await {
            Ok(value) => value,
            Err(e) => {
                self.fail(format!("the script {script:?} failed: {e}"))
                    .await
            }
        }
    }

    /// Resizes the window, e.g. to `(390, 844)` for a phone's narrow screen.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resizing the window");
    }

    /// Saves a screenshot of the viewport as `<target dir>/ui-screenshots/<name>.png` and returns
    /// its path. `name` is made of letters, digits, `-`, `_` and `.`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        assert!(
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "a screenshot's name is letters, digits, '-', '_' and '.': {name:?}"
        );
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// The cookies the browser sends to the current page, HttpOnly ones included.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .expect("the page's cookies");
        cookies
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                domain: c.domain().map(str::to_owned),
                path: c.path().map(str::to_owned),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
                expiry: c
                    .expires()
                    .and_then(|e| e.datetime())
                    .map(|t| t.unix_timestamp()),
            })
            .collect()
    }

    /// The cookie `name` of the current page, if the browser holds one.
    pub async fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().await.into_iter().find(|c| c.name == name)
    }

    /// Where this browser saves downloads (empty at start, its own).
    pub fn download_dir(&self) -> &Path {
        &self.downloads
    }

    /// Clicks the download link or button `css` and waits for the file it downloads to be
    /// complete (no `.crdownload` left); returns it.
    pub async fn download(&self, css: &str) -> Download {
        let before = self.downloaded_names();
        self.click(css).await;
        self.wait_for_download(&format!("a download after clicking `{css}`"), |name| {
            !before.contains(name)
        })
        .await
    }

    /// Waits for the complete download named `file_name` (started by whatever the test did)
    /// and returns it.
    pub async fn downloaded(&self, file_name: &str) -> Download {
        self.wait_for_download(&format!("the download {file_name:?}"), |name| {
            name == file_name
        })
        .await
    }

    /// The first file of the download directory `accept` takes, once nothing is still being
    /// downloaded ([`is_partial`]).
    async fn wait_for_download(&self, what: &str, accept: impl Fn(&str) -> bool) -> Download {
        let deadline = Instant::now() + self.wait;
        loop {
            let names = self.downloaded_names();
            let partial = names.iter().any(|n| is_partial(n));
            if !partial && let Some(name) = names.iter().find(|n| accept(n)) {
                let path = self.downloads.join(name);
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                return Download {
                    file_name: name.clone(),
                    path,
                    bytes,
                };
            }
            if Instant::now() >= deadline {
                self.fail(format!(
                    "{what} did not complete within {:?}; the download directory holds {names:?}",
                    self.wait
                ))
                .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn downloaded_names(&self) -> BTreeSet<String> {
        std::fs::read_dir(&self.downloads)
            .unwrap_or_else(|e| panic!("{}: {e}", self.downloads.display()))
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect()
    }

    /// On the test identity provider's login form (`tests/idp/server.mjs`, shown when the
    /// authorization request has no `login_hint`): fills Subject and Email, leaves "Email
    /// verified" checked, presses "Sign in" and waits until the browser has left the form.
    pub async fn login_through_idp(&self, subject: &str, email: &str) {
        self.login_through_idp_as(&crate::idp::IdpUser::verified(subject, email))
            .await;
    }

    /// [`Browser::login_through_idp`] for `user`, whose email may be unverified.
    pub async fn login_through_idp_as(&self, user: &crate::idp::IdpUser) {
        self.wait_for("form input#subject").await;
        self.fill("input#subject", &user.subject).await;
        self.fill("input#email", &user.email).await;
        let checkbox = self.wait_for("input#email_verified").await;
        let checked = checkbox.is_selected().await.expect("the checkbox's state");
        if checked != user.email_verified {
            self.click("input#email_verified").await;
        }
        self.click("form button[type=submit]").await;
        // A refused form comes back with an alert, on the same page: the wait fails then, with
        // a screenshot of it.
        self.wait_for_url("a page past the identity provider's login form", |url| {
            !url.path().starts_with("/interaction/")
        })
        .await;
    }

    /// Ends the session politely (Chromium closes its windows) and stops chromedriver.
    /// Dropping the browser also stops both, by killing them.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        drop(self.driver.take());
    }

    /// Fails the test with `what`, the current URL and a screenshot of the page.
    async fn fail(&self, what: String) -> ! {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let name = format!("failure-{}", uuid::Uuid::new_v4().simple());
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let dir = screenshot_dir();
                let path = dir.join(format!("{name}.png"));
                match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, png)) {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("not saved: {e}"),
                }
            }
            Err(e) => format!("not taken: {e}"),
        };
        panic!("{what}\n  on the page {url}\n  screenshot: {shot}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing the process group ends Chromium with chromedriver; only then can its profile
        // go.
        drop(self.driver.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A download still being written: Chromium first creates a hidden temporary file
/// (`.org.chromium.Chromium.XXXXXX`), then writes `<name>.crdownload` (or `Unconfirmed
/// <n>.crdownload`) and renames it when complete. (A download whose own name starts with a dot
/// would count as never complete.)
fn is_partial(name: &str) -> bool {
    name.ends_with(".crdownload") || name.starts_with('.')
}

/// `<target dir>/ui-screenshots`, where screenshots stay after the test for a person to look at.
pub fn screenshot_dir() -> PathBuf {
    target_dir().join("ui-screenshots")
}

/// Cargo's target directory of the running test binary: the first of its ancestors that holds
/// Cargo's `CACHEDIR.TAG` (`<target>/debug/deps/<binary>`, or `<target>/<triple>/debug/deps`),
/// else `CARGO_TARGET_DIR` when absolute, else the workspace's `target`.
pub fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_owned();
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .join("target")
}

// ----- chromedriver -----

/// chromedriver on a loopback port, under a supervisor that kills its process group (Chromium
/// included) when the test process's end of its stdin closes.
struct Driver {
    /// The supervisor `sh`, leader of the process group.
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    log: PathBuf,
}

/// The supervisor: chromedriver in the background (`"$@"`; a non-interactive shell gives it
/// /dev/null as stdin), then wait for stdin's end (the test process dropped the pipe, or died)
/// and kill the whole process group: chromedriver, the Chromium it started, and itself.
const SUPERVISOR: &str = r#""$@" &
cat >/dev/null
kill -9 0
"#;

impl Driver {
    /// Starts chromedriver on a port that was free a moment ago.
    fn spawn(dir: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let log = dir.join(format!("chromedriver-{port}.log"));
        let output = std::fs::File::create(dir.join(format!("chromedriver-{port}.out")))
            .expect("chromedriver's output file");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("chromedriver-supervisor")
            .arg(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            // A group of its own, so that killing it kills chromedriver's Chromium too and
            // nothing of the test process.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting sh for {CHROMEDRIVER}: {e}"));
        let stdin = child.stdin.take();
        Driver {
            child,
            stdin,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Waits until chromedriver answers `GET /status` with `ready: true`.
    async fn ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + DRIVER_START;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "chromedriver exited ({status}); its log:\n{}",
                    self.log_tail()
                ));
            }
            if let Ok(response) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "chromedriver did not answer on {} within {DRIVER_START:?}; its log:\n{}",
                    self.url,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The end of chromedriver's log (and of its output), for a failure's message.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        let out = self.log.with_extension("out");
        for path in [&out, &self.log] {
            let content = std::fs::read_to_string(path).unwrap_or_default();
            let start = content.len().saturating_sub(4000);
            let start = (start..=content.len())
                .find(|&i| content.is_char_boundary(i))
                .unwrap_or(content.len());
            text.push_str(&format!("--- {}\n{}\n", path.display(), &content[start..]));
        }
        text
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The supervisor kills the group when its stdin closes; killing the group here as well
        // makes it certain before `wait`, whatever state the supervisor is in.
        drop(self.stdin.take());
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

// ----- installation -----

/// Whether both binaries are there.
fn installed() -> bool {
    Path::new(CHROMEDRIVER).is_file() && Path::new(CHROMIUM).is_file()
}

/// Installs `chromium` and `chromium-driver` with apt-get unless both binaries are there. Test
/// binaries run concurrently: the first takes an exclusive lock (a machine-wide file, as apt is
/// machine-wide) and installs, the others wait for it and find the install done.
fn ensure_installed() {
    if installed() {
        return;
    }
    let lock_path = std::env::temp_dir().join(INSTALL_LOCK);
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
    lock.lock().expect("locking the browser install");
    if installed() {
        return;
    }
    let sudo = privilege();
    eprintln!("installing chromium and chromium-driver with apt-get for the browser tests");
    let apt = |args: &[&str]| {
        let mut command = Command::new(sudo.first().copied().unwrap_or("env"));
        command.args(sudo.iter().skip(1));
        if !sudo.is_empty() {
            // sudo resets the environment: `env` sets it on the far side.
            command.arg("env");
        }
        command
            .args(["DEBIAN_FRONTEND=noninteractive", "apt-get", "-q"])
            // Another apt (CI's own installs, a person's) may hold the lock for a while.
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args);
        run(&mut command);
    };
    apt(&["update"]);
    // With the recommended packages (fonts among them), as .ci/run installs them: screenshots
    // are for people to read.
    apt(&["install", "-y", "chromium", "chromium-driver"]);
    assert!(
        installed(),
        "apt-get installed chromium and chromium-driver, yet {CHROMIUM} or {CHROMEDRIVER} is \
         missing"
    );
    // The lock is released when `lock` closes.
}

/// How to run apt-get: directly as root, else through `sudo -n`; else the test fails saying
/// what to install.
fn privilege() -> Vec<&'static str> {
    let uid = Command::new("id").arg("-u").output();
    if uid.is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0") {
        return Vec::new();
    }
    let sudo = Command::new("sudo")
        .args(["-n", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if sudo.is_ok_and(|status| status.success()) {
        return vec!["sudo", "-n"];
    }
    panic!("{INSTALL_HINT} (this user is not root and `sudo -n` is not allowed)");
}

fn run(command: &mut Command) {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{shown}: {e}\n{INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}\n{INSTALL_HINT}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
