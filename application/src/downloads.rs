//! Download links (ADR 0023): granted to a license that sees the release (`DownloadGranted`,
//! a stream per link), signed so that the link itself is the credential, short-lived, and
//! checked again when it is used: an expired or altered link, a yanked release or a license
//! that no longer sees it is refused (403 `DOWNLOAD_LINK_INVALID`). A completed transfer
//! records `DownloadServed`.
//!
//! A link is `/v1/downloads/<token>`, the token base64url of the grant's id, its expiry and an
//! HMAC over both, keyed by a key derived from the key pepper. Checking it costs no database
//! read; what it names is then read from the log.

use base64ct::{Base64UrlUnpadded, Encoding};
use commands::ledger::NewDownload;
use commands::{CommandContext, Loaded};
use domain::ErrorCode;
use domain::Timestamp;
use domain::download::{Download, sight_of};
use domain::event::Actor;
use domain::ids::{ArtifactId, DownloadId, LicenseId, OrganizationId};
use domain::license::License;
use domain::reach::Action;
use domain::release::{Artifact, Release, ReleaseStatus, visibility};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::access::{Access, PrincipalKind};
use crate::lists::{Listed, PageRequest, Scope};
use crate::views::{DownloadCountsView, DownloadLinkView, DownloadView, Written};
use crate::{App, AppError};

/// How long a granted link is valid (API.md: at most 300 s).
pub const LINK_TTL: chrono::Duration = chrono::Duration::seconds(300);

/// The bytes a token carries before its tag: the grant's id and its expiry (Unix seconds).
const PAYLOAD: usize = 16 + 8;
const TAG: usize = 32;

/// Signs and opens download tokens.
#[derive(Clone)]
pub struct LinkSigner {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    /// Keyed by a key derived from the pepper, for this purpose only.
    pub fn new(pepper: &[u8; 32]) -> Self {
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper)
            .expect("HMAC takes a key of any length");
        derive.update(b"license-ledger download links v1");
        let key = derive.finalize().into_bytes();
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .expect("HMAC takes a key of any length"),
        }
    }

    /// The token of grant `id` expiring at `expires_at`.
    pub fn sign(&self, id: DownloadId, expires_at: Timestamp) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD + TAG);
        bytes.extend_from_slice(id.as_uuid().as_bytes());
        bytes.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        let mut mac = self.keyed.clone();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        Base64UrlUnpadded::encode_string(&bytes)
    }

    /// The grant and expiry a token names, when its tag verifies (compared in constant time).
    pub fn open(&self, token: &str) -> Option<(DownloadId, i64)> {
        if token.len() > 128 {
            return None;
        }
        let bytes = Base64UrlUnpadded::decode_vec(token).ok()?;
        if bytes.len() != PAYLOAD + TAG {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD);
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac.verify_slice(tag).ok()?;
        let id = Uuid::from_slice(&payload[..16]).ok()?;
        let expires = i64::from_be_bytes(payload[16..].try_into().ok()?);
        Some((DownloadId::from_uuid(id), expires))
    }
}

/// A link opened for a transfer: what to send and where it is.
#[derive(Clone, Debug)]
pub struct Opened {
    pub download_id: DownloadId,
    pub artifact: Artifact,
}

fn link_invalid(why: &str) -> AppError {
    AppError::DownloadLinkInvalid(format!(
        "this download link is not valid: {why}; ask for a new one"
    ))
}

/// The download use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Downloads<'a> {
    app: &'a App,
}

impl App {
    /// The download use cases.
    pub fn downloads(&self) -> Downloads<'_> {
        Downloads { app: self }
    }
}

