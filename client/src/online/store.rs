//! Where the offline token is kept: written atomically, readable by its owner only.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use uuid::Uuid;

/// Writes `bytes` to `path` atomically (temporary file, then rename) with owner-only
/// permissions, creating `dir` (owner-only) when missing.
pub(super) fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;

    let temporary = dir.join(format!(".offline-token-{}.tmp", Uuid::new_v4()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        // Best effort: a leftover temporary file holds nothing secret, but is clutter.
        let _ = fs::remove_file(&temporary);
    }
    result
}
