//! `GET /metrics`: the process's metrics in the Prometheus text format (ADR 0018).
//!
//! Counters and histograms go through the `metrics` facade, so the crates that see an event
//! count it where it happens (`commands::store` the events appended, `application::validate` the
//! validation codes) without knowing the exporter; this module installs the Prometheus recorder
//! once per process, describes every series, registers those no request has touched yet (Stripe
//! events and downloads, whose subsystems do not exist yet, show 0 from the start), times every
//! request ([`observe`]) and, at each scrape, reads the gauges that live in the database
//! (projector lag, the last signed checkpoint).
//!
//! Where it is served: on the main listener for a bearer token that may read (it tells volumes),
//! and without authentication on `--metrics-listen`, an address of the operator's choosing
//! (loopback or a private network), as Prometheus scrapes usually run.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{
    Label, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::state::AppState;

/// Requests answered, by method, route template and status.
pub const HTTP_REQUESTS: &str = "ledger_http_requests_total";
/// Time from routing to the answer's head, by method, route template and status.
pub const HTTP_DURATION: &str = "ledger_http_request_duration_seconds";
/// Events not yet applied per projector.
pub const PROJECTOR_LAG_EVENTS: &str = "ledger_projector_lag_events";
/// Age of the oldest event a projector has not applied.
pub const PROJECTOR_LAG_SECONDS: &str = "ledger_projector_lag_seconds";
/// Global position of the last event under the latest signed checkpoint (0: none yet).
pub const CHECKPOINT_POSITION: &str = "ledger_checkpoint_last_position";
/// Stripe webhook events by outcome (`processed`, `ignored`, `failed`): billing, issue #16.
pub const STRIPE_EVENTS: &str = "ledger_stripe_events_total";
/// Artifact downloads served, and their bytes: releases, issue #17.
pub const DOWNLOADS_SERVED: &str = "ledger_downloads_served_total";
pub const DOWNLOAD_BYTES: &str = "ledger_download_bytes_total";

/// The route label of a request no route matched: one series, whatever the path (a path may
/// hold anything, a key typed into the wrong place included).
const UNMATCHED: &str = "unmatched";

/// Request latencies from 1 ms (a validation answers from memory) to 30 s (the deadline).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. Several servers in one process
/// (the tests) share it, as they share the process.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            // Only an empty bucket list is refused; ours is not.
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows nothing");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency, by method, route and status"
    );
    describe_counter!(
        application::validate::VALIDATIONS,
        "Answers of POST /v1/validate, by validation code (NOT_FOUND: no license of the app)"
    );
    describe_counter!(
        commands::store::EVENTS_APPENDED,
        "Events appended to the log by this process, by event type"
    );
    describe_gauge!(
        PROJECTOR_LAG_EVENTS,
        "Events of a projector's types it has not applied yet (counted up to 100,000)"
    );
    describe_gauge!(
        PROJECTOR_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Age of the oldest event a projector has not applied (0 when none)"
    );
    describe_gauge!(
        CHECKPOINT_POSITION,
        "Global position of the last event under the latest signed checkpoint (0: none yet)"
    );
    describe_counter!(
        STRIPE_EVENTS,
        "Stripe events the billing consumer took, by outcome (a failed one counts each attempt)"
    );
    describe_counter!(
        DOWNLOADS_SERVED,
        "Artifact downloads served: responses of GET /v1/downloads/{token} whose last byte went out"
    );
    describe_counter!(
        DOWNLOAD_BYTES,
        metrics::Unit::Bytes,
        "Bytes of artifact downloads served, counted when a response's last byte went out"
    );
    // Registered now, so that dashboards and alerts find the series before the first sample.
    for outcome in ["processed", "ignored", "failed"] {
        counter!(STRIPE_EVENTS, "outcome" => outcome).absolute(0);
    }
    counter!(DOWNLOADS_SERVED).absolute(0);
    counter!(DOWNLOAD_BYTES).absolute(0);
    gauge!(CHECKPOINT_POSITION).set(0.0);
}

