//! `validation-baseline`: the baseline server of `bench validation` (issue #3), a minimal axum
//! server answering `POST /v1/validate` from a `HashMap<String, serde_json::Value>` of the keys
//! the bench seeded. The bench spawns it as its own process, next to `ledger serve`, and drives
//! both with wrk.
//!
//! It is a package of its own so that `bench` does not link an HTTP server: apart from `api`,
//! this baseline is the one place of the workspace that knows HTTP, and it is small enough to
//! read at a glance next to the figures it produces.
//!
//! The keys arrive on stdin, one per line, written by the bench from the very function that
//! derived the seeded licenses' keys (`bench/src/validation.rs`): the baseline holds exactly the
//! seeded keys without a second copy of the derivation, and needs none of the ledger's crates.
//! Once every key is read it prints `listening ADDR` on stdout and serves until killed.

// As every server-side binary of the workspace (ADR 0008), and as this server did when it ran
// inside the `bench` process: the comparison with `ledger serve` stays on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::ensure;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};

/// The baseline server of `bench validation`; reads its keys from stdin, one per line.
#[derive(Debug, Parser)]
#[command(name = "validation-baseline")]
struct Cli {
    /// How many keys stdin carries (all of them must arrive, each once).
    #[arg(long)]
    licenses: u64,
    /// The App GUID requests must carry in `X-App-Id`.
    #[arg(long)]
    app_id: String,
    /// The address to listen on (the bench lets the system pick a port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(cli.licenses, cli.app_id, cli.listen))
}

#[derive(Deserialize)]
struct Body {
    key: String,
}

struct Baseline {
    app_id: String,
    licenses: HashMap<String, Value>,
}

async fn validate(
    State(b): State<Arc<Baseline>>,
    headers: HeaderMap,
    Json(body): Json<Body>,
) -> axum::response::Response {
    if headers.get("x-app-id").and_then(|v| v.to_str().ok()) != Some(b.app_id.as_str()) {
        return (StatusCode::FORBIDDEN, Json(json!({"code": "APP_MISMATCH"}))).into_response();
    }
    match b.licenses.get(&body.key) {
        Some(license) => Json(
            json!({"valid": true, "code": "VALID", "detail": "the license is valid",
                                     "license": license, "warnings": []}),
        )
        .into_response(),
        None => (StatusCode::FORBIDDEN, Json(json!({"code": "NOT_FOUND"}))).into_response(),
    }
}

/// Serves the baseline: the `n` keys of stdin in a `HashMap`, until killed. Prints
/// `listening ADDR`.
///
/// # Errors
/// When stdin does not carry `n` distinct keys, or the address cannot be bound.
async fn serve(n: u64, app_id: String, listen: SocketAddr) -> anyhow::Result<()> {
    let mut licenses = HashMap::with_capacity(n as usize);
    let expires = chrono::Utc::now() + chrono::Duration::days(365);
    for key in std::io::stdin().lock().lines() {
        let license = json!({"id": uuid::Uuid::now_v7(), "status": "active", "product_id": uuid::Uuid::nil(),
                             "policy": {"id": uuid::Uuid::nil(), "version": 1, "model": "node_locked"},
                             "features": ["export.pdf", "pro"], "seats": 3, "activations": 0,
                             "expires_at": expires, "trial_days_remaining": null});
        licenses.insert(key?, license);
    }
    // A short or repeated list would make the baseline answer NOT_FOUND where ours says VALID,
    // and wrk would report errors instead of a comparison.
    ensure!(
        licenses.len() as u64 == n,
        "stdin carried {} distinct keys, --licenses says {n}",
        licenses.len()
    );
    let state = Arc::new(Baseline { app_id, licenses });
    let app = axum::Router::new()
        .route("/v1/validate", axum::routing::post(validate))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
