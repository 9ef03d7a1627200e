//! Where artifacts' bytes live (ADR 0023): content-addressed files under
//! `<data-dir>/artifacts/sha256/<hex digest>`, written through a staging file.
//!
//! An upload streams into `staging/<random>` while it is hashed and counted, never held whole
//! in memory. Only a complete body is fsynced and renamed to its digest's name; the caller
//! appends `ArtifactAdded` after that. A body that breaks off, stalls or goes over the limit
//! removes its staging file. A kill -9 can leave a staging file, or a content file that no event
//! names yet. [`ArtifactStore::claim`] clears both at start-up, before the server serves, when
//! no other server uses the directory.
//!
//! With `--artifact-store s3://bucket/prefix` the same layout lives in an S3-compatible object
//! store instead ([`object`], ADR 0024); the store's users see no difference.

pub mod object;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use domain::release::Sha256Digest;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

/// How long an upload may send nothing before it is abandoned: a client that stalls does not
/// hold a staging file and a connection forever.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the largest artifact may weigh, unless `--max-artifact-bytes` says otherwise.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The bytes written to disk at once: large enough that a 1 GiB upload is a few thousand writes,
/// small enough that memory stays flat.
const WRITE_BUFFER: usize = 1024 * 1024;

/// A stored file: its digest and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// A file in place under its digest, and the digest's lock, held until the caller has recorded
/// it (or cleaned up after a refusal).
#[derive(Debug)]
pub struct Placed {
    pub stored: Stored,
    pub held: tokio::sync::OwnedMutexGuard<()>,
}

/// Why an upload was not stored. Nothing is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the artifact is larger than {max} bytes (--max-artifact-bytes)")]
    TooLarge { max: u64 },
    #[error("the upload is empty")]
    Empty,
    #[error("the upload sent nothing for {} s", STALL_TIMEOUT.as_secs())]
    Stalled,
    /// The client's body broke off (connection closed, malformed chunking).
    #[error("the upload broke off: {0}")]
    Body(String),
    #[error("the artifact store failed: {0}")]
    Io(#[from] io::Error),
    /// The object store failed or did not answer (`object`); a retry may succeed.
    #[error("the artifact store did not answer: {0}")]
    Unavailable(String),
}

/// Why an artifact's bytes cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bytes are missing or unreadable.
    #[error("the artifact store failed: {0}")]
    Io(#[from] io::Error),
    /// The object store failed or did not answer; a retry may succeed.
    #[error("the artifact store did not answer: {0}")]
    Unavailable(String),
}

/// Bytes read at once from a file for a download: few system calls for a large file, flat
/// memory.
const READ_BLOCK: usize = 256 * 1024;

/// The artifact store: a data directory's, or an object store's ([`object`]).
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    /// The shared lock [`ArtifactStore::claim`] holds on `artifacts/.lock` for as long as the
    /// server runs: no other server clears the directory under it.
    lock: std::sync::Arc<std::sync::OnceLock<std::fs::File>>,
    /// `Some` with `--artifact-store s3://...`: the bytes live there, not under `root`.
    objects: Option<std::sync::Arc<object::Objects>>,
    /// The age at which an object store's leftovers are cleared (`--artifact-stale-secs`).
    stale_after: Duration,
}

/// An upload's body as it arrives: each chunk counted against the limit and handed to the
/// hasher, a stall cut off. Both stores read bodies through it.
///
/// SHA-256 runs on a thread of its own, fed batches of the body's chunks (shared, not
/// copied), so hashing overlaps with receiving and writing instead of adding to them on the
/// request's task: it was the upload's largest cost (BENCHMARKS.md, "Releases and downloads").
pub(crate) struct Intake<S> {
    body: std::pin::Pin<Box<S>>,
    /// `None` once finished.
    hasher: Option<Hasher>,
    batch: Vec<Bytes>,
    batch_len: usize,
    size: u64,
    max: u64,
}

/// The hashing thread's side: batches go in, the digest comes out when the sender is dropped.
struct Hasher {
    batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
    digest: tokio::sync::oneshot::Receiver<[u8; 32]>,
}

/// How much of the body is handed to the hasher at once: one hand-over (a wake-up of the
/// hashing thread) per quarter MiB, not per chunk (chunks are as small as 16 KiB).
const HASH_BATCH: usize = 256 * 1024;

/// Batches waiting for the hasher: a hasher that falls behind slows the upload down rather
/// than holding the body in memory (at most this many batches, 4 MiB).
const HASH_QUEUE: usize = 16;

