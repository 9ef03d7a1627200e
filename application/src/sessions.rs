//! The web UI's logins and sessions (issue #18, ADR 0025).
//!
//! - **Login** is OpenID Connect's authorization code flow with PKCE (RFC 7636, S256) against
//!   the first configured issuer, as the client `--ui-oidc-client-id`. [`Sessions::begin`]
//!   keeps nothing on the server: what the callback must check (the `state`, the `nonce`, the
//!   PKCE verifier, where to return, when it started) travels in a cookie sealed with
//!   XChaCha20-Poly1305 under a key derived from the server's pepper, scoped to the callback
//!   and living 10 minutes. So no flood of login pages fills a table or locks people out, and a
//!   callback is only taken from the browser that started the login (no login CSRF): its sealed
//!   state must equal the `state` the provider sends back. [`Sessions::finish`] opens the
//!   cookie, exchanges the code (which the provider takes once: a replayed callback is
//!   refused there), verifies the ID token (`aud` the client, the login's `nonce`) and finds
//!   the user exactly as a bearer token's ([`crate::users`]).
//! - **Sessions** live in `ui_sessions`: the browser holds a random 256-bit secret, the table
//!   its SHA-256. Each session has a CSRF token its forms carry, an idle limit and an absolute
//!   end. Every request reads the user's grants from its stream ([`crate::users::Users::access_of`]),
//!   so a revoked role or a deactivation applies at once; a deactivated user's sessions are
//!   ended as they are next used.
//! - **Impersonation**: vendor support starts one from the UI (`App::start_impersonation`);
//!   the session then acts with the impersonated user's access, read through the token's own
//!   stream on every request (`App::impersonation_access`), until the token is revoked (the
//!   banner's "End") or expires, when the session is its user's own again.
//! - Expired sessions are deleted whenever a login completes: no background job, and the
//!   table stays as small as the number of people logged in.
//!
//! Times are the ledger's clock (`App::now`), like everything else the ledger decides.

use std::time::Duration;

use base64ct::Encoding;
use domain::ids::UserId;
use sha2::Digest;
use sqlx::Row;

use crate::access::Access;
use crate::oidc::{OidcRejection, UiClient};
use crate::users::Unauthenticated;
use crate::{App, AppError};

/// How long a login may take between the redirect to the provider and the callback.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(600);
/// The scopes the UI asks (API.md "Web UI").
pub const SCOPES: &str = "openid email profile";
/// How often a session's `last_seen` is written (not on every page: one write per minute).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The longest `return_to` kept (a path of this server).
const MAX_RETURN_TO: usize = 2048;

/// What the web UI is configured with (`--ui-oidc-client-id`, `--ui-session-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiConfig {
    pub client: UiClient,
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after its login, however used.
    pub lifetime: Duration,
}

impl UiConfig {
    /// The default idle limit: one hour.
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);
    /// The default absolute lifetime: twelve hours (a working day).
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);
}

/// Why a login could not start or finish. The UI shows each as a page saying what to do; the
/// details are for the operator's log.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the web UI's login is not configured: start the server with --oidc-issuer and --ui-oidc-client-id"
    )]
    NotConfigured,
    #[error("the identity provider failed: {0}")]
    Provider(OidcRejection),
    /// The callback does not belong to a login of this browser, came too late, or its code or
    /// ID token was refused.
    #[error("the login was refused: {0}")]
    Refused(String),
    /// The identity is no active user of the ledger.
    #[error("{0}")]
    NoUser(Unauthenticated),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        Self::App(AppError::from(e))
    }
}

impl From<commands::keys::EntropyError> for LoginError {
    fn from(e: commands::keys::EntropyError) -> Self {
        Self::App(AppError::from(e))
    }
}

/// A login sent to the provider.
#[derive(Debug)]
pub struct LoginStarted {
    /// The provider's authorization URL, with every parameter.
    pub url: String,
    /// The sealed login, for the browser's cookie (base64url, a few hundred bytes).
    pub cookie: String,
}

/// What a login's cookie holds, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    /// Unix seconds, by the ledger's clock.
    started: i64,
}

/// Seals and opens logins' cookies (XChaCha20-Poly1305, a key of its own derived from the
/// pepper, like the idempotent answers').
pub struct LoginSealer {
    cipher: chacha20poly1305::XChaCha20Poly1305,
}

impl std::fmt::Debug for LoginSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSealer").finish_non_exhaustive()
    }
}

