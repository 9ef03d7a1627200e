//! `ledger releases publish`: what a vendor's release pipeline runs (issue #17, ADR 0023). It
//! drafts a release (or finds the one of that version), uploads its files and publishes it,
//! printing each artifact's SHA-256. It talks to a running server over HTTP with an
//! administration token, because pipelines run on CI machines, not next to the database.
//!
//! Re-running the same command is how a pipeline recovers from any failure, so every step is
//! safe to repeat:
//! - the release of `--version` is looked up before one is drafted; a 409
//!   `RELEASE_VERSION_EXISTS` (another run drafting at the same moment, or the list, a read model,
//!   trailing the log by milliseconds) is answered by looking again for a few seconds;
//! - a file the release already holds under its name with the same size, platform and arch is
//!   hashed here and not sent again when the digests agree (a 2 GiB artifact is not re-uploaded
//!   to learn that it is there); any other file is streamed from disk, never held whole, hashed
//!   on the way, and the server's digest is checked against what was sent. The server answers
//!   the same bytes again as a replay, and other bytes under that name 409 `ARTIFACT_EXISTS`;
//! - a published release is not published again; a yanked one is refused.
//!
//! HTTP is hyper's client with rustls over ring and the system's roots, as `application::oidc`
//! fetches issuers' keys: no second HTTP stack in the binary. The token is sent as a sensitive
//! header and never printed: an error that would quote it has it replaced.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use application::args::Id;
use clap::{Args, Subcommand};
use domain::ids::ProductId;
use domain::release::{Filename, Notes, Version};
use domain::values::{Arch, Channel, FeatureCode, Platform};
use futures_util::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::cli::out;

/// `ledger releases …`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    #[command(subcommand)]
    action: ReleasesAction,
}

#[derive(Debug, Subcommand)]
enum ReleasesAction {
    /// Draft a release (or find the one of that version), upload its files and publish it;
    /// print each artifact's SHA-256. Safe to re-run with the same files.
    #[command(long_about = PUBLISH_ABOUT)]
    Publish(Box<PublishArgs>),
}

const PUBLISH_ABOUT: &str = "\
Draft a release (or find the one of that version), upload its files and publish it, over HTTP \
against a running server; print each artifact's SHA-256.

Each FILE is uploaded under its base file name, for PLATFORM/ARCH (windows|linux|macos|any and \
x86_64|arm64|any; default any/any): dist/studio.tar.gz=linux/x86_64. The files are streamed from \
disk, never held in memory whole.

Re-running the same command is safe: the release of that version is found again, files the \
release already holds with the same bytes are not uploaded again, and a published release is not \
published again. Other bytes under a name the release holds are refused (ARTIFACT_EXISTS): \
artifacts are immutable, publish them as a new version. A yanked release, or one drafted on \
another channel, is refused. Notes and entitlements are set when the release is drafted; a re-run \
keeps the draft's notes, and is refused when it names other entitlements than the draft's.

Output, on stdout: one line per artifact, `<sha256>  <filename>  <platform>/<arch>  <size> bytes`, \
then `published <release id> <version> (<channel>)`. Progress goes to stderr. Exit code 0 on \
success; otherwise `error: <reason>` on stderr (with the server's problem code and detail) and \
exit code 1, or 2 for a mistyped argument (nothing is sent then).";

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The server's base URL: https://ledger.example.com, or http:// on a trusted network.
    #[arg(long, env = "LEDGER_SERVER", value_name = "URL", value_parser = parse_server)]
    server: ServerUrl,
    /// An administration bearer token with the vendor_admin role (`ledger token`). Prefer the
    /// environment: a flag's value shows in process listings.
    #[arg(
        long,
        env = "LEDGER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// The product released.
    #[arg(long, value_name = "ID", value_parser = Id::<ProductId>::new())]
    product: ProductId,
    /// The version, SemVer 2.0 (7.4.0, 8.0.0-beta.2, 7.4.0+build.5).
    #[arg(long, value_name = "V", value_parser = parse_version)]
    version: Version,
    /// The channel it is published on.
    #[arg(long, value_parser = channel_parser())]
    channel: Channel,
    /// The release notes (when the release is drafted).
    #[arg(long, value_name = "TEXT", conflicts_with = "notes_file")]
    notes: Option<String>,
    /// The release notes, read from a file (when the release is drafted).
    #[arg(long, value_name = "FILE")]
    notes_file: Option<PathBuf>,
    /// A feature a license must hold to see the release (repeatable: every one is needed).
    #[arg(long = "entitlement", value_name = "CODE", value_parser = parse_feature)]
    entitlements: Vec<FeatureCode>,
    /// The files, each uploaded under its base name, optionally for a platform and
    /// architecture: FILE=linux/x86_64 (default any/any).
    #[arg(value_name = "FILE[=PLATFORM/ARCH]", required = true, value_parser = parse_file_arg)]
    files: Vec<FileArg>,
}

