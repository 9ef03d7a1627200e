//! Validated value types: a value of these types cannot be invalid, so the aggregates never re-check.
//!
//! Each type has a private field and a `parse` constructor; `serde` goes through the same
//! constructor (`try_from`), so a malformed request body or a corrupted event payload is refused
//! with the same message.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused. The message is safe to show to an API caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidValue {
    message: String,
}

impl InvalidValue {
    /// A refusal with a human-readable reason.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The reason, for error responses.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn bounded_text(raw: &str, what: &str, max: usize) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(InvalidValue::new(format!("{what} must not be empty")));
    }
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(InvalidValue::new(format!(
            "{what} must be at most {max} characters (got {chars})"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidValue::new(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// `Serialize` as the inner string, as `#[serde(into = "String")]` would, without the clone of
/// the value it makes first: these values are serialized in every event payload, license state
/// and response that holds them.
macro_rules! serialize_as_str {
    ($($t:ty),+) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    )+};
}

serialize_as_str!(
    Name,
    Reason,
    FeatureCode,
    KeyPrefix,
    Fingerprint,
    Label,
    Email,
    Issuer,
    Subject
);

/// A display name (organization, product, policy): 1 to 200 characters, trimmed, no control
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(String);

impl Name {
    /// # Errors
    /// When the trimmed text is empty, longer than 200 characters or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "name", 200).map(Self)
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Name> for String {
    fn from(v: Name) -> String {
        v.0
    }
}

/// A name given now (a request body, a command-line argument): a [`Name`] that also shows
/// something. A name made only of invisible characters (zero-width spaces, joiners, bidi marks,
/// variation selectors...) passes [`Name`]'s rules but names nothing a person can read or find.
///
/// Kept apart from [`Name`] on purpose: stored events deserialize `Name` with the rules they were
/// written under, so a stricter rule for new input never makes a stored stream unreadable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct NewName(Name);

impl NewName {
    /// # Errors
    /// When [`Name::parse`] refuses the text, or no character of it is visible.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let name = Name::parse(raw)?;
        require_visible(name.as_str(), "name")?;
        // Bidirectional overrides, embeddings, isolates and marks reorder what follows them on
        // the screen ("Evil\u{202e}exe.gpj"), and zero-width characters make a lookalike of
        // another name: what staff read must be what was typed. Spaces stay, and so do the
        // zero-width non-joiner and joiner, which some scripts and emoji need.
        if let Some(c) = name.as_str().chars().find(|c| {
            is_invisible(*c) && !c.is_whitespace() && !matches!(*c, '\u{200C}' | '\u{200D}')
        }) {
            return Err(InvalidValue::new(format!(
                "name must not contain U+{:04X} (a character that reorders or hides text)",
                c as u32
            )));
        }
        Ok(Self(name))
    }
    /// The name, to record.
    pub fn into_name(self) -> Name {
        self.0
    }
}

impl TryFrom<String> for NewName {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<NewName> for Name {
    fn from(v: NewName) -> Name {
        v.0
    }
}

/// Refuses a text in which nothing is visible.
///
/// # Errors
/// When no character is a letter or digit (of any script) or ASCII punctuation that is not
/// whitespace, a control or format character, or another default-ignorable code point.
pub fn require_visible(text: &str, what: &str) -> Result<(), InvalidValue> {
    // Something a person can read and type back: a letter or digit of any script, or ASCII
    // punctuation. Blank-looking fillers, lone combining marks, private-use characters and
    // noncharacters show nothing one could search for.
    let shows = |c: char| !is_invisible(c) && (c.is_alphanumeric() || c.is_ascii_graphic());
    if !text.chars().any(shows) {
        return Err(InvalidValue::new(format!(
            "{what} must contain a visible character (it holds only invisible ones, such as zero-width spaces)"
        )));
    }
    Ok(())
}

/// Whitespace, controls, and Unicode's format and default-ignorable code points: characters that
/// render as nothing.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x2800
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0x16FE4
                | 0xE0000..=0xE0FFF
        )
}

/// An e-mail address, as identity providers send it in the `email` claim: 3 to 254 characters,
/// one `@` with text on both sides, no whitespace or control characters. Stored and compared with
/// ASCII letters in lower case: the ledger matches an invitation to a token's claim, and providers
/// differ in case; other characters are compared as they are.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);

impl Email {
    /// # Errors
    /// When the text is not an address of that shape.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // ASCII letters only are folded: Unicode's full lower-casing maps other characters onto
        // ASCII ones (KELVIN SIGN `K` becomes `k`), so `\u{212A}ate@corp.example` would claim
        // `kate@corp.example`'s invitation. Folded first, then bounded: what is stored parses
        // again when its event is read back.
        let lowered = raw.trim().to_ascii_lowercase();
        let text = lowered.as_str();
        let n = text.chars().count();
        if !(3..=254).contains(&n) {
            return Err(InvalidValue::new(format!(
                "email must be 3 to 254 characters (got {n})"
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || is_invisible(c)) {
            return Err(InvalidValue::new(
                "email must not contain whitespace, control or invisible characters",
            ));
        }
        match text.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(Self(text.to_owned()))
            }
            _ => Err(InvalidValue::new(
                "email must be an address such as name@example.com",
            )),
        }
    }
    /// The address, in lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

/// An OpenID Connect issuer identifier: an `https` (or, for local providers, `http`) URL of at
/// most 2048 characters, without query or fragment, compared exactly as the `iss` claim spells
/// it (OpenID Connect Discovery, section 2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Issuer(String);

impl Issuer {
    /// # Errors
    /// When the text is not such a URL.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > 2048 {
            return Err(InvalidValue::new("issuer must be 1 to 2048 characters"));
        }
        let scheme_ok = raw.starts_with("https://") || raw.starts_with("http://");
        if !scheme_ok
            || raw.contains(['?', '#'])
            || raw.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidValue::new(
                "issuer must be an http(s) URL without query, fragment or whitespace",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The issuer, as the `iss` claim spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Issuer {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Issuer> for String {
    fn from(v: Issuer) -> String {
        v.0
    }
}

/// The `sub` claim: the identity provider's stable, case-sensitive identifier of a person, at
/// most 255 ASCII characters (OpenID Connect Core, section 2), no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Subject(String);

impl Subject {
    /// # Errors
    /// When the text is empty, longer than 255 characters, or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.chars().count() > 255 || raw.chars().any(char::is_control) {
            return Err(InvalidValue::new(
                "subject must be 1 to 255 characters without control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The subject.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Subject {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Subject> for String {
    fn from(v: Subject) -> String {
        v.0
    }
}

/// Why an administrator acted (suspension, revocation): 1 to 500 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Reason(String);

impl Reason {
    /// # Errors
    /// When the trimmed text is empty, longer than 500 characters or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "reason", 500).map(Self)
    }
    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Reason {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Reason> for String {
    fn from(v: Reason) -> String {
        v.0
    }
}

/// An entitlement code (`pro`, `export.pdf`, `FeatureX`): 1 to 64 characters of ASCII letters,
/// digits and `_ . : -`, starting with a letter or digit. Case-sensitive.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct FeatureCode(String);

impl FeatureCode {
    /// # Errors
    /// When the code is empty, too long, or uses other characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok_first = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let ok_rest = raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !ok_first || !ok_rest || raw.len() > 64 {
            return Err(InvalidValue::new(format!(
                "feature code {raw:?} must be 1-64 ASCII letters, digits or _.:- starting with a letter or digit"
            )));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FeatureCode {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<FeatureCode> for String {
    fn from(v: FeatureCode) -> String {
        v.0
    }
}

/// A set of entitlement codes, at most 256, kept sorted so equal sets serialize identically.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "Vec<FeatureCode>")]
pub struct FeatureSet(BTreeSet<FeatureCode>);

/// As the `Vec<FeatureCode>` it deserializes from, in the set's (sorted) order, without the
/// copy of every code that `#[serde(into = ...)]` makes (serde's `into` clones the value first):
/// states with features are serialized once per event and once per write of a read model.
impl Serialize for FeatureSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

impl FeatureSet {
    /// The largest number of codes one license or policy may carry.
    pub const MAX: usize = 256;

    /// Builds a set; duplicates collapse.
    ///
    /// # Errors
    /// When more than [`FeatureSet::MAX`] distinct codes are given.
    pub fn new(codes: impl IntoIterator<Item = FeatureCode>) -> Result<Self, InvalidValue> {
        let set: BTreeSet<FeatureCode> = codes.into_iter().collect();
        if set.len() > Self::MAX {
            return Err(InvalidValue::new(format!(
                "at most {} features are allowed (got {})",
                Self::MAX,
                set.len()
            )));
        }
        Ok(Self(set))
    }

    /// Parses codes from text.
    ///
    /// # Errors
    /// When a code is malformed or there are too many.
    pub fn parse<S: AsRef<str>>(codes: &[S]) -> Result<Self, InvalidValue> {
        let parsed = codes
            .iter()
            .map(|c| FeatureCode::parse(c.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parsed)
    }

    /// Whether the set holds `code`.
    pub fn contains(&self, code: &FeatureCode) -> bool {
        self.0.contains(code)
    }
    /// The codes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &FeatureCode> {
        self.0.iter()
    }
    /// Number of codes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<Vec<FeatureCode>> for FeatureSet {
    type Error = InvalidValue;
    fn try_from(codes: Vec<FeatureCode>) -> Result<Self, Self::Error> {
        Self::new(codes)
    }
}
impl From<FeatureSet> for Vec<FeatureCode> {
    fn from(v: FeatureSet) -> Vec<FeatureCode> {
        v.0.into_iter().collect()
    }
}

/// A number of seats (maximum concurrent activations): 1 to 1,000,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct SeatCount(u32);

impl SeatCount {
    /// The largest seat count a license may have.
    pub const MAX: u32 = 1_000_000;

    /// # Errors
    /// When `seats` is 0 or above [`SeatCount::MAX`].
    pub fn new(seats: u32) -> Result<Self, InvalidValue> {
        if seats == 0 || seats > Self::MAX {
            return Err(InvalidValue::new(format!(
                "seats must be between 1 and {} (got {seats})",
                Self::MAX
            )));
        }
        Ok(Self(seats))
    }
    /// The count.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for SeatCount {
    type Error = InvalidValue;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}
impl From<SeatCount> for u32 {
    fn from(v: SeatCount) -> u32 {
        v.0
    }
}

/// The readable prefix of a product's license keys: 2 to 8 upper-case ASCII letters or digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// # Errors
    /// When the prefix is not 2-8 upper-case letters or digits.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (2..=8).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(InvalidValue::new(format!(
                "key prefix {raw:?} must be 2-8 upper-case letters or digits"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The default prefix for a product: the first letters and digits of its name, upper-cased
    /// (`"Acme Studio"` -> `"ACMEST"`), or `"LIC"` when the name has too few.
    pub fn from_product_name(name: &Name) -> Self {
        let derived: String = name
            .as_str()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .take(6)
            .collect();
        Self::parse(&derived).unwrap_or_else(|_| Self("LIC".to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyPrefix {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<KeyPrefix> for String {
    fn from(v: KeyPrefix) -> String {
        v.0
    }
}

/// A device, VM, container or tenant identifier chosen by the client application: 1 to 256 ASCII
/// letters, digits and `- _ . : + / =` (hashes in hex or base64 fit).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// # Errors
    /// When the text is empty, longer than 256 characters, or uses other characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= 256
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b));
        if !ok {
            return Err(InvalidValue::new(
                "a fingerprint is 1-256 ASCII letters, digits or - _ . : + / =",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    /// The fingerprint.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Fingerprint> for String {
    fn from(v: Fingerprint) -> String {
        v.0
    }
}

/// A short free text from a client (hostname, platform): 1 to 255 characters, no control
/// characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Label(String);

impl Label {
    /// # Errors
    /// When the trimmed text is empty, longer than 255 characters or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        bounded_text(raw, "the value", 255).map(Self)
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Label {
    type Error = InvalidValue;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}
impl From<Label> for String {
    fn from(v: Label) -> String {
        v.0
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every accepted spelling, for error messages.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            /// The stable text of this value (API and events).
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// # Errors
            /// When `raw` is not one of [`Self::ALL`].
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                match raw {
                    $($text => Ok(Self::$variant),)+
                    other => Err(InvalidValue::new(format!(
                        "{other:?} is not one of {}", Self::ALL.join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// The channel a release is published on; a policy says which its licenses see (`stable`
    /// when it says nothing; `domain::release`).
    Channel { Stable => "stable", Lts => "lts", Beta => "beta" }
);

text_enum!(
    /// The operating system an artifact is built for (`any`: every one).
    Platform { Windows => "windows", Linux => "linux", Macos => "macos", Any => "any" }
);
text_enum!(
    /// The processor architecture an artifact is built for (`any`: every one).
    Arch { X86_64 => "x86_64", Arm64 => "arm64", Any => "any" }
);

text_enum!(
    /// What an organization is to the vendor.
    OrganizationKind { Customer => "customer", Partner => "partner", Vendor => "vendor" }
);
text_enum!(
    /// What a product is.
    ProductKind {
        Application => "application",
        Plugin => "plugin",
        Feature => "feature",
        CloudService => "cloud_service",
    }
);
text_enum!(
    /// How a license's seats are counted.
    LicenseModel { NodeLocked => "node_locked", Floating => "floating", NamedUser => "named_user" }
);
text_enum!(
    /// Where an installation runs; some licenses allow extra test instances.
    Environment { Production => "production", Test => "test" }
);
text_enum!(
    /// Roles: vendor staff's (over everything) and customers' (held at an organization, over
    /// its subtree); what each may do is [`Role::actions`](crate::reach).
    Role {
        VendorAdmin => "vendor_admin",
        VendorSupport => "vendor_support",
        VendorAuditor => "vendor_auditor",
        CustomerAdmin => "customer_admin",
        LicenseManager => "license_manager",
        DownloadManager => "download_manager",
        SupportContact => "support_contact",
        BillingAdmin => "billing_admin",
    }
);
text_enum!(
    /// Why an installation stopped using a seat.
    DeactivationReason {
        Client => "client",
        Admin => "admin",
        OfflineRequest => "offline_request",
    }
);
text_enum!(
    /// Why a license was revoked, for reporting (LicenseRevoked v2; v1 events read as
    /// `unspecified`).
    RevocationCategory {
        Fraud => "fraud",
        Refund => "refund",
        ContractEnded => "contract_ended",
        Unspecified => "unspecified",
    }
);
text_enum!(
    /// What an offline token is for.
    OfflineTokenKind { Offline => "offline", OfflineActivation => "offline_activation" }
);
text_enum!(
    /// How a license came to be.
    LicenseSource { Admin => "admin", Stripe => "stripe", Import => "import" }
);

impl Platform {
    /// Whether a file built for `self` runs on `wanted`: the same platform, or `any`.
    pub fn runs_on(self, wanted: Self) -> bool {
        self == wanted || self == Self::Any
    }
}

impl Arch {
    /// Whether a file built for `self` runs on `wanted`: the same architecture, or `any`.
    pub fn runs_on(self, wanted: Self) -> bool {
        self == wanted || self == Self::Any
    }
}

impl ProductKind {
    /// Plugins and features extend a parent product and must name it.
    pub const fn requires_parent(self) -> bool {
        matches!(self, Self::Plugin | Self::Feature)
    }
    /// Only applications and cloud services can be parents.
    pub const fn can_be_parent(self) -> bool {
        matches!(self, Self::Application | Self::CloudService)
    }
}

#[cfg(test)]
mod tests;
