//! Where artifacts' bytes live (ADR 0023): content-addressed files under
//! `<data-dir>/artifacts/sha256/<hex digest>`, written through a staging file.
//!
//! An upload streams into `staging/<random>` while it is hashed and counted, never held whole
//! in memory. Only a complete body is fsynced and renamed to its digest's name; the caller
//! appends `ArtifactAdded` after that. A body that breaks off, stalls or goes over the limit
//! removes its staging file. A kill -9 can leave a staging file, or a content file that no event
//! names yet. [`ArtifactStore::sweep`] removes both at start-up, before the server listens.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use domain::release::Sha256Digest;
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
}

/// The artifact store of a data directory.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
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
        Ok(Self { root })
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    fn content_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// The file holding the bytes of `digest`.
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.content_dir().join(digest.to_string())
    }

    /// Stores `body`, at most `max` bytes, under its digest.
    ///
    /// # Errors
    /// [`UploadError`]; the staging file is removed in every case.
    pub async fn put<S, E>(&self, body: S, max: u64) -> Result<Stored, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
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
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        loop {
            let chunk = match tokio::time::timeout(STALL_TIMEOUT, body.next()).await {
                Err(_) => return Err(UploadError::Stalled),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(UploadError::Body(e.to_string())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            size = size.saturating_add(chunk.len() as u64);
            if size > max {
                return Err(UploadError::TooLarge { max });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if size == 0 {
            return Err(UploadError::Empty);
        }
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        drop(file);
        let sha256 = Sha256Digest::from_bytes(hasher.finalize().into());
        let target = self.path(&sha256);
        // The same bytes stored before: the file is the same, by its name.
        if tokio::fs::try_exists(&target).await? {
            return Ok(Stored { sha256, size });
        }
        tokio::fs::rename(&staging.path, &target).await?;
        staging.armed = false;
        // The rename lasts only once the directory is on disk too.
        sync_dir(self.content_dir()).await?;
        Ok(Stored { sha256, size })
    }

    /// Removes what interrupted uploads left: every staging file, and every content file whose
    /// digest no `ArtifactAdded` names (an upload killed between its rename and its event).
    /// Run at start-up, before any upload can run: a file being uploaded now would look
    /// abandoned. Returns how many files it removed.
    ///
    /// # Errors
    /// Database or file-system errors.
    pub async fn sweep(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let mut removed = 0;
        let mut staging = tokio::fs::read_dir(self.staging_dir()).await?;
        while let Some(entry) = staging.next_entry().await? {
            tokio::fs::remove_file(entry.path()).await?;
            removed += 1;
        }
        let named: HashSet<String> = sqlx::query_scalar::<_, Option<String>>(
            "SELECT DISTINCT payload ->> 'sha256' FROM events WHERE event_type = 'ArtifactAdded'",
        )
        .fetch_all(pool)
        .await?
        .into_iter()
        .flatten()
        .collect();
        let mut content = tokio::fs::read_dir(self.content_dir()).await?;
        while let Some(entry) = content.next_entry().await? {
            let name = entry.file_name();
            if !named.contains(name.to_string_lossy().as_ref()) {
                tokio::fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
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
        let stored = store
            .put(chunks(&[b"hello ", b"world"]), 100)
            .await
            .unwrap();
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
            .unwrap();
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
