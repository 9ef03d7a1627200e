//! The tokens the server signs for client applications: offline tokens (`offline`,
//! `offline_activation`) and deactivation receipts. Their claims are the SDK's own types
//! (`client::verify::Claims`, `ReceiptClaims`): what the server writes and what the SDK verifies
//! are one definition, so a claim cannot be renamed on one side only.

use client::verify::{Claims, PolicyRef, ReceiptClaims, TokenKind};
use domain::Timestamp;
use domain::ids::{AppId, InstallationId, LicenseId};
use domain::license::LicenseState;
use domain::status::status_at;
use domain::values::{Fingerprint, LicenseModel, OfflineTokenKind};
use serde::Serialize;
use uuid::Uuid;

use crate::signing::KeyPair;

/// A signed token as the API hands it out.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedToken {
    /// The compact JWS.
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// The key that signed it (in the JWKS).
    pub kid: String,
}

/// How long a deactivation receipt is declared valid: it records a past fact, so long.
const RECEIPT_DAYS: i64 = 3650;

fn kind(kind: OfflineTokenKind) -> TokenKind {
    match kind {
        OfflineTokenKind::Offline => TokenKind::Offline,
        OfflineTokenKind::OfflineActivation => TokenKind::OfflineActivation,
    }
}

fn model(model: LicenseModel) -> client::verify::LicenseModel {
    match model {
        LicenseModel::NodeLocked => client::verify::LicenseModel::NodeLocked,
        LicenseModel::Floating => client::verify::LicenseModel::Floating,
        LicenseModel::NamedUser => client::verify::LicenseModel::NamedUser,
    }
}

/// The facts of one recorded `OfflineTokenIssued`.
pub(crate) struct Issued<'a> {
    pub jti: Uuid,
    pub kind: OfflineTokenKind,
    pub installation_id: Option<InstallationId>,
    pub fingerprint: Option<&'a Fingerprint>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The claims of an offline token for `license` (state after the token was recorded).
pub(crate) fn license_claims(
    issuer: &str,
    license_id: LicenseId,
    license: &LicenseState,
    issued: &Issued<'_>,
) -> Claims {
    Claims {
        iss: issuer.to_owned(),
        sub: license_id.into(),
        aud: (*license.app_id.as_uuid()).into(),
        iat: issued.issued_at.timestamp(),
        nbf: issued.issued_at.timestamp(),
        exp: issued.expires_at.timestamp(),
        jti: issued.jti,
        features: license
            .features
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect(),
        fingerprint: issued.fingerprint.map(|f| f.as_str().to_owned()),
        installation_id: issued.installation_id.map(Uuid::from),
        policy: Some(PolicyRef {
            id: license.policy_id.into(),
            version: license.policy_version,
            model: model(license.terms.model),
        }),
        status: Some(status_at(license, issued.issued_at).as_str().to_owned()),
        kind: kind(issued.kind),
    }
}

/// The claims of a receipt for the deactivation of `installation_id` recorded at `at`.
pub(crate) fn receipt_claims(
    issuer: &str,
    license_id: LicenseId,
    app: &AppId,
    installation_id: InstallationId,
    fingerprint: &Fingerprint,
    at: Timestamp,
) -> ReceiptClaims {
    ReceiptClaims {
        iss: Some(issuer.to_owned()),
        sub: license_id.into(),
        aud: (*app.as_uuid()).into(),
        iat: at.timestamp(),
        nbf: Some(at.timestamp()),
        exp: Some((at + chrono::Duration::days(RECEIPT_DAYS)).timestamp()),
        jti: Some(Uuid::now_v7()),
        installation_id: installation_id.into(),
        fingerprint: fingerprint.as_str().to_owned(),
        kind: TokenKind::DeactivationReceipt,
    }
}

/// Signs `claims` with `key`.
///
/// # Errors
/// When the claims hold a value that cannot be written (a bug: the server never builds one).
pub(crate) fn sign<T: Serialize>(
    key: &KeyPair,
    claims: &T,
    expires_at: Timestamp,
) -> Result<SignedToken, crate::AppError> {
    let token = key
        .sign_jwt(claims)
        .map_err(|_| crate::AppError::Invariant("token claims do not serialize"))?;
    Ok(SignedToken {
        token,
        expires_at,
        kid: key.kid.clone(),
    })
}
