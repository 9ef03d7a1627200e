//! Stripe's own code for webhook signatures: the official `stripe` PyPI package (version pinned
//! in `tests/stripe/requirements.txt`), run by `tests/stripe/sign.py` in a virtualenv this
//! module creates under the target directory. The billing tests sign bodies with
//! `WebhookSignature.generate_signature_header` — what Stripe's SDK documents for tests — and
//! check the server's own construction (`application::billing::signature_header`) with
//! `WebhookSignature.verify_header`, so the scheme is not only ours read back by ourselves.
//!
//! The virtualenv is `crate::venv`'s.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// `tests/stripe`.
fn stripe_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("stripe")
}

/// A virtualenv holding the pinned `stripe` package, under `target_tmp` (a test binary's
/// `CARGO_TARGET_TMPDIR`).
pub struct StripeSdk {
    python: PathBuf,
}

impl StripeSdk {
    /// Installs the pinned packages when the virtualenv is missing or holds other pins. Test
    /// binaries run concurrently: the first takes an exclusive lock and installs, the others
    /// wait for it and find the install done.
    pub fn install(target_tmp: &Path) -> Self {
        let python = crate::venv::python(
            target_tmp,
            "stripe-venv",
            &stripe_dir().join("requirements.txt"),
        );
        Self { python }
    }

    fn ask(&self, requests: &[Value]) -> Vec<Value> {
        use std::io::Write;
        let mut child = std::process::Command::new(&self.python)
            .arg(stripe_dir().join("sign.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running tests/stripe/sign.py");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&serde_json::to_vec(requests).expect("json"))
            .expect("writing to sign.py");
        let out = child.wait_with_output().expect("sign.py ran");
        assert!(
            out.status.success(),
            "sign.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("sign.py answers JSON")
    }

    /// `Stripe-Signature` headers for `(payload, secret)` pairs at `timestamp`, as Stripe's SDK
    /// builds them.
    pub fn sign(&self, bodies: &[(&str, &str)], timestamp: i64) -> Vec<String> {
        let requests: Vec<Value> = bodies
            .iter()
            .map(|(payload, secret)| {
                json!({"op": "sign", "payload": payload, "secret": secret, "timestamp": timestamp})
            })
            .collect();
        self.ask(&requests)
            .into_iter()
            .map(|a| a["header"].as_str().expect("a header").to_owned())
            .collect()
    }

    /// Whether Stripe's SDK accepts `header` for `payload` under `secret`.
    pub fn verifies(&self, payload: &str, header: &str, secret: &str) -> Result<(), String> {
        let answer = self
            .ask(
                &[json!({"op": "verify", "payload": payload, "header": header,
                          "secret": secret, "tolerance": 300})],
            )
            .remove(0);
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(answer["error"].to_string())
        }
    }
}

/// Posts `body` to the Stripe webhook of the server at `base`, signed at `t` (Unix seconds, the
/// server's clock) under `secret` with
/// the server's construction (`application::billing::signature_header`, which Stripe's SDK
/// verifies: `StripeSdk::verifies`), as Stripe delivers an event.
///
/// # Errors
/// The client's, when no answer came.
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    secret: &str,
    t: i64,
    body: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    let signature = application::billing::signature_header(secret, t, &body);
    client
        .post(format!("{base}/v1/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
}
