//! Releases as a license sees them (issue #17, DOMAIN.md "Releases and downloads"): SemVer 2.0
//! versions ordered by precedence, channels, whether a license sees a release
//! ([`visibility`]), and the path from an installed version to the newest it sees
//! ([`update_path`]). Pure functions of their arguments and the clock they are given: the
//! portal's listing, the client's "is there an update for me?" and the download links all
//! decide through them, so none shows what another refuses.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::ids::ProductId;
use crate::validation::{LicenseFacts, decide};
pub use crate::values::Channel;
use crate::values::{FeatureCode, FeatureSet, InvalidValue};

/// A release's version: SemVer 2.0 (`7.4.0`, `8.0.0-beta.2`, `1.2.3+build.5`), ordered by
/// SemVer's precedence. Build metadata takes no part in it: `1.0.0+a` and `1.0.0+b` are one
/// version (a product cannot hold both). Stored and shown as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct Version(semver::Version);

impl Version {
    /// The longest version, in bytes: what a read model's index holds with room to spare.
    pub const MAX_BYTES: usize = 300;

    /// Reads a SemVer 2.0 version, as written: no leading `v`, no missing part.
    ///
    /// # Errors
    /// Anything else, said.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.len() > Self::MAX_BYTES {
            return Err(InvalidValue::new(format!(
                "a version must be at most {} characters (got {})",
                Self::MAX_BYTES,
                s.len()
            )));
        }
        semver::Version::parse(s).map(Self).map_err(|e| {
            InvalidValue::new(format!(
                "{s:?} is not a SemVer 2.0 version (such as 7.4.0): {e}"
            ))
        })
    }

    /// A pre-release (`-beta.2`): seen on the channels that take pre-releases only.
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The version without its build metadata: what makes two versions one (the unique claim
    /// of a product's version).
    pub fn precedence_key(&self) -> String {
        let mut bare = self.0.clone();
        bare.build = semver::BuildMetadata::EMPTY;
        bare.to_string()
    }
}

