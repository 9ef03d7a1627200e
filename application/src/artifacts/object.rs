//! Artifacts in an S3-compatible object store (`--artifact-store s3://bucket/prefix`, ADR 0024),
//! through the `object_store` crate, laid out as the data directory is: `<prefix>/staging/`,
//! `<prefix>/sha256/<hex>` and `<prefix>/unreferenced/`.
//!
//! An upload streams into a multipart upload of `staging/<random>` while it is hashed (parts of
//! [`PART`] bytes, at most [`PARTS_IN_FLIGHT`] sent at once: memory stays flat). Once complete,
//! it is copied to its digest's name and the staging object is deleted; the caller appends
//! `ArtifactAdded` after that, as with files. A body that breaks off aborts its multipart upload.
//!
//! Object stores have no lock that outlives a killed server, and servers that share a bucket
//! need not share a data directory: the sweep at start-up clears only what is older than
//! [`STALE_AFTER`] (`--artifact-stale-secs`), which no upload in flight is (a staging object lives from its upload's
//! completion to its copy; a content object waits for its event for the length of one append).
//! A server killed mid-upload leaves an incomplete multipart upload, which no listing shows: the
//! bucket's lifecycle rule `AbortIncompleteMultipartUpload` removes those (README).
//!
//! The HTTP client is hyper's with rustls over ring, the TLS stack the rest of the server uses,
//! rather than `object_store`'s reqwest one (ADR 0024).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domain::release::Sha256Digest;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpRequestBody,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutPayload,
};
use sqlx::PgPool;

use super::{Intake, Placed, StoreError, Stored, Sweep, UploadError};

/// The size of a multipart upload's parts: above S3's 5 MiB minimum, few requests for a large
/// file.
pub const PART: usize = 8 * 1024 * 1024;

/// Parts of one upload sent at once; the body waits while they are in flight.
pub const PARTS_IN_FLIGHT: usize = 2;

/// How old a staging or unreferenced content object must be before a sweep clears it, unless
/// `--artifact-stale-secs` says otherwise.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The largest object S3's `CopyObject` copies in one request: an upload is copied from its
/// staging name to its digest's, so `--max-artifact-bytes` may not exceed it with S3.
pub const MAX_OBJECT_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// The store behind an `s3://` URL.
#[derive(Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL as configured, for logs and errors (it holds no secret: credentials come from the
    /// environment).
    url: String,
}

