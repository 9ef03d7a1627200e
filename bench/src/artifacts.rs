//! Issue #17's performance targets for releases and downloads, through `ledger serve` as users
//! run it (release build, rate limits off, its own database and data directory,
//! `--max-artifact-bytes` the artifact's size):
//!
//! - **Download**: `GET /v1/downloads/{token}` of a published artifact (default 1 GiB) against
//!   a plain file server in this process: an axum route that streams the very same file (the
//!   ledger's content file, so both read the same page cache) with `tokio::fs` + `ReaderStream`
//!   in 256 KiB blocks + `axum::body::Body`, the crates and block size of the download route,
//!   with no ledger logic. Target: ledger / baseline ≥ 0.8.
//! - **Upload**: `PUT /v1/releases/{id}/artifacts/{name}` into a new draft release each cycle,
//!   the file with its first 8 bytes changed per cycle (a new digest, never a replay), against an
//!   axum route here that streams the same body to a file through a 1 MiB `tokio::io::BufWriter`
//!   and fsyncs it, as `application::artifacts` does, without hashing, renaming or events.
//!   Target: ledger / baseline ≥ 0.7.
//! - **Memory**: 16 concurrent downloads through the ledger while its `VmRSS` is sampled every
//!   100 ms; the growth is the peak over the value read just before they started (after the
//!   single transfers above). Target: < 64 MiB. The value before any transfer is shown too.
//!
//! Both arms are read and written by one client, hyper's HTTP/1.1 connection (a new loopback
//! connection per transfer), and alternate within each cycle, the first arm rotating. The
//! baselines run on a tokio runtime of their own (as many workers as CPUs, as the ledger's), so
//! that they do not share the client's threads; the ledger runs in its own process. A rate is
//! the artifact's bytes over the time from connecting to the last byte of the answer.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::harness::{median, ratio_cell, ratios};
use crate::idempotency_http::mint;
use crate::validation::{rss_mib, sibling, start_ours_with};

/// The download route's block (`api::routes::downloads`), used by the baseline too.
const BLOCK: usize = 256 * 1024;

/// The artifact store's write buffer (`application::artifacts`), used by the baseline too.
const WRITE_BUFFER: usize = 1024 * 1024;

/// hyper's read buffer as `ledger serve`'s listener caps it (`api::listener`), for
/// `--baseline-small-buffer`.
const LISTENER_BUFFER: usize = 16 * 1024;

/// How often the server's resident memory is read during the concurrent downloads.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

const MIB: f64 = 1024.0 * 1024.0;

/// Options of `bench artifacts`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Size of the artifact, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub size_mib: u64,
    /// Cycles; each transfers the artifact once through each arm, down and up.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub cycles: u64,
    /// Concurrent downloads through the ledger while its memory is sampled.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrent: u64,
    /// Serve the baselines with hyper's read buffer capped at 16 KiB, as `ledger serve`'s
    /// listener caps it, to tell that cap's share apart from the rest of the ledger's cost.
    #[arg(long)]
    pub baseline_small_buffer: bool,
}

