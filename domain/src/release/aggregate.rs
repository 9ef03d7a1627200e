//! The Release aggregate (ADR 0023): a version of a product on a channel, drafted, given
//! immutable artifacts while a draft, published, perhaps yanked. Its stream holds its
//! artifacts, so "a file name once per release" and "uploads only to a draft" are decided on one
//! consistent state.
//!
//! That a product holds a version once is a cross-stream rule: the write side claims
//! `release_version` in the statement that appends `ReleaseDrafted`.

use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::{Filename, ReleaseFacts, Version};
use crate::Timestamp;
use crate::error::DomainError;
use crate::event::{UniqueClaim, VersionedEvent};
use crate::ids::{ArtifactId, ProductId, ReleaseId};
use crate::product::ProductRef;
use crate::stream::{AggregateType, ClaimScope};
use crate::values::{Arch, Channel, FeatureSet, InvalidValue, Platform, Reason};

/// A release's notes: what changed, as the vendor wrote it (1 to 20,000 characters; line breaks
/// and tabs allowed, other control characters not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Notes(String);

impl Notes {
    /// The longest notes, in characters.
    pub const MAX_CHARS: usize = 20_000;

    /// # Errors
    /// When empty, too long or holding control characters other than line breaks and tabs.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidValue::new("notes must not be empty; leave them out"));
        }
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidValue::new(format!(
                "notes must be at most {} characters (got {chars})",
                Self::MAX_CHARS
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(InvalidValue::new(
                "notes must not contain control characters other than line breaks and tabs",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Notes {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Notes> for String {
    fn from(v: Notes) -> String {
        v.0
    }
}

/// A SHA-256 digest, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// # Errors
    /// When `raw` is not 64 hex digits.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(raw, &mut bytes)
            .map_err(|_| InvalidValue::new("a SHA-256 digest is 64 hex digits"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Sha256Digest> for String {
    fn from(v: Sha256Digest) -> String {
        v.to_string()
    }
}

/// One immutable file of a release, as `ArtifactAdded` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub artifact_id: ArtifactId,
    pub filename: Filename,
    pub platform: Platform,
    pub arch: Arch,
    /// Bytes.
    pub size: u64,
    pub sha256: Sha256Digest,
    /// ES256 (`r || s`, base64url) over the 32 bytes of `sha256`, by key `kid` (ADR 0023).
    pub signature: String,
    pub kid: String,
}

impl Artifact {
    /// What the artifact's `signature` signs (ADR 0023): the file's digest bound to its name,
    /// platform, architecture, product and version, so a signature of one file never vouches
    /// for another release's (a yanked build passed off as a newer one). Line-based UTF-8, the
    /// same text the SDK rebuilds from the artifact as the API shows it
    /// (`docs/client-protocol.md`).
    pub fn statement(&self, product_id: ProductId, version: &Version) -> String {
        format!(
            "license-ledger artifact v1\nproduct {product_id}\nversion {version}\nfile {}\n\
             platform {}\narch {}\nsha256 {}\n",
            self.filename.as_str(),
            self.platform,
            self.arch,
            self.sha256
        )
    }

    /// Whether `other` is the same upload again: same name, bytes, platform and architecture
    /// (its id and signature are minted anew for every attempt).
    pub fn same_content(&self, other: &Self) -> bool {
        self.filename == other.filename
            && self.sha256 == other.sha256
            && self.size == other.size
            && self.platform == other.platform
            && self.arch == other.arch
    }
}

/// Where a release is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    Draft,
    Published,
    Yanked,
}

impl ReleaseStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Yanked => "yanked",
        }
    }
}

/// A command to a release.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseCommand {
    pub release_id: ReleaseId,
    pub at: Timestamp,
    pub action: ReleaseAction,
}

/// What to do to the release.
#[derive(Clone, Debug, PartialEq)]
pub enum ReleaseAction {
    Draft {
        product: ProductRef,
        version: Version,
        channel: Channel,
        notes: Option<Notes>,
        entitlements: FeatureSet,
    },
    /// Records an uploaded file (stored under its digest already).
    AddArtifact(Artifact),
    Publish,
    Yank {
        reason: Reason,
    },
}

/// Events of a release's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ReleaseEvent {
    #[serde(rename = "ReleaseDrafted")]
    Drafted {
        product_id: ProductId,
        version: Version,
        channel: Channel,
        notes: Option<Notes>,
        entitlements: FeatureSet,
    },
    #[serde(rename = "ArtifactAdded")]
    ArtifactAdded(Artifact),
    #[serde(rename = "ReleasePublished")]
    Published { published_at: Timestamp },
    #[serde(rename = "ReleaseYanked")]
    Yanked { reason: Reason },
}

impl DomainEvent for ReleaseEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Drafted { .. } => "ReleaseDrafted",
            Self::ArtifactAdded(_) => "ArtifactAdded",
            Self::Published { .. } => "ReleasePublished",
            Self::Yanked { .. } => "ReleaseYanked",
        }
        .to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl VersionedEvent for ReleaseEvent {
    const AGGREGATE_TYPE: &'static str = AggregateType::Release.as_str();
    const VERSIONS: &'static [(&'static str, &'static str)] = &[
        ("ReleaseDrafted", "1"),
        ("ArtifactAdded", "1"),
        ("ReleasePublished", "1"),
        ("ReleaseYanked", "1"),
    ];

    /// A product holds a version once (build metadata aside).
    fn unique_claims(&self) -> Vec<UniqueClaim> {
        match self {
            Self::Drafted {
                product_id,
                version,
                ..
            } => vec![UniqueClaim {
                scope: ClaimScope::ReleaseVersion.as_str(),
                value: release_version_claim(*product_id, version),
            }],
            _ => Vec::new(),
        }
    }
}

