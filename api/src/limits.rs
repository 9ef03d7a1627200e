//! Protective limits: request rates and a per-request deadline. (The body size limit is axum's
//! `DefaultBodyLimit`, answered as 413 problem+json by the extractors.)
//!
//! Rates are token buckets (`governor`'s GCRA), keyed as ADR 0018 decides:
//! - an administration request whose bearer token authenticates spends that token's bucket,
//!   sized by the token's role ([`PrincipalLimits`]): a vendor's CRM importing on 16 threads is
//!   not throttled by the address it shares with its colleagues;
//! - every other administration request (no token, or a token that does not authenticate) spends
//!   its client address's bucket: inventing tokens buys no fresh bucket;
//! - client applications and the JWKS spend their address's bucket ([`AddressLimit`]): their
//!   license key is in the body and proves nothing until the handler has checked it.
//!
//! Every answer of a limited route carries `RateLimit-Limit` (the bucket's size), `RateLimit-
//! Remaining` (what is left after this request) and `RateLimit-Reset` (seconds until the bucket
//! is full again), as draft-ietf-httpapi-ratelimit-headers defines them; a 429 also carries
//! `Retry-After` (seconds until one more request is let through).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::event::Actor;
use domain::values::Role;
use governor::clock::{Clock, DefaultClock, QuantaInstant};
use governor::middleware::{StateInformationMiddleware, StateSnapshot};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// A sustained rate and the burst allowed above it; `0` requests per second disables the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    /// `per_second` sustained, bursts of `burst` (at least `per_second`).
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    fn quota(self) -> Option<Quota> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst.max(self.per_second)).unwrap_or(rate);
        Some(Quota::per_second(rate).allow_burst(burst))
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `RPS` (bursts of twice that) or `RPS/BURST`, e.g. `2000/4000`; `0` for no limit.
    fn from_str(s: &str) -> Result<Self, String> {
        let number = |t: &str| t.trim().parse::<u32>().ok();
        let (rate, burst) = match s.split_once('/') {
            Some((rate, burst)) => (number(rate), number(burst)),
            None => (number(s), number(s).map(|r| r.saturating_mul(2))),
        };
        match (rate, burst) {
            (Some(per_second), Some(burst)) => Ok(Self { per_second, burst }),
            _ => Err(format!(
                "{s:?} is not a rate: requests per second, optionally /burst (e.g. 2000/4000; 0: \
                 no limit)"
            )),
        }
    }
}

/// A role's rate, as `--token-rate-limit ROLE=RPS[/BURST]` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleRate {
    pub role: Role,
    pub rate: Rate,
}

impl FromStr for RoleRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (role, rate) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: expected ROLE=RPS[/BURST], e.g. vendor_admin=2000/4000")
        })?;
        let role = Role::parse(role.trim()).map_err(|e| e.to_string())?;
        Ok(Self {
            role,
            rate: rate.parse()?,
        })
    }
}

/// Every role's rate when none is configured: above what one server can append at all (3,115
/// commands a second on 16 writers, raw INSERTs 3,671, BENCHMARKS.md), so an import on any
/// number of threads is never refused, while a runaway read loop still meets a ceiling.
pub const DEFAULT_TOKEN_RATE: Rate = Rate::new(5000, 10_000);

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// A keyed bucket set with the headers its decisions produce.
struct Buckets<K: std::hash::Hash + Eq + Clone> {
    limiter: Limiter<K>,
    quota: Quota,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate) -> Option<Self> {
        let quota = rate.quota()?;
        Some(Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            quota,
        })
    }

    fn check(&self, key: &K) -> Decision {
        match self.limiter.check_key(key) {
            Ok(state) => Decision::Allowed(state),
            Err(not_until) => Decision::Refused(self.quota, not_until),
        }
    }

    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// What a bucket said about one request.
enum Decision {
    Allowed(StateSnapshot),
    Refused(Quota, NotUntil<QuantaInstant>),
}