/// Removes the bench's files when dropped, on errors too.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the three measurements against a server on the database at `url`.
///
/// # Errors
/// The server's, the database's, the file system's, or an answer that is not the expected one.
pub async fn run(url: &str, o: &Options) -> anyhow::Result<()> {
    let size = o.size_mib * 1024 * 1024;
    let ledger_exe = sibling("ledger")?;
    let run_id = uuid::Uuid::now_v7();
    // Declared before the server and the baseline: dropped after them.
    let scratch = Scratch(std::env::temp_dir().join(format!("ledger-bench-artifacts-{run_id}")));
    let uploads = scratch.0.join("baseline-uploads");
    std::fs::create_dir_all(&uploads)?;
    let source = scratch.0.join("artifact.bin");
    eprintln!(
        "writing a {} MiB artifact to {}",
        o.size_mib,
        source.display()
    );
    let seed = run_id.as_u128() as u64 | 1;
    let generated = source.clone();
    tokio::task::spawn_blocking(move || generate(&generated, size, seed)).await??;

    let data_dir = scratch.0.join("ledger-data");
    let max = size.to_string();
    let (server, _) =
        start_ours_with(&ledger_exe, url, &data_dir, &["--max-artifact-bytes", &max])?;
    let pid = server.child.id();
    let addr = server.addr.clone();
    let admin = Admin {
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
        token: mint(&ledger_exe, url)?,
    };

    // ----- the catalogue, a license and a published release holding the artifact -----
    let org = admin
        .call(
            "/v1/organizations",
            json!({"name": "Bench Customer", "kind": "customer"}),
            201,
        )
        .await?;
    let product = admin
        .call(
            "/v1/products",
            json!({"name": "Bench Studio", "kind": "application"}),
            201,
        )
        .await?;
    let product_id = text(&product, "id")?;
    let policy = admin
        .call(
            "/v1/policies",
            json!({"product_id": product_id, "name": "Yearly", "model": "node_locked",
                   "seats": 1, "duration_days": 365, "features": ["pro"],
                   "offline_allowed": false, "offline_grace_days": 0, "payment_grace_days": 0}),
            201,
        )
        .await?;
    let license = admin
        .call(
            "/v1/licenses",
            json!({"policy_id": text(&policy, "id")?, "organization_id": text(&org, "id")?}),
            201,
        )
        .await?;
    let license_id = text(&license, "id")?;
    let release = admin.draft(&product_id, "1.0.0").await?;
    // Before any transfer: what the server holds once started and set up.
    let idle = rss_mib(pid)?;
    let (artifact, _) = admin
        .upload(&addr, &release, "studio-1.0.0.bin", &source, size, None)
        .await?;
    admin
        .call(&format!("/v1/releases/{release}/publish"), json!({}), 200)
        .await?;
    let artifact_id = text(&artifact, "id")?;
    let published_sha = text(&artifact, "sha256")?;
    let content_dir = data_dir.join("artifacts").join("sha256");
    let stored = content_dir.join(&published_sha);
    ensure!(
        std::fs::metadata(&stored)?.len() == size,
        "the ledger's content file {} does not hold the artifact",
        stored.display()
    );

    let baseline = Baseline::start(stored, uploads.clone(), o.baseline_small_buffer)?;
    let baseline_addr = baseline.addr.to_string();

    println!("\n## Releases and downloads (issue #17)\n");
    println!("# command: {}", command_line());
    println!(
        "# artifact {} MiB, {} cycles, {} concurrent downloads, {} CPUs, baseline read buffer {}",
        o.size_mib,
        o.cycles,
        o.concurrent,
        std::thread::available_parallelism().map_or(0, usize::from),
        if o.baseline_small_buffer {
            "16 KiB (as the listener's)"
        } else {
            "hyper's default"
        }
    );

    // ----- downloads -----
    // Warm-up: both arms once, untimed; the file is in the page cache from here on.
    let link = admin.link(&artifact_id, &license_id).await?;
    download(&addr, &link, size).await?;
    download(&baseline_addr, "/file", size).await?;
    let (mut ours_down, mut base_down) = (Vec::new(), Vec::new());
    for cycle in 0..o.cycles {
        // A fresh link per cycle: links expire after 300 s.
        let link = admin.link(&artifact_id, &license_id).await?;
        let (mut ours, mut base) = (0.0, 0.0);
        for k in 0..2 {
            if (cycle + k).is_multiple_of(2) {
                ours = rate(size, download(&addr, &link, size).await?);
            } else {
                base = rate(size, download(&baseline_addr, "/file", size).await?);
            }
        }
        eprintln!(
            "download cycle {:>2}: ledger {ours:.0} MiB/s  baseline {base:.0} MiB/s  ratio {:.2}",
            cycle + 1,
            ours / base
        );
        ours_down.push(ours);
        base_down.push(base);
    }

    // ----- memory under concurrent downloads -----
    let mut links = Vec::new();
    for _ in 0..o.concurrent {
        links.push(admin.link(&artifact_id, &license_id).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_mib(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut peak, mut samples) = (0.0_f64, 0_u32);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                peak = peak.max(rss_mib(pid)?);
                samples += 1;
            }
            anyhow::Ok((peak, samples))
        })
    };
    let started = Instant::now();
    let mut transfers = Vec::new();
    for link in links {
        let addr = addr.clone();
        transfers.push(tokio::spawn(
            async move { download(&addr, &link, size).await },
        ));
    }
    for t in transfers {
        t.await??;
    }
    let together = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (peak, samples) = sampler.await??;
    let peak = peak.max(rss_mib(pid)?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_mib(pid)?;
    let growth = peak - before;
    eprintln!(
        "memory: {} downloads in {together:.1} s, RSS {before:.0} -> peak {peak:.0} MiB ({samples} samples)",
        o.concurrent
    );

    // ----- uploads -----
    // Warm-up of the baseline's route (the ledger's was the published release's upload).
    upload_baseline(&baseline_addr, &uploads, "warm-up.bin", &source, size, 0).await?;
    let (mut ours_up, mut base_up) = (Vec::new(), Vec::new());
    for cycle in 0..o.cycles {
        // Bytes of its own per cycle: another digest, so the ledger stores and records it.
        let marker = seed.rotate_left(17) ^ (cycle + 1);
        let name = format!("studio-2.0.{cycle}.bin");
        let release = admin.draft(&product_id, &format!("2.0.{cycle}")).await?;
        let (mut ours, mut base) = (0.0, 0.0);
        for k in 0..2 {
            if (cycle + k).is_multiple_of(2) {
                let (answer, took) = admin
                    .upload(&addr, &release, &name, &source, size, Some(marker))
                    .await?;
                ours = rate(size, took);
                // Its file is not needed again (a draft nobody downloads): removed so that the
                // disk holds one upload at a time, as the baseline's does.
                let sha = text(&answer, "sha256")?;
                ensure!(sha != published_sha, "an upload was a replay");
                std::fs::remove_file(content_dir.join(sha))?;
            } else {
                let took =
                    upload_baseline(&baseline_addr, &uploads, &name, &source, size, marker).await?;
                base = rate(size, took);
            }
        }
        eprintln!(
            "upload cycle {:>2}: ledger {ours:.0} MiB/s  baseline {base:.0} MiB/s  ratio {:.2}",
            cycle + 1,
            ours / base
        );
        ours_up.push(ours);
        base_up.push(base);
    }

    println!();
    println!(
        "| transfer | baseline MiB/s (median) | ledger MiB/s (median) | ledger / baseline (median, min-max) | target |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, ours, base, target) in [
        (
            "download `GET /v1/downloads/{token}`",
            &ours_down,
            &base_down,
            0.8,
        ),
        (
            "upload `PUT /v1/releases/{id}/artifacts/{name}`",
            &ours_up,
            &base_up,
            0.7,
        ),
    ] {
        let r = ratios(ours, base);
        println!(
            "| {name} | {:.0} | {:.0} | {} | ≥ {target:.2} {} |",
            median(base),
            median(ours),
            ratio_cell(&r),
            if median(&r) >= target {
                "met"
            } else {
                "missed"
            }
        );
    }
    println!();
    println!(
        "| concurrent downloads | together MiB/s | RSS before any transfer (MiB) | RSS before (MiB) | RSS peak (MiB) | growth (MiB) | RSS 1 s after (MiB) | samples | target growth < 64 MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {:.0} | {idle:.0} | {before:.0} | {peak:.0} | {growth:.1} | {after:.0} | {samples} | {} |",
        o.concurrent,
        (o.concurrent * size) as f64 / MIB / together,
        if growth < 64.0 { "met" } else { "missed" }
    );

    drop(baseline);
    drop(server);
    drop(scratch);
    Ok(())
}

