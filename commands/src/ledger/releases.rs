//! Releases and upgrade paths (ADR 0023): drafting (the version claimed for its product in the
//! same statement), recording uploaded artifacts, publishing, yanking, and a product's declared
//! upgrade paths.

use domain::ids::{ProductId, ReleaseId};
use domain::product::{Product, ProductAction, ProductCommand};
use domain::release::{
    Artifact, Notes, Release, ReleaseAction, ReleaseCommand, UpgradePath, Version,
};
use domain::values::{Channel, FeatureSet, Reason};
use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::executor::{CommandContext, Outcome};

/// A release to draft.
#[derive(Clone, Debug)]
pub struct NewRelease {
    pub product_id: ProductId,
    pub version: Version,
    pub channel: Channel,
    pub notes: Option<Notes>,
    pub entitlements: FeatureSet,
}

impl Ledger {
    /// Drafts a release of a product; the version is claimed for the product (409
    /// `RELEASE_VERSION_EXISTS` when another release holds it).
    ///
    /// # Errors
    /// Refusals (`PRODUCT_NOT_FOUND`, the claim) and infrastructure errors.
    pub async fn draft_release(
        &self,
        ctx: &CommandContext,
        input: NewRelease,
    ) -> Result<Outcome<Release>, LedgerError> {
        let id = ReleaseId::from_uuid(Uuid::now_v7());
        let product = self.product_ref(input.product_id).await?;
        let command = ReleaseCommand {
            release_id: id,
            at: self.now(),
            action: ReleaseAction::Draft {
                product,
                version: input.version,
                channel: input.channel,
                notes: input.notes,
                entitlements: input.entitlements,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    /// Records an artifact whose bytes are stored under its digest already. The same upload again
    /// records nothing (the outcome has no events).
    ///
    /// # Errors
    /// Refusals (`RELEASE_NOT_FOUND`, `RELEASE_NOT_DRAFT`, `ARTIFACT_EXISTS`) and infrastructure
    /// errors.
    pub async fn add_artifact(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
        artifact: Artifact,
    ) -> Result<Outcome<Release>, LedgerError> {
        self.change_release(ctx, id, ReleaseAction::AddArtifact(artifact))
            .await
    }

    /// Publishes a draft.
    ///
    /// # Errors
    /// Refusals (`RELEASE_NOT_DRAFT`, `RELEASE_HAS_NO_ARTIFACTS`, ...) and infrastructure errors.
    pub async fn publish_release(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
    ) -> Result<Outcome<Release>, LedgerError> {
        self.change_release(ctx, id, ReleaseAction::Publish).await
    }

    /// Yanks a published release.
    ///
    /// # Errors
    /// Refusals (`RELEASE_NOT_PUBLISHED`, `RELEASE_YANKED`, ...) and infrastructure errors.
    pub async fn yank_release(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
        reason: Reason,
    ) -> Result<Outcome<Release>, LedgerError> {
        self.change_release(ctx, id, ReleaseAction::Yank { reason })
            .await
    }

    async fn change_release(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
        action: ReleaseAction,
    ) -> Result<Outcome<Release>, LedgerError> {
        let command = ReleaseCommand {
            release_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }

    /// Declares an upgrade path of a product (replacing the steps of the same `from` and `to`).
    ///
    /// # Errors
    /// Refusals (`PRODUCT_NOT_FOUND`) and infrastructure errors.
    pub async fn declare_upgrade_path(
        &self,
        ctx: &CommandContext,
        product_id: ProductId,
        path: UpgradePath,
    ) -> Result<Outcome<Product>, LedgerError> {
        let command = ProductCommand {
            product_id,
            at: self.now(),
            action: ProductAction::DeclareUpgradePath { path },
        };
        Ok(self.store.execute(product_id, command, ctx).await?)
    }
}

/// A download link to grant.
#[derive(Clone, Debug)]
pub struct NewDownload {
    pub artifact_id: domain::ids::ArtifactId,
    pub release_id: ReleaseId,
    pub license_id: domain::ids::LicenseId,
    pub user_id: Option<domain::ids::UserId>,
    /// How long the link is valid from now.
    pub valid_for: chrono::Duration,
}

impl Ledger {
    /// Grants a download link when the license sees the release now (read from the release's
    /// and the license's streams just before; the decision is `domain::download`'s).
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`, `LICENSE_NOT_FOUND`, `RELEASE_NOT_VISIBLE`; infrastructure errors.
    /// That the artifact is the release's is the caller's to check (it read the release).
    pub async fn grant_download(
        &self,
        ctx: &CommandContext,
        input: NewDownload,
    ) -> Result<Outcome<domain::download::Download>, LedgerError> {
        use domain::DomainError;
        use domain::download::{DownloadAction, DownloadCommand};
        let (release, _) = self.store.load::<Release>(input.release_id).await?;
        let release = release
            .state()
            .ok_or(DomainError::ReleaseNotFound(input.release_id))?
            .facts();
        let (license, _) = self
            .store
            .load::<domain::license::License>(input.license_id)
            .await?;
        let license = license
            .state()
            .ok_or(DomainError::LicenseNotFound(input.license_id))?
            .clone();
        let id = domain::ids::DownloadId::from_uuid(Uuid::now_v7());
        let at = self.now();
        let command = DownloadCommand {
            download_id: id,
            at,
            action: DownloadAction::Grant {
                artifact_id: input.artifact_id,
                release_id: input.release_id,
                release,
                license_id: input.license_id,
                license: Box::new(license),
                user_id: input.user_id,
                expires_at: at + input.valid_for,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    /// Records a completed transfer of `bytes` through a granted link.
    ///
    /// # Errors
    /// A link never granted; infrastructure errors.
    pub async fn record_download_served(
        &self,
        ctx: &CommandContext,
        id: domain::ids::DownloadId,
        bytes: u64,
    ) -> Result<Outcome<domain::download::Download>, LedgerError> {
        use domain::download::{DownloadAction, DownloadCommand};
        let command = DownloadCommand {
            download_id: id,
            at: self.now(),
            action: DownloadAction::Serve { bytes },
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }
}