/// A base URL: scheme, authority and an optional path prefix (a server behind a proxy at
/// `https://example.com/ledger`), without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServerUrl {
    base: String,
    https: bool,
}

fn parse_server(raw: &str) -> Result<ServerUrl, String> {
    const EXPECTED: &str = "expected an http:// or https:// URL such as https://ledger.example.com";
    let uri: Uri = raw.trim().parse().map_err(|_| EXPECTED.to_owned())?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(EXPECTED.to_owned()),
    };
    let authority = uri.authority().ok_or_else(|| EXPECTED.to_owned())?;
    if authority.as_str().contains('@') {
        return Err(
            "credentials do not belong in the URL: the token comes from LEDGER_TOKEN".to_owned(),
        );
    }
    if uri.query().is_some() {
        return Err("the server's URL takes no query".to_owned());
    }
    let scheme = if https { "https" } else { "http" };
    Ok(ServerUrl {
        base: format!("{scheme}://{authority}{}", uri.path().trim_end_matches('/')),
        https,
    })
}

fn parse_version(raw: &str) -> Result<Version, String> {
    Version::parse(raw).map_err(|e| e.to_string())
}

/// `stable`, `lts` or `beta`, listed in the help as clap lists possible values.
fn channel_parser() -> impl clap::builder::TypedValueParser<Value = Channel> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Channel::ALL).try_map(|raw| Channel::parse(&raw))
}

fn parse_feature(raw: &str) -> Result<FeatureCode, String> {
    FeatureCode::parse(raw).map_err(|e| e.to_string())
}

/// A file named on the command line, and what it is built for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileArg {
    path: PathBuf,
    platform: Platform,
    arch: Arch,
}

/// `FILE` or `FILE=PLATFORM/ARCH`. The suffix is what follows the last `=` when it holds exactly
/// one `/`; a path that itself holds `=` then needs an explicit `=any/any`.
fn parse_file_arg(raw: &str) -> Result<FileArg, String> {
    let target = raw
        .rsplit_once('=')
        .filter(|(_, suffix)| suffix.matches('/').count() == 1);
    let Some((path, suffix)) = target else {
        if raw.is_empty() {
            return Err("a file is needed".to_owned());
        }
        return Ok(FileArg {
            path: raw.into(),
            platform: Platform::Any,
            arch: Arch::Any,
        });
    };
    if path.is_empty() {
        return Err("a file is needed before =PLATFORM/ARCH".to_owned());
    }
    let (platform, arch) = suffix.split_once('/').unwrap_or((suffix, ""));
    let platform = Platform::parse(platform).map_err(|e| {
        format!("platform {e} (a path holding `=` needs an explicit suffix: FILE=any/any)")
    })?;
    let arch = Arch::parse(arch).map_err(|e| format!("architecture {e}"))?;
    Ok(FileArg {
        path: path.into(),
        platform,
        arch,
    })
}

/// Runs `ledger releases …`.
///
/// # Errors
/// Anything that stops the release, said on one line (`cli::main` prints it).
pub async fn run(args: ReleasesArgs) -> anyhow::Result<()> {
    let ReleasesAction::Publish(args) = args.action;
    let token = args.token.clone().unwrap_or_default();
    publish(*args).await.map_err(|e| without_secret(&e, &token))
}

/// The error with the token replaced wherever it appears (a proxy's page echoing a header, a
/// detail quoting the request): it must not reach CI logs.
fn without_secret(error: &anyhow::Error, token: &str) -> anyhow::Error {
    let line = application::error::one_line(error);
    if token.trim().len() >= 8 && line.contains(token.trim()) {
        anyhow!(line.replace(token.trim(), "<token>"))
    } else {
        anyhow!(line)
    }
}

