//! The client edge, one check for every route a client application calls (and for air-gapped
//! request files): does this license key open a license of the application that presents it?
//!
//! Unknown keys and keys of another application are refused alike ([`AppError::Edge`] with
//! `NOT_FOUND` or `APP_MISMATCH`, one status on every client route). A malformed key is hashed
//! like a real one, the App GUID is compared in constant time whether or not a license was found
//! (against a decoy when none was), and on the command routes both refusals ask the claims table
//! once. So an answer's timing does not tell whether a key exists under another product
//! (`tests/tests/client_api/timing.rs` classifies 2,000 answers of each kind on every route).
//!
//! The check reads the in-memory validation model first; a command route falls back to the
//! claims table for a key the model has not seen yet (a license issued a moment ago on another
//! node), and then requires the license's *current* key: a rotated-away key keeps its claim.

use domain::ids::{AppId, LicenseId};
use domain::keys::{KeyHash, LicenseKey};
use domain::license::License;
use domain::validation::ValidationCode;
use domain::values::KeyPrefix;
use projections::validation::ValidationEntry;
use subtle::ConstantTimeEq;

use crate::{App, AppError};

/// Whether the license's App GUID is the presented one, compared in constant time; with no
/// license, compared against a decoy so both paths do the same work. `(found, same)`.
pub(crate) fn same_app(found: Option<&AppId>, presented: &AppId) -> (bool, bool) {
    const DECOY: [u8; 16] = [0xA5; 16];
    let expected = found.map_or(&DECOY, |a| a.as_uuid().as_bytes());
    let equal: bool = expected.ct_eq(presented.as_uuid().as_bytes()).into();
    (found.is_some(), equal)
}

/// The hash of no license: what a malformed key, and a key refused in memory, are looked up as.
const NO_LICENSE: KeyHash = KeyHash::from_bytes([0; 32]);

/// The refusal for a key that opens no license of this application.
const fn refusal(found: bool) -> AppError {
    AppError::Edge(if found {
        ValidationCode::AppMismatch
    } else {
        ValidationCode::NotFound
    })
}

impl App {
    /// The keyed hash of a presented key. A malformed key is hashed too (as a key no license has),
    /// so refusing it costs what refusing a well-formed unknown key costs.
    pub fn key_hash(&self, raw: &str) -> KeyHash {
        let hasher = self.ledger().hasher();
        match LicenseKey::parse(raw) {
            Ok(key) => hasher.hash(&key),
            Err(_) => {
                let prefix = KeyPrefix::parse("XX").expect("a valid prefix");
                let _ = hasher.hash(&LicenseKey::from_entropy(&prefix, &[0; 20]));
                NO_LICENSE
            }
        }
    }

    /// The in-memory step of the check, the same for every route: `f` gets the entry when the
    /// key opens a license of `app`, or whether a license was found at all (another
    /// application's) when it does not.
    fn in_memory<R>(
        &self,
        hash: &KeyHash,
        app: &AppId,
        f: impl FnOnce(Result<&ValidationEntry, bool>) -> R,
    ) -> R {
        self.validation().with_key(hash, |entry| {
            let (found, same) = same_app(entry.map(|e| &e.class.app_id), app);
            match entry {
                Some(e) if found && same => f(Ok(e)),
                _ => f(Err(found)),
            }
        })
    }

    /// Runs `f` on the validation entry of the license `raw_key` opens for application `app`,
    /// from memory alone (what `POST /v1/validate` answers from).
    ///
    /// # Errors
    /// [`AppError::Edge`] when the key opens no license of this application.
    pub fn with_edge_entry<R>(
        &self,
        app: &AppId,
        raw_key: &str,
        f: impl FnOnce(&ValidationEntry) -> R,
    ) -> Result<R, AppError> {
        let hash = self.key_hash(raw_key);
        self.in_memory(&hash, app, |entry| entry.map(f).map_err(refusal))
    }

    /// The license `raw_key` opens for application `app`, for a command.
    ///
    /// # Errors
    /// [`AppError::Edge`] when the key opens no license of this application; database errors.
    pub async fn open_license(&self, app: &AppId, raw_key: &str) -> Result<LicenseId, AppError> {
        let hash = self.key_hash(raw_key);
        let in_memory = self.in_memory(&hash, app, |entry| entry.map(|e| e.license_id));
        if let Ok(id) = in_memory {
            return Ok(id);
        }
        // Refused or unknown in memory: ask the claims table either way. An unknown key must
        // ask it (the license may have been issued a moment ago on another node); another
        // application's key asks it too, for a hash no license has, so that the database
        // answers both refusals "nothing" with the same work: the answer's timing must not tell
        // that a key exists under another product.
        let mismatch = in_memory == Err(true);
        let asked = if mismatch { NO_LICENSE } else { hash };
        let claimed = self.ledger().license_by_key_hash(&asked).await?;
        if mismatch {
            return Err(refusal(true));
        }
        let Some(id) = claimed else {
            return Err(refusal(false));
        };
        let loaded = self.ledger().store().read::<License>(id).await?;
        let license = loaded.aggregate.state().ok_or(refusal(false))?;
        if !license.key_hash.ct_eq(&hash) {
            return Err(refusal(false));
        }
        match same_app(Some(&license.app_id), app) {
            (_, true) => Ok(id),
            _ => Err(refusal(true)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_guids_compare_the_same_way_found_or_not() {
        let a = AppId::parse_str("6f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f").unwrap();
        let b = AppId::parse_str("7f1c1d3e-0b8a-4c53-9d2f-1a2b3c4d5e6f").unwrap();
        assert_eq!(same_app(Some(&a), &a), (true, true));
        assert_eq!(same_app(Some(&a), &b), (true, false));
        assert_eq!(same_app(None, &a), (false, false));
    }
}