/// The method label: the standard methods by name, anything else as one `other` series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template (`MatchedPath`, which the
/// router sets before any route's layers run), never by its path.
pub async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // A clone of the template is an `Arc`'s: no allocation.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let (count, time) = series(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        status,
    );
    time.record(started.elapsed().as_secs_f64());
    count.increment(1);
    response
}

/// The handles of one (method, route, status): what a request records into.
type Series = (metrics::Counter, metrics::Histogram);

/// Per route template, the series of each (method, status) seen.
type SeriesByRoute = std::collections::HashMap<String, Vec<(&'static str, u16, Series)>>;

thread_local! {
    /// Per worker thread, the handles already looked up, by route then (method, status). A
    /// request looks its series up here without allocating or touching the shared registry:
    /// building the labels and looking them up in the registry, twice per request, cost 7% of
    /// `POST /v1/validate`'s rate (`bench validation`, 0.75 vs 0.81 of the baseline without
    /// this middleware; BENCHMARKS.md). Bounded: routes × methods × statuses per thread.
    static SERIES: std::cell::RefCell<SeriesByRoute> = std::cell::RefCell::new(SeriesByRoute::new());
}

fn series(method: &'static str, route: &str, status: u16) -> Series {
    SERIES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let found = cache
            .get(route)
            .and_then(|all| all.iter().find(|(m, s, _)| *m == method && *s == status))
            .map(|(_, _, handles)| handles.clone());
        if let Some(handles) = found {
            return handles;
        }
        // Handles taken before the recorder is installed would record nowhere, for good.
        handle();
        let labels = vec![
            Label::from_static_parts("method", method),
            Label::new("route", route.to_owned()),
            Label::new("status", status.to_string()),
        ];
        let handles = (
            counter!(HTTP_REQUESTS, labels.clone()),
            histogram!(HTTP_DURATION, labels),
        );
        cache
            .entry(route.to_owned())
            .or_default()
            .push((method, status, handles.clone()));
        handles
    })
}

/// Sets the gauges read from the database, then renders every series.
async fn render(state: &AppState) -> Response {
    let handle = handle();
    match state.app.projector_lags().await {
        Ok(lags) => {
            for lag in lags {
                #[allow(clippy::cast_precision_loss)] // counts below 2^53
                {
                    gauge!(PROJECTOR_LAG_EVENTS, "projector" => lag.name.clone())
                        .set(lag.pending_events as f64);
                    gauge!(PROJECTOR_LAG_SECONDS, "projector" => lag.name)
                        .set(lag.oldest_pending_ms as f64 / 1000.0);
                }
            }
        }
        // The scrape still answers: the other series are in memory, and a stale lag is better
        // seen than a failed scrape.
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read projector lag"),
    }
    if let Ok(checkpoint) = state.app.latest_checkpoint().await {
        #[allow(clippy::cast_precision_loss)] // positions below 2^53
        gauge!(CHECKPOINT_POSITION).set(checkpoint.position as f64);
    }
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /metrics` on the main listener, for a token that may read (without one, the separate
/// `--metrics-listen` listener serves it).
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "The Prometheus text exposition format (ADR 0018)",
        content_type = "text/plain", body = String)))]
async fn metrics_authenticated(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    Ok(render(&state).await)
}

/// `/metrics` on the main listener.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(metrics_authenticated))
}

/// The router of `--metrics-listen`: `/metrics` without authentication, nothing else.
pub fn listener_router(state: AppState) -> Router {
    async fn open(State(state): State<AppState>) -> Response {
        render(&state).await
    }
    Router::new().route("/metrics", get(open)).with_state(state)
}

/// Keeps the recorder's histograms bounded between scrapes (the exporter leaves it to us).
pub fn upkeep() {
    handle().run_upkeep();
}