impl Hasher {
    /// A plain thread, not tokio's blocking pool: a blocking task in flight stops a paused
    /// test clock from advancing, and the stall tests run on one.
    fn start() -> io::Result<Self> {
        let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<Bytes>>(HASH_QUEUE);
        let (done, digest) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("upload-sha256".to_owned())
            .spawn(move || {
                let mut hasher = Sha256::new();
                while let Some(batch) = received.blocking_recv() {
                    for chunk in batch {
                        hasher.update(&chunk);
                    }
                }
                let _ = done.send(hasher.finalize().into());
            })?;
        Ok(Self { batches, digest })
    }
}

impl<S, E> Intake<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    pub(crate) fn new(body: S, max: u64) -> io::Result<Self> {
        Ok(Self {
            body: Box::pin(body),
            hasher: Some(Hasher::start()?),
            batch: Vec::new(),
            batch_len: 0,
            size: 0,
            max,
        })
    }

    /// The next chunk, counted and handed to the hasher; `None` at the body's end.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, UploadError> {
        let chunk = match tokio::time::timeout(STALL_TIMEOUT, self.body.next()).await {
            Err(_) => return Err(UploadError::Stalled),
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(UploadError::Body(e.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        self.size = self.size.saturating_add(chunk.len() as u64);
        if self.size > self.max {
            return Err(UploadError::TooLarge { max: self.max });
        }
        self.batch_len += chunk.len();
        self.batch.push(chunk.clone());
        if self.batch_len >= HASH_BATCH {
            self.hand_over().await?;
        }
        Ok(Some(chunk))
    }

    async fn hand_over(&mut self) -> Result<(), UploadError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        let hasher = self.hasher.as_ref().ok_or_else(hasher_gone)?;
        hasher.batches.send(batch).await.map_err(|_| hasher_gone())
    }

    /// The whole body's digest and size, once the hasher has caught up.
    pub(crate) async fn finish(mut self) -> Result<Stored, UploadError> {
        if self.size == 0 {
            return Err(UploadError::Empty);
        }
        if !self.batch.is_empty() {
            self.hand_over().await?;
        }
        let Hasher { batches, digest } = self.hasher.take().ok_or_else(hasher_gone)?;
        drop(batches);
        let digest = digest.await.map_err(|_| hasher_gone())?;
        Ok(Stored {
            sha256: Sha256Digest::from_bytes(digest),
            size: self.size,
        })
    }
}

fn hasher_gone() -> UploadError {
    UploadError::Io(io::Error::other("the upload's hashing thread stopped"))
}