/// The value of a release's `release_version` claim: `<product id>/<version without build>`.
pub fn release_version_claim(product_id: ProductId, version: &Version) -> String {
    format!("{product_id}/{}", version.precedence_key())
}

/// The state of a drafted release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleaseState {
    pub product_id: ProductId,
    pub version: Version,
    pub channel: Channel,
    pub notes: Option<Notes>,
    pub entitlements: FeatureSet,
    /// In upload order.
    pub artifacts: Vec<Artifact>,
    pub published_at: Option<Timestamp>,
    pub yanked: Option<Reason>,
}

impl ReleaseState {
    pub const fn status(&self) -> ReleaseStatus {
        match (&self.published_at, &self.yanked) {
            (_, Some(_)) => ReleaseStatus::Yanked,
            (Some(_), None) => ReleaseStatus::Published,
            (None, None) => ReleaseStatus::Draft,
        }
    }

    /// The artifact named `filename`, if uploaded.
    pub fn artifact(&self, filename: &Filename) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| &a.filename == filename)
    }

    /// What visibility reads of it.
    pub fn facts(&self) -> ReleaseFacts {
        ReleaseFacts {
            product_id: self.product_id,
            version: self.version.clone(),
            channel: self.channel,
            entitlements: self.entitlements.clone(),
            published_at: self.published_at,
            yanked: self.yanked.is_some(),
        }
    }
}

/// The Release aggregate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Release {
    #[default]
    Undrafted,
    Drafted(ReleaseState),
}

impl Release {
    /// The state, when drafted.
    pub fn state(&self) -> Option<&ReleaseState> {
        match self {
            Self::Undrafted => None,
            Self::Drafted(s) => Some(s),
        }
    }

    /// Decides a command.
    ///
    /// # Errors
    /// The [`DomainError`] naming the refused rule.
    pub fn decide(&self, cmd: &ReleaseCommand) -> Result<Vec<ReleaseEvent>, DomainError> {
        let id = cmd.release_id;
        let state = match (&cmd.action, self) {
            (ReleaseAction::Draft { .. }, Self::Drafted(_)) => {
                return Err(DomainError::ReleaseAlreadyDrafted(id));
            }
            (
                ReleaseAction::Draft {
                    product,
                    version,
                    channel,
                    notes,
                    entitlements,
                },
                Self::Undrafted,
            ) => {
                product.require()?;
                return Ok(vec![ReleaseEvent::Drafted {
                    product_id: product.id,
                    version: version.clone(),
                    channel: *channel,
                    notes: notes.clone(),
                    entitlements: entitlements.clone(),
                }]);
            }
            (_, Self::Undrafted) => return Err(DomainError::ReleaseNotFound(id)),
            (_, Self::Drafted(state)) => state,
        };
        match &cmd.action {
            ReleaseAction::Draft { .. } => unreachable!("decided above"),
            ReleaseAction::AddArtifact(artifact) => {
                // A retry of the same upload records nothing and answers the first (ADR 0023),
                // in any status: the pipeline re-run after publishing is not refused.
                if let Some(existing) = state.artifact(&artifact.filename) {
                    return if existing.same_content(artifact) {
                        Ok(Vec::new())
                    } else {
                        Err(DomainError::ArtifactExists(
                            artifact.filename.as_str().to_owned(),
                        ))
                    };
                }
                if state.status() != ReleaseStatus::Draft {
                    return Err(DomainError::ReleaseNotDraft(id));
                }
                Ok(vec![ReleaseEvent::ArtifactAdded(artifact.clone())])
            }
            ReleaseAction::Publish => match state.status() {
                ReleaseStatus::Draft if state.artifacts.is_empty() => {
                    Err(DomainError::ReleaseHasNoArtifacts(id))
                }
                ReleaseStatus::Draft => Ok(vec![ReleaseEvent::Published {
                    published_at: cmd.at,
                }]),
                ReleaseStatus::Published | ReleaseStatus::Yanked => {
                    Err(DomainError::ReleaseNotDraft(id))
                }
            },
            ReleaseAction::Yank { reason } => match state.status() {
                ReleaseStatus::Draft => Err(DomainError::ReleaseNotPublished(id)),
                ReleaseStatus::Yanked => Err(DomainError::ReleaseYanked(id)),
                ReleaseStatus::Published => Ok(vec![ReleaseEvent::Yanked {
                    reason: reason.clone(),
                }]),
            },
        }
    }
}

impl Aggregate for Release {
    const TYPE: &'static str = AggregateType::Release.as_str();
    type Command = ReleaseCommand;
    type Event = ReleaseEvent;
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
                ReleaseEvent::Drafted {
                    product_id,
                    version,
                    channel,
                    notes,
                    entitlements,
                },
                this,
            ) => {
                *this = Self::Drafted(ReleaseState {
                    product_id,
                    version,
                    channel,
                    notes,
                    entitlements,
                    artifacts: Vec::new(),
                    published_at: None,
                    yanked: None,
                });
            }
            // Later events of a stream that was never drafted cannot be stored (decide refuses
            // them); folding ignores them rather than invent a release.
            (_, Self::Undrafted) => {}
            (ReleaseEvent::ArtifactAdded(artifact), Self::Drafted(s)) => s.artifacts.push(artifact),
            (ReleaseEvent::Published { published_at }, Self::Drafted(s)) => {
                s.published_at = Some(published_at);
            }
            (ReleaseEvent::Yanked { reason }, Self::Drafted(s)) => s.yanked = Some(reason),
        }
    }
}