/// MiB/s of `bytes` in `seconds`.
fn rate(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / MIB / seconds
}

/// This process's command line, with the value of `--database-url` (which may hold a password)
/// left out.
fn command_line() -> String {
    let mut hide_next = false;
    std::env::args()
        .map(|arg| {
            if std::mem::take(&mut hide_next) {
                return "…".to_owned();
            }
            if arg == "--database-url" {
                hide_next = true;
            } else if arg.starts_with("--database-url=") {
                return "--database-url=…".to_owned();
            }
            arg
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `size` pseudo-random bytes (xorshift64 from `seed`) to a new file at `path`, and
/// syncs it, so that its write-back does not land in a measurement.
fn generate(path: &Path, size: u64, seed: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create_new(path)?;
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut state = seed;
    let mut block = vec![0_u8; WRITE_BUFFER];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = usize::try_from(left.min(block.len() as u64))?;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

// ----- the one client of both arms -----

type ClientBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// What came back: the status, the headers, how many body bytes, the body itself when asked
/// for (small answers only), and the seconds from connecting to the last byte.
struct Exchanged {
    status: StatusCode,
    headers: HeaderMap,
    bytes: u64,
    body: Vec<u8>,
    seconds: f64,
}

/// Sends `request` on a new HTTP/1.1 connection to `addr` and reads the whole answer, keeping
/// its body when `keep`.
async fn exchange(
    addr: &str,
    request: Request<ClientBody>,
    keep: bool,
) -> anyhow::Result<Exchanged> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    let connection = tokio::spawn(connection);
    let answer = sender.send_request(request).await?;
    let (parts, mut body) = answer.into_parts();
    let mut bytes = 0_u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len() as u64;
            if keep {
                kept.extend_from_slice(&data);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(sender);
    connection.await??;
    Ok(Exchanged {
        status: parts.status,
        headers: parts.headers,
        bytes,
        body: kept,
        seconds,
    })
}

fn empty() -> ClientBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The file at `path` as a request body in `BLOCK`s, its first 8 bytes replaced by `marker`
/// when given.
async fn file_body(path: &Path, marker: Option<u64>) -> anyhow::Result<ClientBody> {
    let file = tokio::fs::File::open(path).await?;
    let mark = marker.map(u64::to_be_bytes);
    let mut offset = 0_usize;
    let frames = ReaderStream::with_capacity(file, BLOCK).map(move |chunk| {
        let mut chunk = chunk?;
        if let Some(mark) = mark
            && offset < mark.len()
        {
            let mut patched = BytesMut::from(&chunk[..]);
            let n = (mark.len() - offset).min(patched.len());
            patched[..n].copy_from_slice(&mark[offset..offset + n]);
            chunk = patched.freeze();
        }
        offset = offset.saturating_add(chunk.len());
        Ok::<_, std::io::Error>(Frame::data(chunk))
    });
    Ok(StreamBody::new(frames).boxed_unsync())
}

/// Downloads `path` from `addr` whole; the seconds it took.
async fn download(addr: &str, path: &str, size: u64) -> anyhow::Result<f64> {
    let request = Request::get(path)
        .header(header::HOST, addr)
        .body(empty())?;
    let got = exchange(addr, request, false).await?;
    ensure!(
        got.status == StatusCode::OK,
        "GET {path} answered {}",
        got.status
    );
    ensure!(
        got.bytes == size,
        "GET {path} sent {} of {size} bytes",
        got.bytes
    );
    Ok(got.seconds)
}

/// Uploads `source` (marked) to the baseline as `name`, then removes the stored file; the
/// seconds the upload took.
async fn upload_baseline(
    addr: &str,
    dir: &Path,
    name: &str,
    source: &Path,
    size: u64,
    marker: u64,
) -> anyhow::Result<f64> {
    let request = Request::put(format!("/upload/{name}"))
        .header(header::HOST, addr)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(file_body(source, Some(marker)).await?)?;
    let got = exchange(addr, request, true).await?;
    ensure!(
        got.status == StatusCode::CREATED,
        "the baseline's upload answered {}: {}",
        got.status,
        String::from_utf8_lossy(&got.body)
    );
    let stored = dir.join(name);
    ensure!(
        std::fs::metadata(&stored)?.len() == size,
        "the baseline stored a short file"
    );
    std::fs::remove_file(stored)?;
    Ok(got.seconds)
}

// ----- the ledger's administration API -----

struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// POSTs `body` to `path`; the answer's body, which must come with `status`.
    async fn call(&self, path: &str, body: Value, status: u16) -> anyhow::Result<Value> {
        let answer = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let got = answer.status().as_u16();
        let body: Value = answer.json().await?;
        ensure!(got == status, "POST {path} answered {got}: {body}");
        Ok(body)
    }

    /// Drafts `version` of `product`; the release's id.
    async fn draft(&self, product: &str, version: &str) -> anyhow::Result<String> {
        let release = self
            .call(
                &format!("/v1/products/{product}/releases"),
                json!({"version": version, "channel": "stable"}),
                201,
            )
            .await?;
        text(&release, "id")
    }

    /// Uploads `source` (marked when `marker`) as `name` into draft `release` through the
    /// client of both arms; the artifact's view and the seconds it took.
    async fn upload(
        &self,
        addr: &str,
        release: &str,
        name: &str,
        source: &Path,
        size: u64,
        marker: Option<u64>,
    ) -> anyhow::Result<(Value, f64)> {
        let path = format!("/v1/releases/{release}/artifacts/{name}");
        let request = Request::put(&path)
            .header(header::HOST, addr)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(file_body(source, marker).await?)?;
        let got = exchange(addr, request, true).await?;
        let body: Value = serde_json::from_slice(&got.body)
            .with_context(|| format!("PUT {path}: {}", String::from_utf8_lossy(&got.body)))?;
        ensure!(
            got.status == StatusCode::CREATED,
            "PUT {path} answered {}: {body}",
            got.status
        );
        ensure!(
            !got.headers.contains_key("idempotent-replayed"),
            "PUT {path} was answered as a replay"
        );
        ensure!(
            body["size"].as_u64() == Some(size),
            "PUT {path} stored {}",
            body["size"]
        );
        Ok((body, got.seconds))
    }

    /// A fresh download link for `license` to `artifact`: the path of its URL.
    async fn link(&self, artifact: &str, license: &str) -> anyhow::Result<String> {
        let path = format!("/v1/artifacts/{artifact}/download-links");
        let since = Instant::now();
        loop {
            let answer = self
                .client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(&json!({"license_id": license}))
                .send()
                .await?;
            let status = answer.status().as_u16();
            let body: Value = answer.json().await?;
            // The artifact's release is found through the read model, which may trail the log.
            if body["code"] == "ARTIFACT_NOT_FOUND" && since.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            ensure!(status == 201, "POST {path} answered {status}: {body}");
            let url = text(&body, "url")?;
            let at = url
                .find("/v1/downloads/")
                .with_context(|| format!("a link without a download path: {url}"))?;
            return Ok(url[at..].to_owned());
        }
    }
}

fn text(v: &Value, field: &str) -> anyhow::Result<String> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {field} in {v}"))
}

// ----- the baseline: plain file transfers over the same crates -----

struct Files {
    /// What `GET /file` serves.
    serve: PathBuf,
    /// Where `PUT /upload/{name}` writes.
    uploads: PathBuf,
}

/// The baseline server, on a runtime of its own, stopped when dropped.
struct Baseline {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Baseline {
    fn start(serve: PathBuf, uploads: PathBuf, small_buffer: bool) -> anyhow::Result<Self> {
        let router = Router::new()
            .route("/file", get(serve_file))
            .route("/upload/{name}", put(store_file))
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::new(Files { serve, uploads }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("baseline")
            .enable_all()
            .build()?;
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("baseline: {e}");
                    return;
                }
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    if small_buffer {
                        builder.max_buf_size(LISTENER_BUFFER);
                    }
                    if let Err(e) = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        eprintln!("baseline connection: {e}");
                    }
                });
            }
        });
        Ok(Self {
            runtime: Some(runtime),
            addr,
        })
    }
}