/// What the command line asks for, checked before any request.
struct Plan {
    product: ProductId,
    version: Version,
    channel: Channel,
    notes: Option<Notes>,
    entitlements: Vec<String>,
    files: Vec<LocalFile>,
}

struct LocalFile {
    path: PathBuf,
    name: Filename,
    platform: Platform,
    arch: Arch,
}

impl LocalFile {
    /// The file as named on the command line, and the name it is uploaded as when that differs.
    fn shown(&self) -> String {
        let path = self.path.display().to_string();
        if path == self.name.as_str() {
            path
        } else {
            format!("{path} (as {})", self.name.as_str())
        }
    }
}

/// The largest notes file read: notes are at most 20,000 characters (4 bytes each at most).
const MAX_NOTES_FILE_BYTES: u64 = 4 * Notes::MAX_CHARS as u64 + 1024;

impl Plan {
    fn new(args: &PublishArgs) -> anyhow::Result<Self> {
        let notes_text = match (&args.notes, &args.notes_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => {
                let len = std::fs::metadata(path)
                    .with_context(|| format!("--notes-file {}", path.display()))?
                    .len();
                if len > MAX_NOTES_FILE_BYTES {
                    bail!(
                        "--notes-file {}: {len} bytes is more than notes may hold ({} characters)",
                        path.display(),
                        Notes::MAX_CHARS
                    );
                }
                Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("--notes-file {}", path.display()))?,
                )
            }
            (None, None) => None,
        };
        let notes = notes_text
            .as_deref()
            .map(Notes::parse)
            .transpose()
            .map_err(|e| anyhow!("release notes: {e}"))?;
        let mut entitlements: Vec<String> = args
            .entitlements
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        entitlements.sort();
        entitlements.dedup();
        let mut files: Vec<LocalFile> = Vec::with_capacity(args.files.len());
        for arg in &args.files {
            let shown = arg.path.display();
            let meta = std::fs::metadata(&arg.path).with_context(|| format!("{shown}"))?;
            if !meta.is_file() {
                bail!("{shown}: not a regular file");
            }
            let base = arg
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| anyhow!("{shown}: its name is not UTF-8 text"))?;
            let name = Filename::parse_new(base).map_err(|e| anyhow!("{shown}: {e}"))?;
            if let Some(twin) = files.iter().find(|f| f.name == name) {
                bail!(
                    "{shown} and {} would both be uploaded as {}: a release holds a name once",
                    twin.path.display(),
                    name.as_str()
                );
            }
            files.push(LocalFile {
                path: arg.path.clone(),
                name,
                platform: arg.platform,
                arch: arg.arch,
            });
        }
        Ok(Self {
            product: args.product,
            version: args.version.clone(),
            channel: args.channel,
            notes,
            entitlements,
            files,
        })
    }
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("no token: set LEDGER_TOKEN (or pass --token)"))?;
    let server = Server::new(&args.server, token)?;

    let release = find_or_draft(&server, &plan).await?;
    let wanted = plan.channel.as_str();
    if release.channel != wanted {
        bail!(
            "release {} of version {} is on channel {}, not {wanted}: a release's channel is set \
             when it is drafted; publish with --channel {} or as a new version",
            release.id,
            release.version,
            release.channel,
            release.channel
        );
    }
    if release.status == "yanked" {
        bail!(
            "release {} of version {} was yanked ({}): a yanked version is not published again; \
             publish a new version",
            release.id,
            release.version,
            release.yank_reason.as_deref().unwrap_or("no reason given")
        );
    }
    warn_if_kept(&release, &plan)?;
    // A draft holding files this command does not name (an earlier run's mistake, an upload
    // through the API) would be published with them: refused, naming them.
    if release.status == "draft" {
        let unnamed: Vec<&str> = release
            .artifacts
            .iter()
            .map(|a| a.filename.as_str())
            .filter(|held| !plan.files.iter().any(|f| f.name.as_str() == *held))
            .collect();
        if !unnamed.is_empty() {
            bail!(
                "the draft release {} of version {} holds files this command does not name ({}): \
                 publishing would ship them too; name every file of the release, or publish a \
                 new version",
                release.id,
                release.version,
                unnamed.join(", ")
            );
        }
    }

    for file in &plan.files {
        let artifact = match already_held(&release, file).await? {
            Some(artifact) => {
                eprintln!("{}: held already, same bytes", file.shown());
                artifact
            }
            None => upload(&server, &release, file)
                .await
                .with_context(|| format!("uploading {}", file.shown()))?,
        };
        out(format_args!(
            "{}  {}  {}/{}  {} bytes",
            artifact.sha256, artifact.filename, artifact.platform, artifact.arch, artifact.size
        ))?;
    }

    let published = if release.status == "published" {
        release
    } else {
        publish_draft(&server, release.id)
            .await
            .with_context(|| format!("publishing release {}", release.id))?
    };
    out(format_args!(
        "published {} {} ({})",
        published.id, published.version, published.channel
    ))
}