impl Objects {
    /// The store at `url` (`s3://bucket` or `s3://bucket/prefix`). Credentials, region and
    /// endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// `AWS_ALLOW_HTTP`, ...), never from the command line.
    ///
    /// # Errors
    /// A URL that is not `s3://bucket[/prefix]`, or a configuration `object_store` refuses.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("--artifact-store takes an s3://bucket[/prefix] URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(
            !bucket.is_empty(),
            "--artifact-store names no bucket (s3://bucket[/prefix])"
        );
        let prefix = Path::parse(prefix.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("--artifact-store's prefix: {e}"))?;
        let builder = object_store::aws::AmazonS3Builder::from_env();
        // Said at once rather than as a connection refused: plain http must be asked for.
        let key = |k| builder.get_config_value(&k);
        use object_store::aws::AmazonS3ConfigKey as Key;
        let endpoint = key(Key::S3Endpoint).or_else(|| key(Key::Endpoint));
        let allow_http = key(Key::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(endpoint) = endpoint
            && endpoint.to_ascii_lowercase().starts_with("http://")
        {
            anyhow::ensure!(
                allow_http,
                "the S3 endpoint {endpoint} is plain http: set AWS_ALLOW_HTTP=true to use it \
                 (artifacts and credentials then cross the network unencrypted)"
            );
        }
        let store = builder
            .with_bucket_name(bucket)
            .with_http_connector(Hyper)
            // Retries end after 30 s rather than `object_store`'s 180: a client (or a proxy
            // before the server) waits for one answer at most about a minute, a 503.
            .with_retry(object_store::RetryConfig {
                max_retries: 5,
                retry_timeout: RETRY_FOR,
                ..object_store::RetryConfig::default()
            })
            .build()
            .map_err(|e| anyhow::anyhow!("--artifact-store {url}: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            url: url.to_owned(),
        })
    }

    /// The URL this store was opened from.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn under(&self, dir: &str) -> Path {
        self.prefix.clone().join(dir)
    }

    fn content(&self, digest: &Sha256Digest) -> Path {
        self.under("sha256").join(digest.to_string())
    }

    /// Stores `body`, at most `max` bytes, under its digest; `hold` takes the digest's lock
    /// before the object is put in place.
    ///
    /// # Errors
    /// [`UploadError`]; the staging object and the multipart upload are removed in every case.
    pub async fn put<S, E, H, F>(&self, body: S, max: u64, hold: H) -> Result<Placed, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
        H: FnOnce(Sha256Digest) -> F,
        F: Future<Output = tokio::sync::OwnedMutexGuard<()>>,
    {
        let staging = self
            .under("staging")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let upload = self
            .store
            .put_multipart(&staging)
            .await
            .map_err(unavailable)?;
        let mut pending = Pending {
            store: self.store.clone(),
            staging: staging.clone(),
            upload: Some(upload),
            completed: false,
        };
        // The body's chunks are gathered into parts without copying them; at most
        // `PARTS_IN_FLIGHT` are sent at once, and the body waits meanwhile.
        // Each part is a task of its own, so it is sent while the body is read; dropping the
        // set (the upload abandoned) cancels them.
        let mut parts = tokio::task::JoinSet::new();
        let mut gathered: Vec<Bytes> = Vec::new();
        let mut gathered_len = 0;
        let mut intake = Intake::new(body, max)?;
        loop {
            let chunk = intake.next().await?;
            let last = chunk.is_none();
            if let Some(chunk) = chunk {
                gathered_len += chunk.len();
                gathered.push(chunk);
            }
            if gathered_len >= PART || (last && gathered_len > 0) {
                while parts.len() >= PARTS_IN_FLIGHT {
                    if let Some(sent) = parts.join_next().await {
                        part_sent(sent)?;
                    }
                }
                let part: PutPayload = std::mem::take(&mut gathered).into_iter().collect();
                gathered_len = 0;
                parts.spawn(pending.upload().put_part(part));
            }
            if last {
                break;
            }
        }
        let stored: Stored = intake.finish().await?;
        while let Some(sent) = parts.join_next().await {
            part_sent(sent)?;
        }
        pending.upload().complete().await.map_err(unavailable)?;
        pending.upload = None;
        pending.completed = true;
        let held = hold(stored.sha256).await;
        // Copied even when the digest's object exists: the copy renews its age, so a sweep
        // (which clears unreferenced objects by age, and checks the age again before it
        // deletes) leaves it to this upload's event. The bytes are the same, by the name.
        self.store
            .copy(&staging, &self.content(&stored.sha256))
            .await
            .map_err(unavailable)?;
        // The bytes are in place: a staging object that stays is the sweep's to clear, not a
        // reason to refuse the upload.
        if let Err(e) = self.store.delete(&staging).await {
            tracing::warn!(error = %summary(&e), %staging, "a staging object was not deleted (the sweep clears it)");
        }
        pending.completed = false;
        Ok(Placed { stored, held })
    }

    /// Reads `len` bytes of `digest`'s object from `start`.
    ///
    /// # Errors
    /// The object is missing or the store failed.
    pub async fn read(
        &self,
        digest: &Sha256Digest,
        start: u64,
        len: u64,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, StoreError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.content(digest), options)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    StoreError::Io(io::Error::new(io::ErrorKind::NotFound, summary(&e)))
                }
                e => StoreError::Unavailable(summary(&e)),
            })?;
        Ok(got
            .into_stream()
            .map_err(|e| io::Error::other(summary(&e)))
            .boxed())
    }

    /// Removes `digest`'s object (the caller checked that no event names it and holds its
    /// lock). Whether there was one.
    ///
    /// # Errors
    /// The store failed.
    pub async fn forget(&self, digest: &Sha256Digest) -> Result<bool, UploadError> {
        let path = self.content(digest);
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(unavailable(e)),
        }
        self.store.delete(&path).await.map_err(unavailable)?;
        Ok(true)
    }

    /// Checks that the store answers (bucket, credentials), so that a misconfigured store
    /// stops the server at start-up rather than failing its first upload.
    ///
    /// # Errors
    /// The store's refusal.
    pub async fn check(&self) -> anyhow::Result<()> {
        let mut listed = self.store.list(Some(&self.under("sha256")));
        match tokio::time::timeout(CHECK_TIMEOUT, listed.next()).await {
            Err(_) => anyhow::bail!(
                "the artifact store {} does not answer within {} s",
                self.url,
                CHECK_TIMEOUT.as_secs()
            ),
            Ok(Some(Err(e))) => anyhow::bail!(
                "the artifact store {} does not answer: {}",
                self.url,
                summary(&e)
            ),
            Ok(_) => Ok(()),
        }
    }

    /// Clears what interrupted uploads left and is older than `older_than`: staging objects
    /// are deleted, content objects no `ArtifactAdded` names are moved to `unreferenced/`.
    ///
    /// # Errors
    /// Database or store errors.
    pub async fn sweep(&self, pool: &PgPool, older_than: Duration) -> anyhow::Result<Sweep> {
        let mut swept = Sweep::default();
        // An age beyond the calendar clears nothing.
        let Some(before) = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| chrono::Utc::now().checked_sub_signed(age))
        else {
            return Ok(swept);
        };
        let staged: Vec<_> = self
            .store
            .list(Some(&self.under("staging")))
            .try_filter(|m| std::future::ready(m.last_modified < before))
            .try_collect()
            .await?;
        for meta in staged {
            self.store.delete(&meta.location).await?;
            swept.staged += 1;
        }
        let named = projections::queries::named_artifact_digests(pool).await?;
        let unnamed: Vec<_> = self
            .store
            .list(Some(&self.under("sha256")))
            .try_filter(|m| {
                let unnamed = m
                    .location
                    .filename()
                    .is_some_and(|name| !named.contains(name));
                std::future::ready(unnamed && m.last_modified < before)
            })
            .try_collect()
            .await?;
        for meta in unnamed {
            let name = meta.location.filename().unwrap_or_default().to_owned();
            self.store
                .copy(
                    &meta.location,
                    &self.under("unreferenced").join(name.as_str()),
                )
                .await?;
            // Asked again right before the delete: since the listing, an upload of the same
            // bytes on another server may have copied them anew (a fresh age) and recorded
            // them. What is left is the moment between this check and the delete.
            let again = match self.store.head(&meta.location).await {
                Ok(again) => again,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if again.last_modified >= before
                || projections::queries::artifact_digest_named(pool, &name).await?
            {
                continue;
            }
            self.store.delete(&meta.location).await?;
            swept.unreferenced += 1;
        }
        Ok(swept)
    }
}