fn failed(e: &std::io::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// `GET /file`: the file from disk, a block at a time, as the download route sends it.
async fn serve_file(State(files): State<Arc<Files>>) -> Response {
    let file = match tokio::fs::File::open(&files.serve).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return failed(&e),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(len), BLOCK));
    (StatusCode::OK, headers, body).into_response()
}

/// `PUT /upload/{name}`: the body streamed to a new file through a buffered writer, then
/// synced; a body that breaks off leaves nothing.
async fn store_file(
    State(files): State<Arc<Files>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> Response {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return (StatusCode::BAD_REQUEST, "a plain file name").into_response();
    }
    let path = files.uploads.join(&name);
    match write_body(&path, body).await {
        Ok(size) => (StatusCode::CREATED, size.to_string()).into_response(),
        Err(e) => {
            let _ = tokio::fs::remove_file(&path).await;
            failed(&e)
        }
    }
}

async fn write_body(path: &Path, body: Body) -> std::io::Result<u64> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut size = 0_u64;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        size += chunk.len() as u64;
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    out.into_inner().sync_all().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_marked_body_differs_in_its_first_8_bytes_only() {
        let dir = std::env::temp_dir().join(format!("bench-artifacts-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let _scratch = Scratch(dir.clone());
        let path = dir.join("a.bin");
        generate(&path, 600_000, 7).unwrap();
        let original = std::fs::read(&path).unwrap();
        assert_eq!(original.len(), 600_000);
        let body = file_body(&path, Some(0x0102_0304_0506_0708))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&body[8..], &original[8..]);
        let plain = file_body(&path, None)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(plain.as_ref(), original.as_slice());
    }
}