impl Downloads<'_> {
    /// Grants `access` a link to artifact `artifact_id` for license `license_id`, which it
    /// must reach with the right to download, and which must see the artifact's release now.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND` (also for a license out of reach), 403, `ARTIFACT_NOT_FOUND`,
    /// `RELEASE_NOT_VISIBLE`; infrastructure errors.
    pub async fn grant(
        &self,
        access: &Access,
        ctx: &CommandContext,
        artifact_id: ArtifactId,
        license_id: LicenseId,
    ) -> Result<Written<DownloadLinkView>, AppError> {
        let license = self.app.licenses().get(license_id).await?;
        let not_found = || {
            AppError::not_found(
                ErrorCode::LicenseNotFound,
                format!("license {license_id} does not exist"),
            )
        };
        self.app
            .authorize_at(
                access,
                OrganizationId::from_uuid(license.organization_id),
                Action::Download,
                not_found,
            )
            .await?;
        let artifact_not_found = || {
            AppError::not_found(
                ErrorCode::ArtifactNotFound,
                format!("artifact {artifact_id} does not exist"),
            )
        };
        // From the log (migration 0018's index), not the read model: a link asked for right
        // after the publish finds its file.
        let release_id =
            projections::queries::release_of_artifact(self.app.pool(), artifact_id.into())
                .await?
                .map(domain::ids::ReleaseId::from_uuid)
                .ok_or_else(artifact_not_found)?;
        let loaded: Loaded<Release> = self.app.ledger().store().read(release_id).await?;
        let release = loaded.aggregate.state().ok_or_else(artifact_not_found)?;
        // Another product's file is, to this license's holder, a file that does not exist
        // (whatever its release's state: a yank is nobody else's business).
        if Uuid::from(release.product_id) != license.product_id {
            return Err(artifact_not_found());
        }
        let artifact = release
            .artifacts
            .iter()
            .find(|a| a.artifact_id == artifact_id)
            .cloned()
            .ok_or_else(artifact_not_found)?;
        let user_id = match &access.kind {
            PrincipalKind::User { id, .. } => Some(*id),
            PrincipalKind::Token { .. } => None,
        };
        let granted = self
            .app
            .ledger()
            .grant_download(
                ctx,
                NewDownload {
                    artifact_id,
                    release_id,
                    license_id,
                    user_id,
                    valid_for: LINK_TTL,
                },
            )
            .await;
        // A draft's or another product's file is, to a customer, a file that does not exist;
        // the other rules (channel, entitlement, maintenance) are theirs to know.
        let o = match granted {
            Err(commands::LedgerError::Command(commands::CommandError::Rejected(
                domain::DomainError::ReleaseNotVisible(
                    domain::release::Unseen::NotPublished | domain::release::Unseen::OtherProduct,
                ),
            ))) => return Err(artifact_not_found()),
            other => other?,
        };
        let grant = o
            .aggregate
            .grant()
            .ok_or(AppError::Invariant("a grant left no state"))?;
        let token = self.app.link_signer().sign(o.id, grant.expires_at);
        Ok(Written {
            view: DownloadLinkView::new(
                self.app.public_url(),
                o.id,
                &token,
                grant,
                release,
                &artifact,
            ),
            replayed: o.replayed,
        })
    }

    /// Opens a link for a transfer: its signature and expiry, then (from the log) its grant,
    /// the release (published, not yanked) and the license (still seeing the release now).
    ///
    /// # Errors
    /// `DOWNLOAD_LINK_INVALID` with the reason; infrastructure errors.
    pub async fn open(&self, token: &str) -> Result<Opened, AppError> {
        let (id, expires) = self
            .app
            .link_signer()
            .open(token)
            .ok_or_else(|| link_invalid("it is not one this server signed"))?;
        let now = self.app.now();
        if now.timestamp() >= expires {
            return Err(link_invalid("it has expired"));
        }
        let loaded: Loaded<Download> = self.app.ledger().store().read(id).await?;
        let grant = loaded
            .aggregate
            .grant()
            .cloned()
            .ok_or_else(|| link_invalid("it was never granted"))?;
        let release: Loaded<Release> = self.app.ledger().store().read(grant.release_id).await?;
        let release = release
            .aggregate
            .state()
            .cloned()
            .ok_or_else(|| link_invalid("its release does not exist"))?;
        if release.status() == ReleaseStatus::Yanked {
            return Err(link_invalid("its release was yanked"));
        }
        let artifact = release
            .artifacts
            .iter()
            .find(|a| a.artifact_id == grant.artifact_id)
            .cloned()
            .ok_or_else(|| link_invalid("its artifact does not exist"))?;
        let license: Loaded<License> = self.app.ledger().store().read(grant.license_id).await?;
        let license = license
            .aggregate
            .state()
            .ok_or_else(|| link_invalid("its license does not exist"))?;
        visibility(&release.facts(), license, &sight_of(license), now).map_err(|unseen| {
            link_invalid(&format!("the license no longer sees the release: {unseen}"))
        })?;
        Ok(Opened {
            download_id: id,
            artifact,
        })
    }

    /// Records a completed transfer through link `id` (`DownloadServed`), by the ledger itself:
    /// the link is the credential, and its grant names who received it.
    ///
    /// # Errors
    /// Infrastructure errors.
    pub async fn served(
        &self,
        id: DownloadId,
        bytes: u64,
        request_id: &str,
    ) -> Result<(), AppError> {
        let ctx = CommandContext::new(Actor::System, request_id.to_owned());
        self.app
            .ledger()
            .record_download_served(&ctx, id, bytes)
            .await?;
        Ok(())
    }

    /// A release's download links, optionally of one organization (read model).
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`, `INVALID_CURSOR`; database errors.
    pub async fn list(
        &self,
        release_id: domain::ids::ReleaseId,
        organization_id: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Listed<DownloadView>, AppError> {
        let scope = Scope::new("downloads")
            .with("release_id", Some(release_id))
            .with("organization_id", organization_id);
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        self.require_release(release_id).await?;
        let rows = projections::queries::downloads(
            self.app.pool(),
            release_id.into(),
            organization_id,
            &window,
        )
        .await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, DownloadView::from_row))
    }

    /// A release's download counts, by organization (read model).
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`; database errors.
    pub async fn release_counts(
        &self,
        release_id: domain::ids::ReleaseId,
    ) -> Result<DownloadCountsView, AppError> {
        self.require_release(release_id).await?;
        let rows = projections::queries::download_counts(self.app.pool(), release_id.into(), false)
            .await?;
        Ok(DownloadCountsView::new(release_id.into(), rows))
    }

    /// An organization's download counts, by release (read model), for those who read its
    /// licenses.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (also out of reach), 403; database errors.
    pub async fn organization_counts(
        &self,
        access: &Access,
        organization_id: OrganizationId,
    ) -> Result<DownloadCountsView, AppError> {
        self.app
            .authorize_organization(access, organization_id, Action::ReadLicenses)
            .await?;
        let rows =
            projections::queries::download_counts(self.app.pool(), organization_id.into(), true)
                .await?;
        Ok(DownloadCountsView::new(organization_id.into(), rows))
    }

    async fn require_release(&self, id: domain::ids::ReleaseId) -> Result<(), AppError> {
        let exists = self
            .app
            .ledger()
            .store()
            .read::<Release>(id)
            .await?
            .exists();
        if exists {
            Ok(())
        } else {
            Err(domain::DomainError::ReleaseNotFound(id).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_as_signed_and_by_its_own_key() {
        let signer = LinkSigner::new(&[7u8; 32]);
        let id = DownloadId::from_uuid(Uuid::now_v7());
        let expires: Timestamp = "2026-12-05T09:05:00Z".parse().unwrap();
        let token = signer.sign(id, expires);
        assert_eq!(signer.open(&token), Some((id, expires.timestamp())));
        let mut bytes = Base64UrlUnpadded::decode_vec(&token).unwrap();
        // Every byte matters: the grant, the expiry (a link extended by hand) and the tag.
        for i in 0..bytes.len() {
            bytes[i] ^= 1;
            assert_eq!(
                signer.open(&Base64UrlUnpadded::encode_string(&bytes)),
                None,
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        // Another server's links (another pepper) do not open here.
        assert_eq!(LinkSigner::new(&[8u8; 32]).open(&token), None);
        for bad in [
            "",
            "nonsense",
            &token[..token.len() - 1],
            &format!("{token}A"),
            &"A".repeat(4096),
        ] {
            assert_eq!(signer.open(bad), None, "{bad:?}");
        }
    }
}
