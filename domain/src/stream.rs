//! Streams: which aggregate a stream of the log belongs to, and the typed id that names it.
//!
//! The `aggregate_type` column and the `scope` of unique claims are stored strings, part of the
//! contract of the log like event types: they are spelled here and nowhere else, and every reader
//! (store, projections, as-of folds, the replay tool, SQL filters) names them through
//! [`AggregateType`] and [`ClaimScope`].
//!
//! [`Stream`] ties an aggregate to its [`AggregateType`] and to its id type, so the write side
//! takes and returns `LicenseId`s, not strings that someone must parse back.

use std::fmt;
use std::str::FromStr;

use crate::ids::{
    ApiTokenId, DownloadId, LicenseId, OrganizationId, PolicyId, ProductId, ReleaseId, UserId,
};

/// The aggregate a stream belongs to: the `aggregate_type` of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateType {
    Organization,
    Product,
    Policy,
    License,
    ApiToken,
    User,
    Release,
    Download,
}

impl AggregateType {
    /// Every aggregate type, in the order the catalogue is usually listed.
    pub const ALL: [Self; 8] = [
        Self::Organization,
        Self::Product,
        Self::Policy,
        Self::License,
        Self::ApiToken,
        Self::User,
        Self::Release,
        Self::Download,
    ];

    /// The stored spelling (the `aggregate_type` column). Never renamed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "Organization",
            Self::Product => "Product",
            Self::Policy => "Policy",
            Self::License => "License",
            Self::ApiToken => "ApiToken",
            Self::User => "User",
            Self::Release => "Release",
            Self::Download => "Download",
        }
    }

    /// The type a stored spelling names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of value a unique claim makes unique across every stream (the `scope` column of
/// `unique_claims`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimScope {
    /// A product's App GUID.
    AppId,
    /// The keyed hash of a license key.
    LicenseKey,
    /// A user's email (lower case).
    UserEmail,
    /// A user's identity: `<issuer>#<subject>`.
    UserIdentity,
    /// A payment gateway's customer: `<gateway>:<customer id>`.
    GatewayCustomer,
    /// A product's release version: `<product id>/<version without build metadata>`.
    ReleaseVersion,
}

impl ClaimScope {
    /// The stored spelling. Never renamed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AppId => "app_id",
            Self::LicenseKey => "license_key",
            Self::UserEmail => "user_email",
            Self::UserIdentity => "user_identity",
            Self::GatewayCustomer => "gateway_customer",
            Self::ReleaseVersion => "release_version",
        }
    }
}

/// The `stream_id` a claim records: `<aggregate type>/<id>`.
pub fn claim_stream_id(aggregate_type: AggregateType, id: &str) -> String {
    format!("{}/{id}", aggregate_type.as_str())
}

/// The id of a stream of `aggregate_type`, read back from a claim's `stream_id`.
pub fn id_from_claim_stream<I: StreamId>(
    aggregate_type: AggregateType,
    stream_id: &str,
) -> Option<I> {
    stream_id
        .strip_prefix(aggregate_type.as_str())?
        .strip_prefix('/')?
        .parse()
        .ok()
}

/// A typed aggregate id: what names a stream (its text is the `aggregate_id` column).
pub trait StreamId:
    Copy + fmt::Debug + fmt::Display + FromStr + Eq + std::hash::Hash + Send + Sync + 'static
{
}

impl StreamId for OrganizationId {}
impl StreamId for ProductId {}
impl StreamId for PolicyId {}
impl StreamId for LicenseId {}
impl StreamId for ApiTokenId {}
impl StreamId for UserId {}
impl StreamId for ReleaseId {}
impl StreamId for DownloadId {}

/// An aggregate of the ledger: the type of its streams and the type of their ids.
pub trait Stream: cqrs_es::Aggregate {
    /// The aggregate type of its streams.
    const KIND: AggregateType;
    /// What names one of its streams.
    type Id: StreamId;
}

/// One line per aggregate: its streams' type and id, side by side so none can be mismatched.
macro_rules! streams {
    ($($aggregate:ty => $kind:ident, $id:ty;)*) => {
        $(impl Stream for $aggregate {
            const KIND: AggregateType = AggregateType::$kind;
            type Id = $id;
        })*
    };
}

streams! {
    crate::organization::Organization => Organization, OrganizationId;
    crate::product::Product => Product, ProductId;
    crate::policy::Policy => Policy, PolicyId;
    crate::license::License => License, LicenseId;
    crate::api_token::ApiToken => ApiToken, ApiTokenId;
    crate::user::User => User, UserId;
    crate::release::Release => Release, ReleaseId;
    crate::download::Download => Download, DownloadId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_types_read_back_from_their_spelling() {
        for t in AggregateType::ALL {
            assert_eq!(AggregateType::parse(t.as_str()), Some(t));
        }
        assert_eq!(AggregateType::parse("license"), None);
    }

    #[test]
    fn claim_streams_name_their_aggregate() {
        let id = LicenseId::from_uuid(uuid::Uuid::now_v7());
        let stream = claim_stream_id(AggregateType::License, &id.to_string());
        assert_eq!(stream, format!("License/{id}"));
        assert_eq!(
            id_from_claim_stream::<LicenseId>(AggregateType::License, &stream),
            Some(id)
        );
        assert_eq!(
            id_from_claim_stream::<LicenseId>(AggregateType::Product, &stream),
            None
        );
        assert_eq!(
            id_from_claim_stream::<LicenseId>(AggregateType::License, "License/nope"),
            None
        );
    }
}