impl TryFrom<String> for Version {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The versions an upgrade path starts from: a SemVer requirement (`>=7.2, <7.3`, `~7.2`). A
/// bare version means that version with its omitted parts free: `7.2` is every 7.2.x, `7.2.1`
/// exactly 7.2.1 (where Cargo would read `7.2` as `^7.2`, every 7.x from 7.2 on, which is not
/// what "from 7.2" means to a customer). Stored in SemVer's normal form (`=7.2`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct VersionRange(semver::VersionReq);

impl VersionRange {
    /// Reads a requirement.
    ///
    /// # Errors
    /// When it is not a SemVer requirement, said.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.len() > Version::MAX_BYTES {
            return Err(InvalidValue::new(format!(
                "a requirement must be at most {} characters (got {})",
                Version::MAX_BYTES,
                s.len()
            )));
        }
        let text = s.trim();
        let exact;
        let text = if text.starts_with(|c: char| c.is_ascii_digit()) {
            exact = format!("={text}");
            &exact
        } else {
            text
        };
        semver::VersionReq::parse(text).map(Self).map_err(|e| {
            InvalidValue::new(format!(
                "{s:?} is not a SemVer requirement (such as 7.2 or >=7.2, <7.3): {e}"
            ))
        })
    }

    /// Whether `version` is one of these versions.
    pub fn matches(&self, version: &Version) -> bool {
        self.0.matches(&version.0)
    }

    /// The lowest version the requirement can match, as far as its comparators bound it from
    /// below (`>=7.2, <7.3` and `7.2` give 7.2.0; `<8` gives none).
    pub fn floor(&self) -> Option<Version> {
        use semver::Op;
        self.0
            .comparators
            .iter()
            .filter(|c| {
                matches!(
                    c.op,
                    Op::Exact | Op::Greater | Op::GreaterEq | Op::Tilde | Op::Caret | Op::Wildcard
                )
            })
            .map(|c| {
                Version(semver::Version {
                    major: c.major,
                    minor: c.minor.unwrap_or(0),
                    patch: c.patch.unwrap_or(0),
                    pre: c.pre.clone(),
                    build: semver::BuildMetadata::EMPTY,
                })
            })
            .max()
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for VersionRange {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl Serialize for VersionRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What visibility reads of a release.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseFacts {
    pub product_id: ProductId,
    pub version: Version,
    pub channel: Channel,
    /// Features a license must hold, every one, to see it (an edition, a module).
    pub entitlements: FeatureSet,
    /// `None` while it is a draft.
    pub published_at: Option<Timestamp>,
    pub yanked: bool,
}

/// What visibility reads of a license, besides its validation facts.
#[derive(Clone, Debug)]
pub struct Sight {
    pub product_id: ProductId,
    /// The channels its policy allows.
    pub channels: Vec<Channel>,
    /// The end of its maintenance, if it has one.
    pub maintenance_until: Option<Timestamp>,
}

/// Why a license does not see a release: the first rule of DOMAIN.md it fails, in their order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unseen {
    /// Rule 1: a draft.
    NotPublished,
    /// Rule 1.
    Yanked,
    /// Rule 1: another product's.
    OtherProduct,
    /// Rule 2: a channel the policy does not allow.
    Channel(Channel),
    /// Rule 3: an entitlement the license lacks.
    Entitlement(FeatureCode),
    /// Rule 4: the license is not usable now (and no perpetual fallback applies).
    NotUsable,
    /// Rule 5: published after the license's maintenance ended.
    AfterMaintenance,
}

impl fmt::Display for Unseen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPublished => f.write_str("it is not published"),
            Self::Yanked => f.write_str("it was yanked"),
            Self::OtherProduct => f.write_str("it is another product's"),
            Self::Channel(c) => write!(f, "its channel {c} is not one the license's policy allows"),
            Self::Entitlement(e) => write!(
                f,
                "it needs the entitlement {}, which the license lacks",
                e.as_str()
            ),
            Self::NotUsable => f.write_str("the license is not usable now"),
            Self::AfterMaintenance => {
                f.write_str("it was published after the license's maintenance ended")
            }
        }
    }
}

/// Whether the license (`facts` for its validation, `sight` for the rest) sees `release` at
/// `now`: `Ok` when every rule of DOMAIN.md holds, else the first that does not.
///
/// Rule 4's perpetual fallback: a perpetual license (no expiry) whose maintenance has ended
/// keeps seeing the releases published while maintenance ran, as long as it is neither revoked
/// nor suspended (a suspension withholds downloads as it withholds validation).
///
/// # Errors
/// The rule the release fails, as [`Unseen`].
pub fn visibility(
    release: &ReleaseFacts,
    facts: &impl LicenseFacts,
    sight: &Sight,
    now: Timestamp,
) -> Result<(), Unseen> {
    let Some(published_at) = release.published_at else {
        return Err(Unseen::NotPublished);
    };
    if release.yanked {
        return Err(Unseen::Yanked);
    }
    if release.product_id != sight.product_id {
        return Err(Unseen::OtherProduct);
    }
    let allowed: &[Channel] = if sight.channels.is_empty() {
        &[Channel::Stable]
    } else {
        &sight.channels
    };
    if !allowed.contains(&release.channel) {
        return Err(Unseen::Channel(release.channel));
    }
    if let Some(missing) = release
        .entitlements
        .iter()
        .find(|f| !facts.features().contains(f))
    {
        return Err(Unseen::Entitlement(missing.clone()));
    }
    let usable = decide(facts, now, None, &[]).code == crate::validation::ValidationCode::Valid;
    let perpetual_fallback = facts.expires_at().is_none()
        && sight.maintenance_until.is_some_and(|end| end < now)
        && !facts.revoked()
        && !facts.suspended();
    if !usable && !perpetual_fallback {
        return Err(Unseen::NotUsable);
    }
    if sight
        .maintenance_until
        .is_some_and(|end| published_at > end)
    {
        return Err(Unseen::AfterMaintenance);
    }
    Ok(())
}