/// Notes and entitlements are the draft's. Changed notes are said and kept. Other entitlements
/// than the command line's are refused: they decide who sees the release, and a draft left
/// by a run that forgot `--entitlement` would otherwise be published to every license.
fn warn_if_kept(release: &Release, plan: &Plan) -> anyhow::Result<()> {
    let notes = plan.notes.as_ref().map(Notes::as_str);
    if notes.is_some() && notes != release.notes.as_deref() {
        eprintln!(
            "note: release {} keeps the notes it was drafted with (notes are set when drafting)",
            release.id
        );
    }
    let mut held = release.entitlements.clone();
    held.sort();
    if !plan.entitlements.is_empty() && held != plan.entitlements {
        bail!(
            "release {} of version {} was drafted with the entitlements [{}], not [{}]: \
             entitlements decide which licenses see a release, so it is not published this way; \
             publish a new version, or run the command with the draft's entitlements",
            release.id,
            release.version,
            held.join(", "),
            plan.entitlements.join(", ")
        );
    }
    Ok(())
}

// ----- the release -----

/// A release as the server answers it (`application::views::ReleaseView`), the fields used.
#[derive(Debug, Deserialize)]
struct Release {
    id: Uuid,
    version: String,
    channel: String,
    status: String,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    entitlements: Vec<String>,
    #[serde(default)]
    yank_reason: Option<String>,
    #[serde(default)]
    artifacts: Vec<Artifact>,
}

/// An artifact as the server answers it (`application::views::ArtifactView`), the fields used.
#[derive(Clone, Debug, Deserialize)]
struct Artifact {
    filename: String,
    platform: String,
    arch: String,
    size: u64,
    sha256: String,
}

