//! The tests' real OpenID Connect provider (`tests/idp/server.mjs`, the npm package
//! `oidc-provider`) for `bench auth`, and the authorization code flow with PKCE that obtains an
//! access token from it: a port of the smallest part of `tests/src/idp.rs` (the `tests` crate
//! is not a dependency of the bench), over [`crate::http1`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::http1;
use crate::validation::Process;

/// The provider's public client (PKCE required) and its redirect URI (nothing listens there).
const CLIENT_ID: &str = "ledger-tests";
const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// `server.mjs` turns this prefix plus an audience into a token whose `aud` is the audience.
const RESOURCE: &str = "urn:ledger-tests:audience:license-ledger";
const SCOPE: &str = "openid email ledger";

/// `tests/idp` of this workspace.
pub(crate) fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("idp")
}

/// Runs `npm ci` in `dir` when its `node_modules` is not a finished install.
fn ensure_installed(dir: &Path) -> anyhow::Result<()> {
    if dir
        .join("node_modules")
        .join(".package-lock.json")
        .is_file()
    {
        return Ok(());
    }
    eprintln!(
        "installing the identity provider (npm ci in {})…",
        dir.display()
    );
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .context("npm is needed to install tests/idp (apt-get install nodejs npm)")?;
    if !out.status.success() {
        bail!(
            "npm ci in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts `node server.mjs --port 0 --exit-with-stdin` in `dir`; the returned process's `addr`
/// is the issuer it announced (`http://127.0.0.1:PORT`). Its stderr goes to `log`. It is killed
/// when dropped, and exits by itself when its stdin (held by the child handle) closes.
pub(crate) fn start(dir: &Path, log: &Path) -> anyhow::Result<Process> {
    ensure_installed(dir)?;
    let mut child = Command::new("node")
        .arg(dir.join("server.mjs"))
        .args(["--port", "0", "--exit-with-stdin"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("node is needed to run tests/idp/server.mjs")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut process = Process {
        child,
        addr: String::new(),
    };
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .context("the identity provider exited before announcing its issuer")??;
    let announced: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("the identity provider's first line: {line}"))?;
    process.addr = announced["issuer"]
        .as_str()
        .with_context(|| format!("no issuer in {line}"))?
        .to_owned();
    // Nothing else is written to stdout; drained anyway so a full pipe never blocks it.
    std::thread::spawn(move || for _ in lines {});
    Ok(process)
}

/// Base64url without padding (RFC 7636's code challenge).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url, padded or not (a JWT's parts, a JWK's coordinates).
pub(crate) fn base64url_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => bail!("not base64url: {text:?}"),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from(acc >> bits & 0xff)?);
        }
    }
    Ok(out)
}

/// Applies a response's `Set-Cookie` headers to `jar` (an expired or empty cookie is removed).
fn keep_cookies(jar: &mut Vec<(String, String)>, response: &http1::Response) {
    for header in response.headers_named("set-cookie") {
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

/// An access token (audience `license-ledger`, signed `alg`: ES256 or RS256, both keys are in
/// the provider's JWKS) for the user `subject` with a verified
/// `email`: the authorization request with PKCE and `login_hint`, the provider's interaction
/// (its page logs the hinted user in and consents without a form), the redirect with `code`,
/// and the code exchange — as `tests/src/idp.rs` does.
///
/// # Errors
/// Any answer other than the flow's.
pub(crate) fn access_token(
    issuer: &str,
    subject: &str,
    email: &str,
    alg: &str,
) -> anyhow::Result<String> {
    let discovery = http1::request(
        "GET",
        &format!("{issuer}/.well-known/openid-configuration"),
        &[],
        None,
    )?
    .json()?;
    let endpoint = |name: &str| {
        discovery[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in the discovery document"))
    };
    let (authorization_endpoint, token_endpoint) = (
        endpoint("authorization_endpoint")?,
        endpoint("token_endpoint")?,
    );
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
    let state = uuid::Uuid::new_v4().simple().to_string();
    let hint = format!("sub={subject};email={email};verified=true");
    let mut url = format!(
        "{authorization_endpoint}?{}",
        http1::form(&[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", RESOURCE),
            ("login_hint", &hint),
            ("access_token_alg", alg),
        ])
    );
    let mut cookies: Vec<(String, String)> = Vec::new();
    let mut code = None;
    for _ in 0..10 {
        let cookie = cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let headers: Vec<(&str, &str)> = if cookie.is_empty() {
            Vec::new()
        } else {
            vec![("Cookie", cookie.as_str())]
        };
        let response = http1::request("GET", &url, &headers, None)?;
        keep_cookies(&mut cookies, &response);
        let location = response
            .header("location")
            .filter(|_| (300..400).contains(&response.status));
        let Some(location) = location else {
            bail!(
                "GET {url} answered {}, not a redirect: {}",
                response.status,
                response.text()
            );
        };
        url = http1::join(&url, location)?;
        if url.starts_with(REDIRECT_URI) {
            let query = http1::query_pairs(&url);
            let get = |name: &str| {
                query
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            if get("state") != Some(state.as_str()) {
                bail!("the state changed on the way: {url}");
            }
            if let Some(error) = get("error") {
                bail!(
                    "the provider refused the authorization: {error}: {}",
                    get("error_description").unwrap_or_default()
                );
            }
            code = Some(
                get("code")
                    .with_context(|| format!("no code in {url}"))?
                    .to_owned(),
            );
            break;
        }
    }
    let code = code.context("the authorization flow did not reach the client in 10 redirects")?;
    let body = http1::form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", CLIENT_ID),
        ("code_verifier", &verifier),
        ("resource", RESOURCE),
    ]);
    let response = http1::request(
        "POST",
        &token_endpoint,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )?;
    if response.status != 200 {
        bail!(
            "the token endpoint answered {}: {}",
            response.status,
            response.text()
        );
    }
    response.json()?["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the token response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc_4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        for bytes in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"foob",
            &[0xfb, 0xff, 0x00, 0x7f],
        ] {
            assert_eq!(base64url_decode(&base64url(bytes)).unwrap(), bytes);
        }
        // A code challenge: Python's `urlsafe_b64encode(sha256(verifier))`, unpadded.
        assert_eq!(
            base64url(&Sha256::digest(
                b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFD-OG-M"
            )),
            "E7Pwd5I9lrfcXti7vvc9QEYzCSwhBtaU7TuEhGilEO4"
        );
    }
}
