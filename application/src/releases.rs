//! Releases as a use case (ADR 0023): drafting, streamed uploads stored under their digest and
//! signed by the server's current key, publishing, yanking, upgrade paths; read back by folding
//! the release's stream (read-your-writes), listed from `rm_releases`.

use base64ct::{Base64UrlUnpadded, Encoding};
use bytes::Bytes;
use commands::ledger::NewRelease;
use commands::{CommandContext, Loaded, Outcome};
use domain::DomainError;
use domain::ids::{ArtifactId, ProductId, ReleaseId};
use domain::product::Product;
use domain::release::{Artifact, Filename, Release, ReleaseStatus, UpgradePath};
use domain::values::{Arch, Platform, Reason};
use futures_util::Stream;
use projections::queries;
use uuid::Uuid;

use crate::artifacts::UploadError;
use crate::lists::{Listed, PageRequest, Scope};
use crate::views::{ArtifactView, ReleaseView, UpgradePathsView, Written};
use crate::{App, AppError};

/// An upload: where it goes and what it is.
#[derive(Clone, Debug)]
pub struct Upload {
    pub release_id: ReleaseId,
    pub filename: Filename,
    pub platform: Platform,
    pub arch: Arch,
}

/// The release use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Releases<'a> {
    app: &'a App,
}

impl App {
    /// The release use cases.
    pub fn releases(&self) -> Releases<'_> {
        Releases { app: self }
    }
}

fn release_written(o: &Outcome<Release>) -> Result<Written<ReleaseView>, AppError> {
    let state = o
        .aggregate
        .state()
        .ok_or(AppError::Invariant("a release command left no state"))?;
    Ok(Written {
        view: ReleaseView::new(o.id.into(), state, o.created_at, o.updated_at),
        replayed: o.replayed,
    })
}