#[derive(Debug, Deserialize)]
struct ReleasePage {
    releases: Vec<Release>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// How long a 409 `RELEASE_VERSION_EXISTS` is answered by looking again: the list is a read
/// model that trails the log by milliseconds, seconds when the server is busy.
const LOOKUP_RETRIES: [u64; 9] = [50, 100, 200, 400, 800, 1000, 1000, 1000, 1000];

async fn find_or_draft(server: &Server, plan: &Plan) -> anyhow::Result<Release> {
    let version = plan.version.to_string();
    let looking = || format!("looking up release {version} of product {}", plan.product);
    if let Some(id) = find(server, plan).await.with_context(looking)? {
        let release = get(server, id).await.with_context(looking)?;
        eprintln!(
            "release {} of {version}: found ({})",
            release.id, release.status
        );
        return Ok(release);
    }
    let mut body = serde_json::json!({"version": version, "channel": plan.channel.as_str()});
    if let Some(notes) = &plan.notes {
        body["notes"] = notes.as_str().into();
    }
    if !plan.entitlements.is_empty() {
        body["entitlements"] = plan.entitlements.clone().into();
    }
    let drafting = || format!("drafting release {version} of product {}", plan.product);
    let answer = server
        .send(
            Method::POST,
            &format!("/v1/products/{}/releases", plan.product),
            Content::Json(body),
        )
        .await
        .with_context(drafting)?;
    if answer.code().as_deref() != Some("RELEASE_VERSION_EXISTS") {
        let release: Release = answer.json().with_context(drafting)?;
        eprintln!("release {} of {version}: drafted", release.id);
        return Ok(release);
    }
    // Another run drafted it a moment ago (the list may not show it yet), or a release whose
    // version differs only in build metadata holds it: the server keeps one of them per product.
    for delay in LOOKUP_RETRIES {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let Some(held) = find_equal_version(server, plan)
            .await
            .with_context(looking)?
        else {
            continue;
        };
        if held.version != version {
            bail!(
                "version {version}: the product already has release {} of version {}, which \
                 SemVer ranks equal (they differ only in build metadata): publish as --version \
                 {}, or as a new version",
                held.id,
                held.version,
                held.version
            );
        }
        let release = get(server, held.id).await.with_context(looking)?;
        eprintln!(
            "release {} of {version}: drafted by another run ({})",
            release.id, release.status
        );
        return Ok(release);
    }
    bail!(
        "{}: the server answered RELEASE_VERSION_EXISTS, but no release of {version} is listed \
         yet; run again in a moment",
        drafting()
    )
}

/// The release of exactly this version as written, from the product's list.
async fn find(server: &Server, plan: &Plan) -> anyhow::Result<Option<Uuid>> {
    let path = format!(
        "/v1/products/{}/releases?version={}",
        plan.product,
        query_value(&plan.version.to_string())
    );
    let page: ReleasePage = server
        .send(Method::GET, &path, Content::None)
        .await?
        .json()?;
    Ok(page.releases.first().map(|r| r.id))
}

/// The release of the product whose version SemVer ranks equal to the one asked for (as
/// written, or with other build metadata), read page by page from the product's list.
async fn find_equal_version(server: &Server, plan: &Plan) -> anyhow::Result<Option<Release>> {
    let key = plan.version.precedence_key();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/products/{}/releases?limit=100", plan.product);
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&query_value(c));
        }
        let page: ReleasePage = server
            .send(Method::GET, &path, Content::None)
            .await?
            .json()?;
        let mut releases = page.releases.into_iter();
        if let Some(found) =
            releases.find(|r| Version::parse(&r.version).is_ok_and(|v| v.precedence_key() == key))
        {
            return Ok(Some(found));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

/// One release with its artifacts, from its stream (not the list): its status is current.
async fn get(server: &Server, id: Uuid) -> anyhow::Result<Release> {
    server
        .send(Method::GET, &format!("/v1/releases/{id}"), Content::None)
        .await?
        .json()
}

/// Publishes a draft; a release another run published meanwhile is as good.
async fn publish_draft(server: &Server, id: Uuid) -> anyhow::Result<Release> {
    let answer = server
        .send(
            Method::POST,
            &format!("/v1/releases/{id}/publish"),
            Content::Json(serde_json::json!({})),
        )
        .await?;
    if answer.code().as_deref() == Some("RELEASE_NOT_DRAFT") {
        let release = get(server, id).await?;
        if release.status == "published" {
            return Ok(release);
        }
        return Err(answer.refused().into());
    }
    answer.json()
}

// ----- the files -----

/// The artifact the release holds under `file`'s name when it is this file (same platform,
/// arch, size and SHA-256, hashed here), so it need not be sent again.
async fn already_held(release: &Release, file: &LocalFile) -> anyhow::Result<Option<Artifact>> {
    let Some(held) = release
        .artifacts
        .iter()
        .find(|a| a.filename == file.name.as_str())
    else {
        return Ok(None);
    };
    let size = tokio::fs::metadata(&file.path)
        .await
        .with_context(|| file.path.display().to_string())?
        .len();
    if held.platform != file.platform.as_str()
        || held.arch != file.arch.as_str()
        || held.size != size
    {
        // Let the server refuse it with its own words (ARTIFACT_EXISTS).
        return Ok(None);
    }
    let path = file.path.clone();
    let (sha256, hashed) = tokio::task::spawn_blocking(move || sha256_of(&path))
        .await
        .context("hashing a file")?
        .with_context(|| file.path.display().to_string())?;
    Ok((sha256 == held.sha256 && hashed == held.size).then(|| held.clone()))
}

/// The SHA-256 and length of a file, read a chunk at a time.
fn sha256_of(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), total));
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
}

/// Bytes read from disk and sent per chunk: few enough to keep memory flat, many enough that a
/// 2 GiB upload is not half a million frames.
const CHUNK_BYTES: usize = 256 * 1024;