/// The associated data of a sealed login: a cookie of nothing else opens as one.
const SEAL_AAD: &[u8] = b"license-ledger/ui-login/1";
const SEAL_NONCE: usize = 24;

impl LoginSealer {
    /// A sealer whose key is HMAC-SHA256 of its own label under `pepper`.
    pub fn new(pepper: &[u8; 32]) -> Self {
        use chacha20poly1305::KeyInit;
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(pepper)
            .expect("HMAC takes any key");
        mac.update(b"license-ledger/ui-login-key/1");
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            cipher: chacha20poly1305::XChaCha20Poly1305::new((&key).into()),
        }
    }

    fn seal(&self, pending: &Pending) -> Result<String, AppError> {
        use chacha20poly1305::aead::{Aead, Payload};
        let nonce = commands::keys::entropy::<SEAL_NONCE>()?;
        let json = serde_json::to_vec(pending)
            .map_err(|_| AppError::Invariant("a pending login did not serialize"))?;
        let sealed = self
            .cipher
            .encrypt(
                chacha20poly1305::XNonce::from_slice(&nonce),
                Payload {
                    msg: &json,
                    aad: SEAL_AAD,
                },
            )
            .map_err(|_| AppError::Invariant("a pending login could not be sealed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(base64ct::Base64UrlUnpadded::encode_string(&out))
    }

    fn open(&self, cookie: &str) -> Option<Pending> {
        use chacha20poly1305::aead::{Aead, Payload};
        // Ours are a few hundred bytes: anything much longer is not one.
        if cookie.len() > 4096 {
            return None;
        }
        let bytes = base64ct::Base64UrlUnpadded::decode_vec(cookie).ok()?;
        if bytes.len() <= SEAL_NONCE {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(SEAL_NONCE);
        let json = self
            .cipher
            .decrypt(
                chacha20poly1305::XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: SEAL_AAD,
                },
            )
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// A session just created: the cookie's secret and where to go.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub return_to: String,
}

/// A live session, and the access of its user now.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who logged in (the staff member, during an impersonation).
    pub user: UserId,
    /// What every form of the session carries.
    pub csrf: String,
    /// What the session acts with: the user's access, or during an impersonation the
    /// impersonated user's (with `impersonation` naming the token and the staff member).
    pub access: Access,
    /// The SHA-256 of the session's secret: which row to change (not a secret itself).
    pub hash: Vec<u8>,
}

/// The logins and sessions of the web UI (see the module documentation).
pub struct Sessions<'a> {
    app: &'a App,
}

impl App {
    /// The web UI's logins and sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { app: self }
    }
}

/// 32 random bytes, base64url without padding (43 characters).
fn random_token() -> Result<String, AppError> {
    let bytes = commands::keys::entropy::<32>()?;
    Ok(base64ct::Base64UrlUnpadded::encode_string(&bytes))
}

fn digest(text: &str) -> Vec<u8> {
    sha2::Sha256::digest(text.as_bytes()).to_vec()
}

/// Whether `path` is a path of this server a login may return to: absolute, not
/// protocol-relative (`//evil.example`), no backslash (which browsers read as a slash), no
/// control characters.
pub fn is_local_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.len() <= MAX_RETURN_TO
}

