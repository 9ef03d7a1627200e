//! The Download aggregate (ADR 0023): one signed download link and what was served through it,
//! in a stream of its own (`Download/<grant id>`) so downloads never lengthen a license's
//! stream.
//!
//! A link is granted only to a license that sees the release at that instant: the command
//! carries the release's and the license's facts as the write side read them, and the decision
//! asks [`crate::release::visibility`]. No link exists for a release its license does not see
//! (property-tested in `download/tests.rs`).

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::error::DomainError;
use crate::event::VersionedEvent;
use crate::ids::{ArtifactId, DownloadId, LicenseId, OrganizationId, ReleaseId, UserId};
use crate::license::LicenseState;
use crate::release::{ReleaseFacts, Sight, visibility};
use crate::stream::AggregateType;

/// The most transfers one link records (`DownloadServed`); later ones are served, not recorded.
pub const MAX_SERVED: u32 = 16;

/// What a license sees of releases: its product, its policy's channels, its maintenance.
pub fn sight_of(license: &LicenseState) -> Sight {
    Sight {
        product_id: license.product_id,
        channels: license.terms.channels.clone(),
        maintenance_until: license.maintenance_until,
    }
}

/// A command to a download link.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadCommand {
    pub download_id: DownloadId,
    pub at: Timestamp,
    pub action: DownloadAction,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadAction {
    /// Grants a link to `artifact_id` of `release` for `license`, valid until `expires_at`.
    Grant {
        artifact_id: ArtifactId,
        release_id: ReleaseId,
        release: ReleaseFacts,
        license_id: LicenseId,
        license: Box<LicenseState>,
        user_id: Option<UserId>,
        expires_at: Timestamp,
    },
    /// Records a completed transfer of `bytes` through the link.
    Serve { bytes: u64 },
}

/// Events of a download link's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DownloadEvent {
    #[serde(rename = "DownloadGranted")]
    Granted {
        artifact_id: ArtifactId,
        /// The artifact's release (per-release counts without a join).
        release_id: ReleaseId,
        license_id: LicenseId,
        /// The license's organization when the link was granted (per-organization counts
        /// stay with who downloaded, whatever later transfers do).
        organization_id: OrganizationId,
        user_id: Option<UserId>,
        expires_at: Timestamp,
    },
    #[serde(rename = "DownloadServed")]
    Served { bytes: u64 },
}

impl DomainEvent for DownloadEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Granted { .. } => "DownloadGranted",
            Self::Served { .. } => "DownloadServed",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for DownloadEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::Download.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] =
        &[("DownloadGranted", "1"), ("DownloadServed", "1")];
}

/// A granted link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub artifact_id: ArtifactId,
    pub release_id: ReleaseId,
    pub license_id: LicenseId,
    pub organization_id: OrganizationId,
    pub user_id: Option<UserId>,
    pub expires_at: Timestamp,
    /// Completed transfers so far.
    pub served: u32,
}

/// The Download aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Download {
    #[default]
    Ungranted,
    Granted(Grant),
}

impl Download {
    /// The grant, once granted.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Self::Ungranted => None,
            Self::Granted(g) => Some(g),
        }
    }

    /// Decides a command.
    ///
    /// # Errors
    /// `RELEASE_NOT_VISIBLE` naming the rule the release fails for the license; a second grant
    /// of one id; a transfer through a link never granted.
    pub fn decide(&self, cmd: &DownloadCommand) -> Result<Vec<DownloadEvent>, DomainError> {
        match (&cmd.action, self) {
            (
                DownloadAction::Grant {
                    artifact_id,
                    release_id,
                    release,
                    license_id,
                    license,
                    user_id,
                    expires_at,
                },
                Self::Ungranted,
            ) => {
                visibility(release, license.as_ref(), &sight_of(license), cmd.at)
                    .map_err(DomainError::ReleaseNotVisible)?;
                Ok(vec![DownloadEvent::Granted {
                    artifact_id: *artifact_id,
                    release_id: *release_id,
                    license_id: *license_id,
                    organization_id: license.organization_id,
                    user_id: *user_id,
                    expires_at: *expires_at,
                }])
            }
            (DownloadAction::Grant { .. }, Self::Granted(_)) => {
                Err(DomainError::DownloadAlreadyGranted(cmd.download_id))
            }
            (DownloadAction::Serve { .. }, Self::Ungranted) => {
                Err(DomainError::DownloadNotGranted(cmd.download_id))
            }
            // A link records its first transfers only: whoever holds it cannot write events
            // without end (a flood of tiny ranges), and a link lasts minutes anyway.
            (DownloadAction::Serve { .. }, Self::Granted(g)) if g.served >= MAX_SERVED => {
                Ok(Vec::new())
            }
            (DownloadAction::Serve { bytes }, Self::Granted(_)) => {
                Ok(vec![DownloadEvent::Served { bytes: *bytes }])
            }
        }
    }
}

impl Aggregate for Download {
    const TYPE: &'static str = AggregateType::Download.as_str();
    type Command = DownloadCommand;
    type Event = DownloadEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match (event, self) {
            (
                DownloadEvent::Granted {
                    artifact_id,
                    release_id,
                    license_id,
                    organization_id,
                    user_id,
                    expires_at,
                },
                this,
            ) => {
                *this = Self::Granted(Grant {
                    artifact_id,
                    release_id,
                    license_id,
                    organization_id,
                    user_id,
                    expires_at,
                    served: 0,
                });
            }
            (DownloadEvent::Served { .. }, Self::Granted(g)) => {
                g.served = g.served.saturating_add(1);
            }
            // A transfer through a link never granted cannot be stored (decide refuses it).
            (DownloadEvent::Served { .. }, Self::Ungranted) => {}
        }
    }
}

#[cfg(test)]
mod tests;