async fn upload(server: &Server, release: &Release, file: &LocalFile) -> anyhow::Result<Artifact> {
    let opened = tokio::fs::File::open(&file.path).await?;
    let size = opened.metadata().await?.len();
    eprintln!("{}: uploading {size} bytes", file.shown());
    let (body, sent_digest) = FileBody::new(opened, size);
    let path = format!(
        "/v1/releases/{}/artifacts/{}?platform={}&arch={}",
        release.id,
        path_segment(file.name.as_str()),
        file.platform.as_str(),
        file.arch.as_str()
    );
    let answer = server
        .send(
            Method::PUT,
            &path,
            Content::File {
                body: body.boxed_unsync(),
                size,
            },
        )
        .await?;
    // The server's refusal, then what the pipeline can do about it.
    let hint = match answer.code().as_deref() {
        Some("ARTIFACT_EXISTS") => Some("publish this file as a new version"),
        Some("RELEASE_NOT_DRAFT") => Some("files are added only to a draft: publish a new version"),
        _ => None,
    };
    if let Some(hint) = hint {
        bail!("{}; {hint}", answer.refused());
    }
    let replayed = answer.replayed;
    let artifact: Artifact = answer.json()?;
    // The server read the whole body to hash it, so the digest of what was sent is known.
    let sent = sent_digest
        .await
        .map_err(|_| anyhow!("the upload ended before the whole file was sent"))?;
    if artifact.sha256 != sent || artifact.size != size {
        bail!(
            "the server recorded {} bytes with SHA-256 {}, but {size} bytes with SHA-256 {sent} \
             were sent",
            artifact.size,
            artifact.sha256
        );
    }
    let now = tokio::fs::metadata(&file.path).await?.len();
    if now != size {
        bail!("the file changed while it was uploaded ({size} bytes, now {now})");
    }
    if replayed {
        eprintln!("{}: the server held these bytes already", file.shown());
    }
    Ok(artifact)
}

/// A file as a request body: read a chunk at a time, counted against the length announced in
/// `Content-Length` (a file that grows or shrinks meanwhile fails the upload rather than
/// sending something else), and hashed on the way, the digest handed over once the last byte
/// is sent.
struct FileBody {
    chunks: ReaderStream<tokio::fs::File>,
    remaining: u64,
    hasher: Sha256,
    digest: Option<oneshot::Sender<String>>,
}

impl FileBody {
    fn new(file: tokio::fs::File, size: u64) -> (Self, oneshot::Receiver<String>) {
        let (tx, rx) = oneshot::channel();
        let mut body = Self {
            chunks: ReaderStream::with_capacity(file, CHUNK_BYTES),
            remaining: size,
            hasher: Sha256::new(),
            digest: Some(tx),
        };
        body.finish_if_done();
        (body, rx)
    }

    /// Hands over the digest once every announced byte is sent: hyper stops polling a body
    /// that says it has ended, so the end of the stream may never be seen.
    fn finish_if_done(&mut self) {
        if self.remaining == 0
            && let Some(tx) = self.digest.take()
        {
            let hasher = std::mem::take(&mut self.hasher);
            // A dropped receiver: the upload was abandoned; nobody needs the digest.
            let _ = tx.send(hex::encode(hasher.finalize()));
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.chunks).poll_next(cx)) {
            Some(Ok(chunk)) => {
                let len = chunk.len() as u64;
                if len > this.remaining {
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the file grew while it was uploaded",
                    ))));
                }
                this.remaining -= len;
                this.hasher.update(&chunk);
                this.finish_if_done();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(Some(Err(std::io::Error::other(format!(
                "the file shrank while it was uploaded ({} bytes short)",
                this.remaining
            ))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

// ----- HTTP -----

type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a request without a file may take, answer included. Uploads have no such bound: a
/// 2 GiB file over a slow link takes what it takes, and a CI job has its own timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: a release with its artifacts is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

enum Content {
    None,
    Json(serde_json::Value),
    File { body: RequestBody, size: u64 },
}

struct Server {
    base: String,
    authorization: HeaderValue,
    http: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

impl Server {
    fn new(url: &ServerUrl, token: &str) -> anyhow::Result<Self> {
        let mut tcp = HttpConnector::new();
        // The TLS connector hands https URLs to this one: it must not refuse them.
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // ring, the provider sqlx's rustls uses, given explicitly: nothing process-wide.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = if url.https {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .context("loading the system's TLS root certificates")?
                .https_only()
        } else {
            // Plain http checks no certificate, so a machine without roots (a minimal CI
            // image talking to a server on its network) needs none.
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("configuring TLS")?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
        };
        let connector = tls.enable_http1().wrap_connector(tcp);
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        // The token is not quoted in the error: it is a secret.
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow!("the token holds characters an HTTP header cannot carry"))?;
        authorization.set_sensitive(true);
        Ok(Self {
            base: url.base.clone(),
            authorization,
            http,
        })
    }

    /// Sends one request and reads its answer, whatever its status. No redirect is followed:
    /// the token goes to the server named and nowhere else.
    async fn send(&self, method: Method, path: &str, content: Content) -> anyhow::Result<Answer> {
        let what = format!(
            "{method} {}{}",
            self.base,
            path.split('?').next().unwrap_or("")
        );
        let uri: Uri = format!("{}{path}", self.base)
            .parse()
            .with_context(|| format!("{what}: not a URL"))?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("ledger/", env!("CARGO_PKG_VERSION")),
            );
        let (request, bounded) = match content {
            Content::None => (
                request.body(Full::new(Bytes::new()).map_err(never).boxed_unsync()),
                true,
            ),
            Content::Json(value) => (
                request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(
                        Full::new(Bytes::from(serde_json::to_vec(&value)?))
                            .map_err(never)
                            .boxed_unsync(),
                    ),
                true,
            ),
            Content::File { body, size } => (
                request
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, size)
                    .body(body),
                false,
            ),
        };
        let request = request.with_context(|| what.clone())?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let replayed = response
                .headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true");
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the answer: {e}"))?
                .to_bytes();
            anyhow::Ok(Answer {
                status,
                replayed,
                body,
            })
        };
        let answer = if bounded {
            tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| anyhow!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
                .and_then(|a| a)
        } else {
            exchange.await
        };
        answer.map_err(|e| anyhow!("{what}: {}", transport_error(&e)))
    }
}