impl Releases<'_> {
    /// Drafts a release; its version is claimed for the product.
    ///
    /// # Errors
    /// Refusals (`PRODUCT_NOT_FOUND`, `RELEASE_VERSION_EXISTS`) and infrastructure errors.
    pub async fn create(
        &self,
        ctx: &CommandContext,
        input: NewRelease,
    ) -> Result<Written<ReleaseView>, AppError> {
        release_written(&self.app.ledger().draft_release(ctx, input).await?)
    }

    /// A release now, from its stream.
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`; database and decoding errors.
    pub async fn get(&self, id: ReleaseId) -> Result<ReleaseView, AppError> {
        let loaded: Loaded<Release> = self.app.ledger().store().read(id).await?;
        let state = loaded
            .aggregate
            .state()
            .ok_or(DomainError::ReleaseNotFound(id))?;
        Ok(ReleaseView::new(
            id.into(),
            state,
            loaded.created_at,
            loaded.updated_at,
        ))
    }

    /// A product's releases (read model), optionally of one version as written.
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`, `INVALID_CURSOR`; database errors.
    pub async fn list(
        &self,
        product_id: ProductId,
        version: Option<String>,
        page: PageRequest,
    ) -> Result<Listed<ReleaseView>, AppError> {
        let scope = Scope::new("releases")
            .with("product_id", Some(product_id))
            .with("version", version.as_deref());
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let exists = self
            .app
            .ledger()
            .store()
            .read::<Product>(product_id)
            .await?
            .exists();
        if !exists {
            return Err(DomainError::ProductNotFound(product_id).into());
        }
        let rows = queries::releases(
            self.app.pool(),
            product_id.into(),
            version.as_deref(),
            &window,
        )
        .await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, ReleaseView::from_row))
    }

    /// Stores an uploaded file under its digest, signs the digest with the current key and
    /// records the artifact. The same file again under the same name answers the recorded
    /// artifact as a replay, recording nothing (ADR 0023).
    ///
    /// The release is read before the body: an upload it would refuse (no such release, not a
    /// draft) is refused before a byte is stored.
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`, `RELEASE_NOT_DRAFT`, `ARTIFACT_EXISTS`; [`AppError::Upload`] for a
    /// body that is too large, empty, stalled or broken off; infrastructure errors.
    pub async fn upload<S, E>(
        &self,
        ctx: &CommandContext,
        upload: Upload,
        body: S,
    ) -> Result<Written<ArtifactView>, AppError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let id = upload.release_id;
        let before: Loaded<Release> = self.app.ledger().store().read(id).await?;
        let state = before
            .aggregate
            .state()
            .ok_or(DomainError::ReleaseNotFound(id))?;
        if state.status() != ReleaseStatus::Draft && state.artifact(&upload.filename).is_none() {
            return Err(DomainError::ReleaseNotDraft(id).into());
        }
        let placed = self
            .app
            .artifacts()
            .put(body, self.app.max_artifact_bytes())
            .await?;
        let stored = placed.stored;
        let key = self.app.signing().current();
        let mut artifact = Artifact {
            artifact_id: ArtifactId::from_uuid(Uuid::now_v7()),
            filename: upload.filename,
            platform: upload.platform,
            arch: upload.arch,
            size: stored.size,
            sha256: stored.sha256,
            signature: String::new(),
            kid: key.kid.clone(),
        };
        // The release's product and version cannot change, so the state read before the body
        // names them as the append will.
        let statement = artifact.statement(state.product_id, &state.version);
        artifact.signature =
            Base64UrlUnpadded::encode_string(&key.sign_bytes(statement.as_bytes()));
        let o = match self
            .app
            .ledger()
            .add_artifact(ctx, id, artifact.clone())
            .await
        {
            Ok(o) => o,
            Err(refused) => {
                // Nothing records these bytes (the name was taken a moment before, the release
                // published meanwhile, the database went away): their file goes too, unless
                // another event names the same bytes. Under the digest's lock (`placed`).
                if let Err(e) = self
                    .app
                    .artifacts()
                    .forget_unless_named(self.app.pool(), &stored.sha256)
                    .await
                {
                    tracing::warn!(error = %e, sha256 = %stored.sha256, "an unrecorded upload's file stays until the next start");
                }
                return Err(refused.into());
            }
        };
        drop(placed.held);
        let state = o
            .aggregate
            .state()
            .ok_or(AppError::Invariant("an artifact command left no state"))?;
        let recorded = state
            .artifact(&artifact.filename)
            .ok_or(AppError::Invariant(
                "an accepted artifact is not in its release",
            ))?;
        Ok(Written {
            view: ArtifactView::new(id.into(), state, recorded),
            replayed: o.replayed || o.events.is_empty(),
        })
    }

    /// Publishes a draft.
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`, `RELEASE_NOT_DRAFT`, `RELEASE_HAS_NO_ARTIFACTS`; infrastructure
    /// errors.
    pub async fn publish(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
    ) -> Result<Written<ReleaseView>, AppError> {
        release_written(&self.app.ledger().publish_release(ctx, id).await?)
    }

    /// Yanks a published release: gone from listings, its links refused, its history and files
    /// kept.
    ///
    /// # Errors
    /// `RELEASE_NOT_FOUND`, `RELEASE_NOT_PUBLISHED`, `RELEASE_YANKED`; infrastructure errors.
    pub async fn yank(
        &self,
        ctx: &CommandContext,
        id: ReleaseId,
        reason: Reason,
    ) -> Result<Written<ReleaseView>, AppError> {
        release_written(&self.app.ledger().yank_release(ctx, id, reason).await?)
    }

    /// Declares an upgrade path of a product; answers all of the product's paths.
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`; infrastructure errors.
    pub async fn declare_upgrade_path(
        &self,
        ctx: &CommandContext,
        product_id: ProductId,
        path: UpgradePath,
    ) -> Result<Written<UpgradePathsView>, AppError> {
        let o = self
            .app
            .ledger()
            .declare_upgrade_path(ctx, product_id, path)
            .await?;
        let state = o
            .aggregate
            .state()
            .ok_or(AppError::Invariant("a product command left no state"))?;
        Ok(Written {
            view: UpgradePathsView::new(product_id.into(), &state.upgrade_paths),
            replayed: o.replayed,
        })
    }

    /// A product's upgrade paths, from its stream.
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`; database and decoding errors.
    pub async fn upgrade_paths(&self, product_id: ProductId) -> Result<UpgradePathsView, AppError> {
        let loaded: Loaded<Product> = self.app.ledger().store().read(product_id).await?;
        let state = loaded
            .aggregate
            .state()
            .ok_or(DomainError::ProductNotFound(product_id))?;
        Ok(UpgradePathsView::new(
            product_id.into(),
            &state.upgrade_paths,
        ))
    }
}

impl From<UploadError> for AppError {
    fn from(e: UploadError) -> Self {
        Self::Upload(e)
    }
}

/// What a client application asks: "is there an update for me?" (`POST /v1/updates`).
#[derive(Clone, Debug)]
pub struct UpdateQuery {
    pub license_id: domain::ids::LicenseId,
    pub current_version: domain::release::Version,
    pub platform: Platform,
    pub arch: Arch,
    /// Only releases of this channel (which the license's policy must allow).
    pub channel: Option<domain::values::Channel>,
}

/// A published release as the read model holds it, read back into what visibility asks.
pub(crate) fn release_facts(
    row: &projections::queries::ReleaseRow,
) -> Option<domain::release::ReleaseFacts> {
    Some(domain::release::ReleaseFacts {
        product_id: ProductId::from_uuid(row.product_id),
        version: domain::release::Version::parse(&row.release_version).ok()?,
        channel: domain::values::Channel::parse(&row.channel).ok()?,
        entitlements: domain::values::FeatureSet::parse(&row.entitlements).ok()?,
        published_at: row.published_at,
        yanked: row.status == "yanked",
    })
}

/// Whether an artifact built for `(platform, arch)` runs on `(want_platform, want_arch)`.
/// Whether an artifact of the read model runs on `platform` (and `arch`, when given): the rule
/// is `domain`'s (`Platform::runs_on`, `Arch::runs_on`).
pub(crate) fn runs_on(
    row: &projections::queries::ArtifactRow,
    platform: Platform,
    arch: Option<Arch>,
) -> bool {
    Platform::parse(&row.platform).is_ok_and(|p| p.runs_on(platform))
        && arch.is_none_or(|arch| Arch::parse(&row.arch).is_ok_and(|a| a.runs_on(arch)))
}