/// An upload not yet in place: dropped early (an error, the client gone, the request's task
/// dropped, even while the upload completes), it aborts the multipart upload and deletes the
/// staging object. A drop cannot await, so the clean-up runs as a task of its own.
struct Pending {
    store: Arc<dyn ObjectStore>,
    staging: Path,
    upload: Option<Box<dyn MultipartUpload>>,
    completed: bool,
}

impl Pending {
    fn upload(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.upload
            .as_mut()
            .expect("the upload is open until it completes")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.upload.is_none() && !self.completed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, staging, upload) =
            (self.store.clone(), self.staging.clone(), self.upload.take());
        runtime.spawn(async move {
            if let Some(mut upload) = upload
                && let Err(e) = upload.abort().await
            {
                tracing::warn!(error = %summary(&e), "an abandoned multipart upload was not aborted (the bucket's lifecycle rule removes it)");
            }
            // Dropped while completing, the upload may have completed all the same.
            match store.delete(&staging).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %summary(&e), %staging, "an abandoned staging object was not deleted (the sweep clears it)");
                }
            }
        });
    }
}

/// An object store's error, shortened: its text may quote the store's whole answer, which for a
/// refused signature echoes the signed request (a session token among its headers).
fn summary(e: &object_store::Error) -> String {
    let text = e.to_string();
    let cut = text.find(['\n', '<']).unwrap_or(text.len()).min(300);
    let mut end = cut;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim_end().to_owned()
}