fn never(n: std::convert::Infallible) -> std::io::Error {
    match n {}
}

/// A transport error with its causes: hyper's own message ("client error (Connect)") hides the
/// reason ("Connection refused") in its source.
fn transport_error(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(cause);
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !line.contains(&text) {
                if !line.is_empty() {
                    line.push_str(": ");
                }
                line.push_str(&text);
            }
            source = s.source();
        }
    }
    line
}

/// An answer as received.
struct Answer {
    status: StatusCode,
    /// `Idempotent-Replayed: true`: an upload the server held already.
    replayed: bool,
    body: Bytes,
}

/// What a problem+json answer says (`api::error`): its code and detail.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    code: Option<String>,
    detail: Option<String>,
}

impl Answer {
    /// The problem code of a refusal.
    fn code(&self) -> Option<String> {
        if self.status.is_success() {
            return None;
        }
        serde_json::from_slice::<ProblemBody>(&self.body)
            .ok()
            .and_then(|p| p.code)
    }

    fn refused(&self) -> Refused {
        let problem = serde_json::from_slice::<ProblemBody>(&self.body).ok();
        let (code, detail) = match problem {
            Some(p) if p.code.is_some() || p.detail.is_some() => (p.code, p.detail),
            // Not ours (a proxy's page): a short excerpt, on one line.
            _ => (None, Some(excerpt(&self.body))),
        };
        Refused {
            status: self.status,
            code,
            detail: detail.filter(|d| !d.is_empty()),
        }
    }

    /// The body of a success as `T`; a refusal as an error with the server's code and detail.
    fn json<T: serde::de::DeserializeOwned>(self) -> anyhow::Result<T> {
        if !self.status.is_success() {
            return Err(self.refused().into());
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            anyhow!(
                "the server answered {} with a body that is not what was expected ({e}): {}",
                self.status,
                excerpt(&self.body)
            )
        })
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    flat.trim().to_owned()
}