impl Sessions<'_> {
    fn config(&self) -> Result<&UiConfig, LoginError> {
        self.app.ui().ok_or(LoginError::NotConfigured)
    }

    /// Whether logins are configured.
    pub fn enabled(&self) -> bool {
        self.app.ui().is_some() && self.app.oidc().enabled()
    }

    /// The redirect URI registered with the provider: `{public_url}/auth/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.app.public_url())
    }

    /// Starts a login that returns to `return_to` (a path of this server; anything else
    /// returns to `/`).
    ///
    /// # Errors
    /// Not configured, the provider unreachable, database errors.
    pub async fn begin(&self, return_to: &str) -> Result<LoginStarted, LoginError> {
        let config = self.config()?;
        let (_, endpoints) = self
            .app
            .oidc()
            .endpoints()
            .await
            .map_err(LoginError::Provider)?;
        let state = random_token()?;
        let nonce = random_token()?;
        let verifier = random_token()?;
        let challenge =
            base64ct::Base64UrlUnpadded::encode_string(&sha2::Sha256::digest(verifier.as_bytes()));
        let return_to = if is_local_path(return_to) {
            return_to
        } else {
            "/"
        };
        let cookie = self.app.login_sealer().seal(&Pending {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier,
            return_to: return_to.to_owned(),
            started: self.app.now().timestamp(),
        })?;
        let mut url = url::Url::parse(&endpoints.authorization).map_err(|e| {
            LoginError::Provider(OidcRejection::Provider(format!(
                "authorization endpoint {:?}: {e}",
                endpoints.authorization
            )))
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client.client_id)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(LoginStarted {
            url: url.into(),
            cookie,
        })
    }

    /// Finishes the login `state` names with the provider's `code`: `browser_cookie` is the
    /// login cookie of the browser that calls back. Creates the session.
    ///
    /// # Errors
    /// Refused (another browser's or an old login, a code or ID token the provider or the
    /// checks refuse), no user, the provider unreachable, database errors.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
        browser_cookie: Option<&str>,
        request_id: &str,
    ) -> Result<NewSession, LoginError> {
        let config = self.config()?;
        // The login this browser started, sealed in its cookie: another browser has none
        // (or another login's), and nobody can forge one.
        let pending = browser_cookie
            .and_then(|c| self.app.login_sealer().open(c))
            .ok_or_else(|| {
                LoginError::Refused("this browser started no login, or another one".into())
            })?;
        let same_login: bool =
            subtle::ConstantTimeEq::ct_eq(pending.state.as_bytes(), state.as_bytes()).into();
        if !same_login {
            return Err(LoginError::Refused(
                "the callback's state is not the one this browser's login sent".into(),
            ));
        }
        let now = self.app.now();
        let age = now.timestamp().saturating_sub(pending.started);
        if !(0..=i64::try_from(LOGIN_TIMEOUT.as_secs()).unwrap_or(i64::MAX)).contains(&age) {
            return Err(LoginError::Refused("the login took too long".into()));
        }
        let Pending {
            nonce,
            verifier,
            return_to,
            ..
        } = pending;
        let oidc = self.app.oidc();
        let (_, endpoints) = oidc.endpoints().await.map_err(LoginError::Provider)?;
        let id_token = oidc
            .exchange_code(
                &endpoints.token,
                &config.client,
                code,
                &verifier,
                &self.redirect_uri(),
            )
            .await
            .map_err(|e| match e {
                // Unreachable, timed out, 5xx: the provider's failure, try again later.
                OidcRejection::Provider(_) => LoginError::Provider(e),
                // The code refused (used, expired, not this client's).
                other => LoginError::Refused(other.to_string()),
            })?;
        let verified = oidc
            .verify_id_token(&id_token, &config.client.client_id, &nonce, now)
            .await
            .map_err(|e| match e {
                OidcRejection::Provider(_) => LoginError::Provider(e),
                other => LoginError::Refused(format!("the ID token: {other}")),
            })?;
        let access = self
            .app
            .users()
            .resolve(&verified, request_id)
            .await?
            .map_err(LoginError::NoUser)?;
        let crate::access::PrincipalKind::User { id, .. } = access.kind else {
            return Err(LoginError::App(AppError::Invariant(
                "an identity resolved to a token",
            )));
        };
        self.prune(now).await?;
        let token = random_token()?;
        let csrf = random_token()?;
        let lifetime = chrono::Duration::from_std(config.lifetime).unwrap_or(chrono::Duration::MAX);
        sqlx::query(
            "INSERT INTO ui_sessions (token_hash, user_id, csrf, created_at, last_seen, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(digest(&token))
        .bind(uuid::Uuid::from(id))
        .bind(&csrf)
        .bind(now)
        .bind(now.checked_add_signed(lifetime).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC))
        .execute(self.app.pool())
        .await?;
        tracing::info!(user = %id, "web UI login");
        Ok(NewSession { token, return_to })
    }

    /// The session `token` opens, if it is live and its user active.
    ///
    /// # Errors
    /// Database errors.
    pub async fn get(&self, token: &str) -> Result<Option<Session>, AppError> {
        let Some(config) = self.app.ui() else {
            return Ok(None);
        };
        // Cookies are the browser's: anything that is not one of ours is no session, unread.
        if token.len() != 43 {
            return Ok(None);
        }
        let hash = digest(token);
        let now = self.app.now();
        let idle = chrono::Duration::from_std(config.idle).unwrap_or(chrono::Duration::MAX);
        let row = sqlx::query(
            "SELECT user_id, csrf, last_seen, impersonation FROM ui_sessions \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(self.app.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let last_seen: chrono::DateTime<chrono::Utc> = row.get("last_seen");
        if now - last_seen >= idle {
            self.delete(&hash).await?;
            return Ok(None);
        }
        let user = UserId::from_uuid(row.get("user_id"));
        let Some(mut access) = self.app.users().access_of(user).await? else {
            // Deactivated since the login: its sessions end.
            self.delete(&hash).await?;
            return Ok(None);
        };
        let impersonation: Option<uuid::Uuid> = row.get("impersonation");
        if let Some(token) = impersonation.map(domain::ids::ApiTokenId::from_uuid) {
            match self.app.impersonation_access(token, user).await? {
                Some(acting) => access = acting,
                // Ended (revoked, expired, the staff member no more allowed): the session is
                // the staff member's own again.
                None => self.set_impersonation(&hash, None).await?,
            }
        }
        // Written at most once a minute, and at least twice per idle limit: a session in use
        // never reaches its limit between two writes.
        let touch_every =
            chrono::Duration::from_std(TOUCH_EVERY.min(config.idle / 2)).unwrap_or_default();
        if now - last_seen >= touch_every {
            sqlx::query("UPDATE ui_sessions SET last_seen = $2 WHERE token_hash = $1")
                .bind(&hash)
                .bind(now)
                .execute(self.app.pool())
                .await?;
        }
        Ok(Some(Session {
            user,
            csrf: row.get("csrf"),
            access,
            hash,
        }))
    }

    /// Makes the session `hash` act through impersonation `token` (started by its user), or
    /// its user's own again with `None`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_impersonation(
        &self,
        hash: &[u8],
        token: Option<domain::ids::ApiTokenId>,
    ) -> Result<(), AppError> {
        sqlx::query("UPDATE ui_sessions SET impersonation = $2 WHERE token_hash = $1")
            .bind(hash)
            .bind(token.map(uuid::Uuid::from))
            .execute(self.app.pool())
            .await?;
        Ok(())
    }

    /// Ends the session `token` opens (logout). Ending one that is not there is no error.
    ///
    /// # Errors
    /// Database errors.
    pub async fn end(&self, token: &str) -> Result<(), AppError> {
        self.delete(&digest(token)).await
    }

    /// Ends every session of user `user` (its deactivation).
    ///
    /// # Errors
    /// Database errors.
    pub async fn end_all_of(&self, user: UserId) -> Result<(), AppError> {
        sqlx::query("DELETE FROM ui_sessions WHERE user_id = $1")
            .bind(uuid::Uuid::from(user))
            .execute(self.app.pool())
            .await?;
        Ok(())
    }

    async fn delete(&self, hash: &[u8]) -> Result<(), AppError> {
        sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
            .bind(hash)
            .execute(self.app.pool())
            .await?;
        Ok(())
    }

    /// Deletes sessions past their end or idle limit.
    async fn prune(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), LoginError> {
        let config = self.config()?;
        let idle = chrono::Duration::from_std(config.idle).unwrap_or(chrono::Duration::MAX);
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1 OR last_seen <= $2")
            .bind(now)
            .bind(
                now.checked_sub_signed(idle)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            )
            .execute(self.app.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_server_are_returned_to() {
        assert!(is_local_path("/"));
        assert!(is_local_path("/licenses?key_prefix=ABCD"));
        for foreign in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
        ] {
            assert!(!is_local_path(foreign), "{foreign:?}");
        }
        assert!(!is_local_path(&format!("/{}", "a".repeat(MAX_RETURN_TO))));
    }

    #[test]
    fn a_sealed_login_opens_only_unaltered_and_under_its_key() {
        let sealer = LoginSealer::new(&[7; 32]);
        let pending = Pending {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_to: "/licenses".into(),
            started: 1,
        };
        let cookie = sealer.seal(&pending).unwrap();
        let opened = sealer.open(&cookie).unwrap();
        assert_eq!(
            (opened.state, opened.return_to),
            ("s".into(), "/licenses".into())
        );
        assert!(!cookie.contains("/licenses"), "sealed, not just encoded");
        let mut altered = cookie.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            sealer
                .open(std::str::from_utf8(&altered).unwrap())
                .is_none()
        );
        assert!(LoginSealer::new(&[8; 32]).open(&cookie).is_none());
        assert!(sealer.open("").is_none());
        assert!(sealer.open(&"A".repeat(5000)).is_none());
    }

    #[test]
    fn tokens_are_256_bits_of_base64url() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