/// Whole seconds, rounded up: a client told to wait 0 s while it still must wait retries early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Decision {
    /// The `RateLimit-*` headers of this decision (a refusal's `Retry-After` is the 429's own).
    fn annotate(&self, headers: &mut HeaderMap) {
        let (quota, remaining, reset) = match self {
            Self::Allowed(state) => {
                let quota = state.quota();
                let remaining = state.remaining_burst_capacity();
                let missing = quota.burst_size().get().saturating_sub(remaining);
                (quota, remaining, quota.replenish_interval() * missing)
            }
            Self::Refused(quota, not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let rest = quota.burst_size().get().saturating_sub(1);
                (*quota, 0, wait + quota.replenish_interval() * rest)
            }
        };
        let mut set = |name: &'static str, value: u64| {
            headers.insert(name, HeaderValue::from(value));
        };
        set("ratelimit-limit", u64::from(quota.burst_size().get()));
        set("ratelimit-remaining", u64::from(remaining));
        set("ratelimit-reset", ceil_secs(reset));
    }

    /// The 429 of a refused request, with its headers.
    fn refusal(&self, req: &Request) -> Response {
        let wait = match self {
            Self::Refused(_, not_until) => not_until.wait_time_from(DefaultClock::default().now()),
            Self::Allowed(_) => Duration::ZERO,
        };
        let mut response = ApiError::too_many_requests(ceil_secs(wait)).into_response();
        // The refused request's body is left unread, so the connection cannot carry another
        // request and is closed after this answer: say so, or clients reuse it and see a reset.
        if has_body(req) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.annotate(response.headers_mut());
        response
    }

    /// Runs the request when allowed, answers 429 otherwise; either way with the headers.
    async fn apply(self, req: Request, next: Next) -> Response {
        if let Self::Allowed(_) = self {
            let mut response = next.run(req).await;
            self.annotate(response.headers_mut());
            response
        } else {
            self.refusal(&req)
        }
    }
}

/// The address a request spends: IPv4 addresses one by one, IPv6 by /64 (as the connection cap
/// counts them); `None` when the listener recorded none (never in `ledger serve`).
fn client_address(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| crate::listener::client_key(addr.ip()))
}

/// A per-address limit (client applications, the JWKS).
#[derive(Clone)]
pub struct AddressLimit(Arc<Buckets<IpAddr>>);

impl AddressLimit {
    /// `None` when `rate` is 0 (disabled).
    pub fn new(rate: Rate) -> Option<Self> {
        Buckets::new(rate).map(|b| Self(Arc::new(b)))
    }

    /// Forgets addresses idle long enough to be back at a full bucket (bounds memory).
    pub fn prune(&self) {
        self.0.prune();
    }
}

/// Middleware: the request spends its address's bucket.
pub async fn per_address(State(limit): State<AddressLimit>, req: Request, next: Next) -> Response {
    let Some(ip) = client_address(&req) else {
        return next.run(req).await;
    };
    limit.0.check(&ip).apply(req, next).await
}

/// The administration API's limits: a bucket per token, sized by its role, and a bucket per
/// address for requests without a token that authenticates.
pub struct PrincipalLimits {
    by_role: Vec<(Role, Buckets<Actor>)>,
    by_address: Option<Buckets<IpAddr>>,
}

impl PrincipalLimits {
    /// `roles` overrides [`DEFAULT_TOKEN_RATE`] per role (a rate of 0: that role is not
    /// limited); `unauthenticated` is the per-address rate of everything else (0: not limited).
    pub fn new(roles: &[RoleRate], unauthenticated: Rate) -> Self {
        // Every role there is, so a role added later is limited by default, never forgotten.
        let by_role = Role::ALL
            .iter()
            .filter_map(|text| Role::parse(text).ok())
            .filter_map(|role| {
                // The last mention wins, as with any repeated flag.
                let rate = roles
                    .iter()
                    .rev()
                    .find(|r| r.role == role)
                    .map_or(DEFAULT_TOKEN_RATE, |r| r.rate);
                Buckets::new(rate).map(|b| (role, b))
            })
            .collect();
        Self {
            by_role,
            by_address: Buckets::new(unauthenticated),
        }
    }