/// The server refused a request.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: Option<String>,
    detail: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server answered {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// A path segment, percent-encoded but for RFC 3986's unreserved characters: a file name may
/// hold spaces, `#`, `%` or non-ASCII letters.
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

/// A query value, form-encoded as the server reads it (`+` in `7.4.0+build.5` would read as a
/// space).
fn query_value(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_takes_an_optional_platform_and_arch() {
        assert_eq!(
            parse_file_arg("dist/a.tar.gz=linux/x86_64").unwrap(),
            FileArg {
                path: "dist/a.tar.gz".into(),
                platform: Platform::Linux,
                arch: Arch::X86_64
            }
        );
        assert_eq!(
            parse_file_arg("a.zip").unwrap(),
            FileArg {
                path: "a.zip".into(),
                platform: Platform::Any,
                arch: Arch::Any
            }
        );
        // `=` in a path without a target suffix is part of the path.
        assert_eq!(
            parse_file_arg("x=1.zip").unwrap().path,
            PathBuf::from("x=1.zip")
        );
        assert_eq!(
            parse_file_arg("x=1/a.zip=any/any").unwrap(),
            FileArg {
                path: "x=1/a.zip".into(),
                platform: Platform::Any,
                arch: Arch::Any
            }
        );
        let beos = parse_file_arg("a.zip=beos/x86_64").unwrap_err();
        assert!(
            beos.contains("\"beos\" is not one of windows, linux, macos, any"),
            "{beos}"
        );
        let arch = parse_file_arg("a.zip=linux/sparc").unwrap_err();
        assert!(arch.contains("architecture"), "{arch}");
        assert!(parse_file_arg("=linux/x86_64").is_err());
        assert!(parse_file_arg("").is_err());
    }

    #[test]
    fn the_server_is_an_http_or_https_base_url() {
        assert_eq!(
            parse_server("https://ledger.example.com/").unwrap(),
            ServerUrl {
                base: "https://ledger.example.com".into(),
                https: true
            }
        );
        assert_eq!(
            parse_server("http://127.0.0.1:8080/ledger/").unwrap().base,
            "http://127.0.0.1:8080/ledger"
        );
        for bad in [
            "ledger.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=1",
            "",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_versions_are_encoded_for_the_url() {
        assert_eq!(
            path_segment("studio 7.4.0 #1 ü.zip"),
            "studio%207.4.0%20%231%20%C3%BC.zip"
        );
        assert_eq!(path_segment("a-b_c~d.tar.gz"), "a-b_c~d.tar.gz");
        assert_eq!(query_value("7.4.0+build.5"), "7.4.0%2Bbuild.5");
    }

    #[test]
    fn a_refusal_shows_the_status_code_and_detail() {
        let answer = Answer {
            status: StatusCode::CONFLICT,
            replayed: false,
            body: Bytes::from_static(
                br#"{"type":"t","title":"Conflict","status":409,"detail":"artifact a.zip exists","code":"ARTIFACT_EXISTS"}"#,
            ),
        };
        assert_eq!(answer.code().as_deref(), Some("ARTIFACT_EXISTS"));
        assert_eq!(
            answer.refused().to_string(),
            "the server answered 409 Conflict (ARTIFACT_EXISTS): artifact a.zip exists"
        );
        let proxy = Answer {
            status: StatusCode::BAD_GATEWAY,
            replayed: false,
            body: Bytes::from_static(b"<html>\n<b>bad gateway</b></html>"),
        };
        assert_eq!(proxy.code(), None);
        assert_eq!(
            proxy.refused().to_string(),
            "the server answered 502 Bad Gateway: <html> <b>bad gateway</b></html>"
        );
    }

    #[test]
    fn the_token_never_reaches_an_error_line() {
        let token = "llt_secret_token_value";
        let e = anyhow!("the proxy said: Authorization: Bearer llt_secret_token_value refused");
        let line = without_secret(&e, token).to_string();
        assert!(!line.contains(token), "{line}");
        assert!(line.contains("<token>"), "{line}");
    }

    #[test]
    fn the_command_line_reads_as_documented() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "ledger",
            "releases",
            "publish",
            "--server",
            "http://127.0.0.1:1",
            "--product",
            "0190b3b4-5a1e-7000-8000-000000000001",
            "--version",
            "7.4.0",
            "--channel",
            "lts",
            "--entitlement",
            "pro",
            "a.zip",
            "b.tar.gz=linux/arm64",
        ]);
        assert!(cli.is_ok(), "{:?}", cli.err());
        for wrong in [
            vec!["--channel", "nightly", "a.zip"],
            vec!["--channel", "stable"],
            vec!["--channel", "stable", "a.zip=beos/x86_64"],
            vec!["--channel", "stable", "--entitlement", "no spaces", "a.zip"],
        ] {
            let mut line = vec![
                "ledger",
                "releases",
                "publish",
                "--server",
                "http://127.0.0.1:1",
                "--product",
                "0190b3b4-5a1e-7000-8000-000000000001",
                "--version",
                "7.4.0",
            ];
            line.extend(wrong.iter().copied());
            assert!(crate::cli::Cli::try_parse_from(&line).is_err(), "{wrong:?}");
        }
    }
}