/// A part's task's outcome.
fn part_sent(
    sent: Result<object_store::Result<()>, tokio::task::JoinError>,
) -> Result<(), UploadError> {
    sent.map_err(|e| UploadError::Io(io::Error::other(e)))?
        .map_err(unavailable)
}

/// The store failed or did not answer: the caller may retry.
fn unavailable(e: object_store::Error) -> UploadError {
    UploadError::Unavailable(summary(&e))
}

/// How long a request to the store is retried after its first attempt.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// How long the store may take to answer the start-up check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// `object_store`'s HTTP connector on hyper's client: rustls over ring and the system's roots
/// (the stack OIDC and `ledger releases publish` use), plain http only for an endpoint the
/// operator names with http:// and allows (`AWS_ALLOW_HTTP`, a store on the same host).
#[derive(Debug, Clone, Copy)]
struct Hyper;

/// How long connecting to the store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    HttpRequestBody,
>;

#[derive(Debug)]
struct HyperService(Client);

impl HttpConnector for Hyper {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // `object_store` leaves refusing plain http to its own client; this one refuses it
        // unless `AWS_ALLOW_HTTP=true` (the credential clients of instance and container
        // metadata get `true` from `object_store` itself).
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
        // The TLS connector hands https URLs to this one: it must not refuse them.
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(tls) => tls,
            // A machine without roots can still reach a store over plain http (on the same
            // host or network); https then fails on the certificate, saying so.
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| object_store::Error::Generic {
                        store: "S3",
                        source: Box::new(e),
                    })?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let tls = if allow_http {
            tls.https_or_http()
        } else {
            tls.https_only()
        };
        let https = tls.enable_http1().wrap_connector(tcp);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https);
        Ok(HttpClient::new(HyperService(client)))
    }
}

/// How long the store may take to send an answer's head, and then to send each next piece of
/// its body: a store that accepts a connection and then stalls must not hold an upload, a
/// download or a digest's lock forever. Not a deadline for a whole answer: a 2 GiB download
/// takes as long as it takes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[async_trait::async_trait]
impl HttpService for HyperService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(IDLE_TIMEOUT, self.0.request(request))
            .await
            .map_err(|elapsed| HttpError::new(HttpErrorKind::Timeout, elapsed))?
            .map_err(|e| {
                // As `object_store` classes reqwest's errors: only a request that surely was
                // not processed is `Request` (retried whatever its method).
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else if std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<hyper::Error>())
                    .is_some_and(|h| h.is_closed() || h.is_incomplete_message())
                {
                    HttpErrorKind::Request
                } else {
                    HttpErrorKind::Unknown
                };
                HttpError::new(kind, e)
            })?;
        let (parts, body) = response.into_parts();
        let body = IdleBody {
            inner: body,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        };
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// An answer's body that fails when the store sends nothing for [`IDLE_TIMEOUT`].
struct IdleBody {
    inner: hyper::body::Incoming,
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for IdleBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
                self.idle.as_mut().reset(deadline);
                Poll::Ready(
                    frame.map(|f| f.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e))),
                )
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    io::Error::new(io::ErrorKind::TimedOut, "the store sent nothing for 30 s"),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