/// Removes a staging file unless the upload completed (on error, on a panic, when the request's
/// task is dropped because the client went away).
struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            // Synchronous on purpose: a drop cannot await, and one unlink is quick.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ArtifactStore {
    /// The store under `<data_dir>/artifacts`, its directories created when missing.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("artifacts");
        std::fs::create_dir_all(root.join("staging"))?;
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(Self {
            root,
            lock: std::sync::Arc::default(),
            objects: None,
            stale_after: object::STALE_AFTER,
        })
    }

    /// The store `--artifact-store` names: `None` is the data directory's
    /// (`<data_dir>/artifacts`), `s3://bucket[/prefix]` an S3-compatible object store, whose
    /// leftovers are cleared once `stale_after` old, for artifacts of at most `max_bytes`.
    ///
    /// # Errors
    /// An unknown scheme, a configuration the object store refuses, a limit above what it can
    /// copy (`object::MAX_OBJECT_COPY`), or the directories.
    pub fn configured(
        data_dir: &Path,
        url: Option<&str>,
        stale_after: Duration,
        max_bytes: u64,
    ) -> anyhow::Result<Self> {
        let mut store = Self::open(data_dir)?;
        if let Some(url) = url {
            anyhow::ensure!(
                max_bytes <= object::MAX_OBJECT_COPY,
                "--max-artifact-bytes is above 5 GiB, which an S3 store cannot copy in one request"
            );
            store.objects = Some(std::sync::Arc::new(object::Objects::from_url(url)?));
            store.stale_after = stale_after;
        }
        Ok(store)
    }

    /// Where the bytes live, for logs: the object store's URL or the directory.
    pub fn location(&self) -> String {
        self.objects
            .as_ref()
            .map_or_else(|| self.root.display().to_string(), |o| o.url().to_owned())
    }

    /// Joins the directory's users, and clears what interrupted uploads left when it is the
    /// only one. Every server holds a shared lock on `artifacts/.lock` for as long as it runs
    /// (the OS releases it even after a kill -9). Clearing needs the lock exclusively, which it
    /// gets only when no other server runs on the directory: a server started beside running
    /// ones (several servers on one shared data directory) clears nothing, since their uploads
    /// in flight would look abandoned. Returns `None` then.
    ///
    /// # Errors
    /// Database or file-system errors.
    pub async fn claim(&self, pool: &PgPool) -> anyhow::Result<Option<Sweep>> {
        if let Some(objects) = &self.objects {
            // No lock outlives a killed server in an object store: what is old enough to be
            // abandoned is cleared, by whichever server starts (module `object`).
            objects.check().await?;
            // Files an earlier configuration stored in the data directory are not served from
            // the bucket: said at every start until they are copied there (README).
            let local = std::fs::read_dir(self.content_dir()).map_or(0, Iterator::count);
            if local > 0 {
                tracing::warn!(
                    files = local,
                    dir = %self.content_dir().display(),
                    store = %objects.url(),
                    "the data directory holds artifact files, but artifacts are read from the S3 store: copy <data-dir>/artifacts/sha256/* to <prefix>/sha256/ in the bucket, or downloads of them fail"
                );
            }
            return objects.sweep(pool, self.stale_after).await.map(Some);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))?;
        let swept = match file.try_lock() {
            Ok(()) => {
                let swept = self.sweep(pool).await;
                // Shared from here on, so servers started later join without clearing.
                file.lock_shared()?;
                Some(swept?)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                // Others run: wait (briefly, if one is clearing right now) to share it.
                let file = tokio::task::spawn_blocking(move || file.lock_shared().map(|()| file))
                    .await
                    .map_err(std::io::Error::other)??;
                let _ = self.lock.set(file);
                return Ok(None);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        };
        let _ = self.lock.set(file);
        Ok(swept)
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn content_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// The file holding the bytes of `digest` in the data directory's store.
    fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.content_dir().join(digest.to_string())
    }

    /// `len` bytes of `digest`'s content from `start`, streamed in blocks.
    ///
    /// # Errors
    /// The content is missing or cannot be read.
    pub async fn read(
        &self,
        digest: &Sha256Digest,
        start: u64,
        len: u64,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, StoreError> {
        if let Some(objects) = &self.objects {
            return objects.read(digest, start, len).await;
        }
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.path(digest)).await?;
        if start > 0 {
            file.seek(io::SeekFrom::Start(start)).await?;
        }
        Ok(tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_BLOCK).boxed())
    }

    /// Stores `body`, at most `max` bytes, under its digest.
    ///
    /// # Errors
    /// [`UploadError`]; the staging file is removed in every case.
    pub async fn put<S, E>(&self, body: S, max: u64) -> Result<Placed, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if let Some(objects) = &self.objects {
            return objects.put(body, max, |digest| self.hold(digest)).await;
        }
        let mut staging = Staging {
            path: self
                .staging_dir()
                .join(uuid::Uuid::new_v4().simple().to_string()),
            armed: true,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging.path)
            .await?;
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut intake = Intake::new(body, max)?;
        while let Some(chunk) = intake.next().await? {
            file.write_all(&chunk).await?;
        }
        let stored = intake.finish().await?;
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        drop(file);
        // Held until the caller's append is done: a refused append's cleanup
        // (`forget_unless_named`) cannot remove a file another upload of these bytes relies on.
        let held = self.hold(stored.sha256).await;
        let target = self.path(&stored.sha256);
        // The same bytes stored before: the file is the same, by its name.
        if !tokio::fs::try_exists(&target).await? {
            tokio::fs::rename(&staging.path, &target).await?;
            staging.armed = false;
            // The rename lasts only once the directory is on disk too.
            sync_dir(self.content_dir()).await?;
        }
        Ok(Placed { stored, held })
    }

    /// Clears what interrupted uploads left: removes every staging file, and moves every
    /// content file whose digest no `ArtifactAdded` names (an upload killed between its rename
    /// and its event) to `artifacts/unreferenced/`, where an operator can still find it (a
    /// database restored from an older backup names fewer files than the directory holds).
    /// Only [`ArtifactStore::claim`] runs it, holding the directory exclusively before this
    /// server serves: a file being uploaded now would look abandoned.
    ///
    /// # Errors
    /// Database or file-system errors.
    async fn sweep(&self, pool: &PgPool) -> anyhow::Result<Sweep> {
        let mut swept = Sweep::default();
        let mut staging = tokio::fs::read_dir(self.staging_dir()).await?;
        while let Some(entry) = staging.next_entry().await? {
            tokio::fs::remove_file(entry.path()).await?;
            swept.staged += 1;
        }
        let named = projections::queries::named_artifact_digests(pool).await?;
        let unreferenced = self.root.join("unreferenced");
        let mut content = tokio::fs::read_dir(self.content_dir()).await?;
        while let Some(entry) = content.next_entry().await? {
            let name = entry.file_name();
            if !named.contains(name.to_string_lossy().as_ref()) {
                tokio::fs::create_dir_all(&unreferenced).await?;
                tokio::fs::rename(entry.path(), unreferenced.join(&name)).await?;
                swept.unreferenced += 1;
            }
        }
        Ok(swept)
    }

    /// Removes the file of `digest` when no `ArtifactAdded` names it: what an upload whose
    /// event was refused (its name taken a moment before, the release published meanwhile)
    /// leaves behind. The caller holds the digest's lock ([`ArtifactStore::hold`]), so no
    /// other upload of the same bytes is between its rename and its append.
    ///
    /// # Errors
    /// Database or file-system errors.
    pub async fn forget_unless_named(
        &self,
        pool: &PgPool,
        digest: &Sha256Digest,
    ) -> anyhow::Result<bool> {
        if projections::queries::artifact_digest_named(pool, &digest.to_string()).await? {
            return Ok(false);
        }
        if let Some(objects) = &self.objects {
            return Ok(objects.forget(digest).await?);
        }
        match tokio::fs::remove_file(self.path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Serializes the uploads of one digest within the process, from the rename to the
    /// append (or the cleanup after a refused append). Servers sharing a directory do not
    /// share this lock: there, a refused append's cleanup could remove a file another
    /// server's upload of the same bytes has just put in place (ADR 0023, "Left").
    pub async fn hold(&self, digest: Sha256Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut held = HELD
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Forget the locks nobody waits on, so the map stays as small as the uploads.
            held.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
            held.entry(digest).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// The per-digest locks of [`ArtifactStore::hold`] (one store per process: `claim`).
static HELD: std::sync::LazyLock<
    std::sync::Mutex<
        std::collections::HashMap<Sha256Digest, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
> = std::sync::LazyLock::new(Default::default);

/// What [`ArtifactStore::claim`] cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Staging files removed.
    pub staged: usize,
    /// Content files no event names, moved to `artifacts/unreferenced/`.
    pub unreferenced: usize,
}

async fn sync_dir(dir: PathBuf) -> io::Result<()> {
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (ArtifactStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ledger-artifacts-{}", uuid::Uuid::now_v7()));
        (ArtifactStore::open(&dir).unwrap(), dir)
    }

    fn names(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Bytes, String>> + use<> {
        let owned: Vec<Result<Bytes, String>> = parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        futures_util::stream::iter(owned)
    }

    #[tokio::test]
    async fn a_body_is_stored_under_its_digest_once_whatever_its_chunks() {
        let (store, dir) = store();
        // `.stored` lets the digest's lock go with the rest of the answer.
        let stored = store
            .put(chunks(&[b"hello ", b"world"]), 100)
            .await
            .unwrap()
            .stored;
        assert_eq!(stored.size, 11);
        assert_eq!(
            stored.sha256.to_string(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            std::fs::read(store.path(&stored.sha256)).unwrap(),
            b"hello world"
        );
        // The same bytes in other chunks: the same file, nothing staged.
        let again = store
            .put(chunks(&[b"hello", b" world"]), 100)
            .await
            .unwrap()
            .stored;
        assert_eq!(again, stored);
        assert_eq!(names(&dir.join("artifacts/sha256")).len(), 1);
        assert!(names(&dir.join("artifacts/staging")).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_refused_body_leaves_nothing() {
        let (store, dir) = store();
        let too_large = store.put(chunks(&[b"12345", b"6"]), 5).await;
        assert!(matches!(too_large, Err(UploadError::TooLarge { max: 5 })));
        assert!(matches!(
            store.put(chunks(&[]), 5).await,
            Err(UploadError::Empty)
        ));
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_owned()),
        ]);
        assert!(matches!(
            store.put(broken, 100).await,
            Err(UploadError::Body(e)) if e == "connection reset"
        ));
        assert!(names(&dir.join("artifacts/staging")).is_empty());
        assert!(names(&dir.join("artifacts/sha256")).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_abandoned_and_leaves_nothing() {
        let (store, dir) = store();
        let stalled = futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"abc"))])
            .chain(futures_util::stream::pending());
        let started = tokio::time::Instant::now();
        assert!(matches!(
            store.put(stalled, 100).await,
            Err(UploadError::Stalled)
        ));
        assert!(started.elapsed() >= STALL_TIMEOUT);
        assert!(names(&dir.join("artifacts/staging")).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