/// An artifact's file name, as customers download it (`studio-7.4.0-x86_64.msi`): at most 255
/// bytes of UTF-8, no path (`/`, `\`), no `..`, no control characters, none of the characters
/// Windows refuses in a name (`: * ? " < > |`, which would also break a `Content-Disposition`
/// header), no surrounding spaces.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Filename(String);

impl TryFrom<String> for Filename {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Filename> for String {
    fn from(v: Filename) -> String {
        v.0
    }
}

impl Filename {
    /// The longest name, in bytes (what file systems allow).
    pub const MAX_BYTES: usize = 255;

    /// Reads a file name.
    ///
    /// # Errors
    /// The rule it breaks, said.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() {
            return Err(InvalidValue::new("a file name must not be empty"));
        }
        if s.len() > Self::MAX_BYTES {
            return Err(InvalidValue::new(format!(
                "a file name must be at most {} bytes (got {})",
                Self::MAX_BYTES,
                s.len()
            )));
        }
        if s.trim() != s {
            return Err(InvalidValue::new(
                "a file name must not begin or end with spaces",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "a file name must not contain control characters",
            ));
        }
        if let Some(c) = s.chars().find(|c| "/\\:*?\"<>|".contains(*c)) {
            return Err(InvalidValue::new(format!(
                "a file name must not contain {c:?} (no paths)"
            )));
        }
        if s.contains("..") {
            return Err(InvalidValue::new("a file name must not contain \"..\""));
        }
        if s == "." || s.ends_with('.') {
            return Err(InvalidValue::new("a file name must not end with a dot"));
        }
        if s.contains('%') {
            return Err(InvalidValue::new(
                "a file name must not contain \"%\" (names are sent percent-encoded once)",
            ));
        }
        // Characters that change how a name reads without showing: direction overrides
        // ("evil\u{202e}gpj.exe" shows as "evilexe.jpg"), invisible ones, and lookalikes of
        // the slash.
        if let Some(c) = s.chars().find(|c| {
            matches!(
                *c,
                '\u{200b}'..='\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{feff}'
                    | '\u{2044}'
                    | '\u{2215}'
                    | '\u{29f8}'
                    | '\u{ff0f}'
                    | '\u{ff3c}'
            )
        }) {
            return Err(InvalidValue::new(format!(
                "a file name must not contain U+{:04X} (invisible, reordering or a lookalike of a path separator)",
                u32::from(c)
            )));
        }
        // Names Windows reserves for devices, with any extension.
        let stem = s.split('.').next().unwrap_or(s).to_ascii_uppercase();
        let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
            || (stem.len() == 4
                && (stem.starts_with("COM") || stem.starts_with("LPT"))
                && stem.as_bytes()[3].is_ascii_digit()
                && stem.as_bytes()[3] != b'0');
        if reserved {
            return Err(InvalidValue::new(format!(
                "{s:?} is a device name on Windows; name the file otherwise"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// Reads the name of a file uploaded now: [`Filename::parse`]'s rules, and those added
    /// after names were first stored, which stored names need not meet (events written
    /// before them must still load, so [`Filename::parse`] stays as it was). Windows' other
    /// device names (`COM0`, `LPT0`, `COM¹` to `LPT³`, `CONIN$`, `CONOUT$`, and a device name
    /// followed by spaces, as in `CON .txt`), the backslash lookalikes U+2216 and U+FE68, and
    /// the line and paragraph separators.
    ///
    /// # Errors
    /// The rule it breaks, said.
    pub fn parse_new(s: &str) -> Result<Self, InvalidValue> {
        let name = Self::parse(s)?;
        if let Some(c) = s
            .chars()
            .find(|c| matches!(*c, '\u{2216}' | '\u{fe68}' | '\u{2028}' | '\u{2029}'))
        {
            return Err(InvalidValue::new(format!(
                "a file name must not contain U+{:04X} (a line break or a lookalike of a path separator)",
                u32::from(c)
            )));
        }
        // Windows ignores spaces at the end of the part before the first dot.
        let stem = s
            .split('.')
            .next()
            .unwrap_or(s)
            .trim_end_matches(' ')
            .to_uppercase();
        let numbered = |prefix: &str| {
            stem.strip_prefix(prefix).is_some_and(|n| {
                matches!(
                    n,
                    "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"
                )
            })
        };
        let reserved = matches!(
            stem.as_str(),
            "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
        ) || numbered("COM")
            || numbered("LPT");
        if reserved {
            return Err(InvalidValue::new(format!(
                "{s:?} is a device name on Windows; name the file otherwise"
            )));
        }
        Ok(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A declared upgrade path: from the versions `from` matches to `to` only through `via`, in
/// order ("7.2 to 7.6 only via 7.4").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradePath {
    pub from: VersionRange,
    pub to: Version,
    pub via: Vec<Version>,
}

impl UpgradePath {
    /// The most steps a path may name.
    pub const MAX_VIA: usize = 32;

    /// A path, checked: `via` ascends strictly and stays below `to`, and `to` is not one of
    /// the versions it starts from.
    ///
    /// # Errors
    /// The rule it breaks, said.
    pub fn new(from: VersionRange, to: Version, via: Vec<Version>) -> Result<Self, InvalidValue> {
        // Build metadata takes no part in precedence: a path naming `7.6.0+b` would replace the
        // path to 7.6.0 and then name a version no release is written as.
        if let Some(v) = std::iter::once(&to)
            .chain(&via)
            .find(|v| !v.0.build.is_empty())
        {
            return Err(InvalidValue::new(format!(
                "{v}: an upgrade path names versions without build metadata"
            )));
        }
        if let Some(floor) = from.floor()
            && let Some(v) = std::iter::once(&to).chain(&via).find(|v| **v <= floor)
        {
            return Err(InvalidValue::new(format!(
                "{v} is not above {floor}, where the path starts ({from}): a path leads upwards"
            )));
        }
        if from.matches(&to) {
            return Err(InvalidValue::new(format!(
                "the path leads to {to}, which is one of the versions it starts from ({from})"
            )));
        }
        if via.len() > Self::MAX_VIA {
            return Err(InvalidValue::new(format!(
                "a path names at most {} steps (got {})",
                Self::MAX_VIA,
                via.len()
            )));
        }
        if let Some(w) = via.windows(2).find(|w| w[0] >= w[1]) {
            return Err(InvalidValue::new(format!(
                "the steps must ascend: {} comes before {}",
                w[0], w[1]
            )));
        }
        if let Some(step) = via.iter().find(|v| **v >= to || from.matches(v)) {
            return Err(InvalidValue::new(format!(
                "step {step} must lie above the versions the path starts from and below {to}"
            )));
        }
        Ok(Self { from, to, via })
    }
}

/// The versions to install, in order, to go from `installed` to the newest of `visible` (the
/// versions the license sees): through a declared path from the version reached, when one
/// leads on (every step of it visible), else the newest directly. Empty when nothing newer is
/// visible. Never a version outside `visible`.
pub fn update_path(
    installed: &Version,
    visible: &[Version],
    paths: &[UpgradePath],
) -> Vec<Version> {
    let Some(newest) = visible.iter().max() else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    let mut at = installed.clone();
    while *newest > at {
        let declared = paths.iter().find(|p| {
            p.from.matches(&at)
                && p.to > at
                && p.to <= *newest
                && visible.contains(&p.to)
                && p.via
                    .iter()
                    .all(|v| visible.contains(v) && *v > at && *v < p.to)
        });
        match declared {
            Some(path) => {
                steps.extend(path.via.iter().cloned());
                steps.push(path.to.clone());
                at = path.to.clone();
            }
            None => {
                steps.push(newest.clone());
                break;
            }
        }
    }
    steps
}

mod aggregate;
pub use aggregate::*;

#[cfg(test)]
mod tests;
