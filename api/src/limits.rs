//! Protective limits: request rate per client IP and a per-request deadline. (The body size limit
//! is axum's `DefaultBodyLimit`, answered as 413 problem+json by the extractors.)

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// A per-IP token bucket.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimit {
    /// `per_second` sustained with bursts of `burst`; `None` when `per_second` is 0 (disabled).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self {
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
        })
    }

    /// Forgets clients idle long enough to be back at a full bucket (bounds memory).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Middleware: 429 problem+json with `Retry-After` once an IP is over its rate.
pub async fn rate_limit(State(limit): State<RateLimit>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(ip) = ip
        && let Err(not_until) = limit.limiter.check_key(&ip)
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut response = ApiError::too_many_requests(wait.as_secs() + 1).into_response();
        // The refused request's body is left unread, so the connection cannot carry another
        // request and is closed after this answer: say so, or clients reuse it and see a reset.
        if has_body(&req) {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        return response;
    }
    next.run(req).await
}

/// Whether `req` announces a body (a non-zero `Content-Length`, or any `Transfer-Encoding`).
fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
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