    /// Forgets tokens and addresses idle long enough to be back at a full bucket.
    pub fn prune(&self) {
        for (_, buckets) in &self.by_role {
            buckets.prune();
        }
        if let Some(buckets) = &self.by_address {
            buckets.prune();
        }
    }

    fn check(&self, principal: Option<&Principal>, address: Option<IpAddr>) -> Option<Decision> {
        match principal {
            Some(p) => self
                .by_role
                .iter()
                .find(|(role, _)| *role == p.rate_role())
                .map(|(_, b)| b.check(&p.access.credential())),
            None => Some(self.by_address.as_ref()?.check(&address?)),
        }
    }
}

/// What the administration limit middleware needs: the application (to authenticate) and the
/// buckets.
#[derive(Clone)]
pub struct PrincipalLimiter {
    pub state: AppState,
    pub limits: Arc<PrincipalLimits>,
}

/// Middleware: authenticates the bearer token, if any, and spends its bucket; without one that
/// authenticates, the address's bucket. The principal (or the refusal) is left in the request's
/// extensions, so the handler does not look the token up a second time.
pub async fn per_principal(
    State(limiter): State<PrincipalLimiter>,
    req: Request,
    next: Next,
) -> Response {
    let address = client_address(&req);
    let (mut parts, body) = req.into_parts();
    let principal = if parts.headers.contains_key(header::AUTHORIZATION) {
        Principal::from_request_parts(&mut parts, &limiter.state)
            .await
            .ok()
    } else {
        None
    };
    let req = Request::from_parts(parts, body);
    match limiter.limits.check(principal.as_ref(), address) {
        Some(decision) => decision.apply(req, next).await,
        None => next.run(req).await,
    }
}

/// Whether `req` announces a body (a non-zero `Content-Length`, or any `Transfer-Encoding`).
fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// Middleware: a request still running after the deadline is answered 503 and abandoned. A command
/// abandoned this way either committed entirely or not at all (appends are one statement).
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            domain::ErrorCode::Timeout,
            "the request took too long; retry it (with the same Idempotency-Key for commands)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_and_without_a_burst() {
        assert_eq!("10".parse::<Rate>(), Ok(Rate::new(10, 20)));
        assert_eq!("10/15".parse::<Rate>(), Ok(Rate::new(10, 15)));
        assert_eq!("0".parse::<Rate>(), Ok(Rate::new(0, 0)));
        assert!("ten".parse::<Rate>().is_err());
        assert!("10/".parse::<Rate>().is_err());
        let role: RoleRate = "vendor_auditor=5/9".parse().unwrap();
        assert_eq!(
            (role.role, role.rate),
            (Role::VendorAuditor, Rate::new(5, 9))
        );
        assert!("nobody=5".parse::<RoleRate>().is_err());
        assert!("vendor_admin".parse::<RoleRate>().is_err());
    }

    #[test]
    fn headers_count_down_and_say_when_the_bucket_is_full_again() {
        let buckets = Buckets::<u8>::new(Rate::new(1, 3)).unwrap();
        let mut remaining = Vec::new();
        for _ in 0..3 {
            let mut headers = HeaderMap::new();
            buckets.check(&1).annotate(&mut headers);
            assert_eq!(headers["ratelimit-limit"], "3");
            remaining.push(headers["ratelimit-remaining"].to_str().unwrap().to_owned());
            let reset: u64 = headers["ratelimit-reset"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=3).contains(&reset), "{reset}");
        }
        assert_eq!(remaining, ["2", "1", "0"]);
        let refused = buckets.check(&1);
        assert!(matches!(refused, Decision::Refused(..)));
        let mut headers = HeaderMap::new();
        refused.annotate(&mut headers);
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-reset"], "3");
        // Another key has a bucket of its own.
        assert!(matches!(buckets.check(&2), Decision::Allowed(_)));
    }
}