impl Releases<'_> {
    /// The update path of a license's installation: from `current_version` to the newest
    /// release the license sees now that has a file for the platform, through declared upgrade
    /// paths. The next version to install comes with download links to its files (granted, so
    /// each is an event); the newest is named, with links only when it is the next.
    ///
    /// Visibility is decided over the read model's published releases; each link is granted
    /// against the release's and the license's streams, so a release the read model still
    /// shows after its yank is dropped and the path decided again without it.
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND`; database errors.
    pub async fn updates(
        &self,
        ctx: &CommandContext,
        query: UpdateQuery,
    ) -> Result<crate::views::UpdateView, AppError> {
        use domain::license::License;
        let loaded: Loaded<License> = self.app.ledger().store().read(query.license_id).await?;
        let license = loaded
            .aggregate
            .state()
            .ok_or(DomainError::LicenseNotFound(query.license_id))?
            .clone();
        let now = self.app.now();
        let sight = domain::download::sight_of(&license);
        let rows = queries::published_releases(self.app.pool(), license.product_id.into()).await?;
        let mut seen: Vec<(domain::release::Version, projections::queries::ReleaseRow)> = rows
            .into_iter()
            .filter(|r| {
                r.artifacts
                    .iter()
                    .any(|a| runs_on(a, query.platform, Some(query.arch)))
            })
            .filter_map(|r| {
                let facts = release_facts(&r)?;
                let wanted = query.channel.is_none_or(|c| c == facts.channel);
                (wanted && domain::release::visibility(&facts, &license, &sight, now).is_ok())
                    .then_some((facts.version, r))
            })
            .collect();
        let product: Loaded<Product> = self.app.ledger().store().read(license.product_id).await?;
        let paths = product
            .aggregate
            .state()
            .map(|p| p.upgrade_paths.clone())
            .unwrap_or_default();
        loop {
            let versions: Vec<domain::release::Version> =
                seen.iter().map(|(v, _)| v.clone()).collect();
            let path = domain::release::update_path(&query.current_version, &versions, &paths);
            let (Some(next), Some(newest)) = (path.first(), path.last()) else {
                return Ok(crate::views::UpdateView {
                    update_available: false,
                    next: None,
                    latest: None,
                    path: Vec::new(),
                });
            };
            let row_of = |v: &domain::release::Version| {
                seen.iter()
                    .find(|(seen, _)| seen == v)
                    .map(|(_, row)| row.clone())
                    .ok_or(AppError::Invariant(
                        "the update path left the visible versions",
                    ))
            };
            let (next_row, newest_row) = (row_of(next)?, row_of(newest)?);
            match self.linked(ctx, &query, &next_row).await {
                Ok(next_view) => {
                    let latest = if newest == next {
                        next_view.clone()
                    } else {
                        crate::views::LatestView::unlinked(&newest_row)
                    };
                    return Ok(crate::views::UpdateView {
                        update_available: true,
                        next: Some(next_view),
                        latest: Some(latest),
                        path: path.iter().map(ToString::to_string).collect(),
                    });
                }
                // The read model still showed it; the log says it is gone (yanked a moment
                // ago): decide without it.
                Err(AppError::Command(commands::CommandError::Rejected(
                    DomainError::ReleaseNotVisible(_),
                ))) => {
                    let gone = next.clone();
                    seen.retain(|(v, _)| *v != gone);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// `row` with a download link granted for each of its files for the platform.
    async fn linked(
        &self,
        ctx: &CommandContext,
        query: &UpdateQuery,
        row: &projections::queries::ReleaseRow,
    ) -> Result<crate::views::LatestView, AppError> {
        let mut artifacts = Vec::new();
        for a in row
            .artifacts
            .iter()
            .filter(|a| runs_on(a, query.platform, Some(query.arch)))
        {
            let o = self
                .app
                .ledger()
                .grant_download(
                    ctx,
                    commands::ledger::NewDownload {
                        artifact_id: ArtifactId::from_uuid(a.id),
                        release_id: ReleaseId::from_uuid(row.id),
                        license_id: query.license_id,
                        user_id: None,
                        valid_for: crate::downloads::LINK_TTL,
                    },
                )
                .await?;
            let grant = o
                .aggregate
                .grant()
                .ok_or(AppError::Invariant("a grant left no state"))?;
            let token = self.app.link_signer().sign(o.id, grant.expires_at);
            artifacts.push(crate::views::UpdateArtifactView {
                artifact: ArtifactView::from_row(a.clone(), row.product_id, &row.release_version),
                url: format!("{}/v1/downloads/{token}", self.app.public_url()),
                expires_at: grant.expires_at,
            });
        }
        Ok(crate::views::LatestView {
            version: row.release_version.clone(),
            channel: row.channel.clone(),
            notes: row.notes.clone(),
            published_at: row.published_at,
            artifacts,
        })
    }
}
