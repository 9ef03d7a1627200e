//! What goes over the wire: the request bodies the client sends, the reading of answers into
//! values or [`ClientError`]s, and where keys may be fetched from.

use serde::Serialize;

use crate::decision::Problem;
use crate::values::{Environment, Fingerprint, Label, LicenseKey};

use super::ClientError;

/// Largest answer body read, in bytes; real answers are a few KiB.
const MAX_BODY: u64 = 1024 * 1024;

/// The body of `POST /v1/validate`.
#[derive(Serialize)]
pub(super) struct ValidateBody<'a> {
    pub(super) key: &'a LicenseKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) fingerprint: Option<&'a Fingerprint>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(super) features: &'a [String],
}

/// The body of `POST /v1/activations`.
#[derive(Serialize)]
pub(super) struct ActivateBody<'a> {
    pub(super) key: &'a LicenseKey,
    pub(super) fingerprint: &'a Fingerprint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) hostname: Option<&'a Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) platform: Option<&'a Label>,
    pub(super) environment: Environment,
}

/// The body of a deactivation or a heartbeat: the key alone.
#[derive(Serialize)]
pub(super) struct KeyBody<'a> {
    pub(super) key: &'a LicenseKey,
}

/// The body of `POST /v1/offline-tokens`.
#[derive(Serialize)]
pub(super) struct OfflineTokenBody<'a> {
    pub(super) key: &'a LicenseKey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) fingerprint: Option<&'a Fingerprint>,
}

/// The member of the offline-token answer the client uses; the token says the rest.
#[derive(serde::Deserialize)]
pub(super) struct OfflineTokenAnswer {
    pub(super) token: String,
}

/// The status and the text of an answer, reading at most [`MAX_BODY`] bytes.
pub(super) fn read_answer(
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<(u16, String), ClientError> {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(transport_error)?;
    Ok((status, text))
}

/// The error for an answer with an unexpected status: a problem when the server sent one.
pub(super) fn answer_error(status: u16, text: &str) -> ClientError {
    let problem = serde_json::from_str::<Problem>(text)
        .ok()
        .filter(|p| p.code.is_some() || p.title.is_some());
    match (status, problem) {
        (500..=599, problem) => ClientError::ServerFailed(problem.unwrap_or(Problem {
            status,
            ..Problem::default()
        })),
        (400..=499, Some(mut problem)) => {
            problem.status = status;
            ClientError::Refused(problem)
        }
        // A 4xx without a problem, or a 1xx/2xx/3xx we did not expect, is not the server
        // speaking the protocol (a proxy, a captive portal, a rate limiter's plain page).
        _ => ClientError::UnexpectedResponse {
            status,
            reason: "not an answer of the license-ledger protocol".to_owned(),
        },
    }
}

pub(super) fn transport_error(error: ureq::Error) -> ClientError {
    // ureq's messages name the host and the failure, never the request body.
    ClientError::Unreachable(error.to_string())
}

/// Whether an `http://` base URL points at this machine, where plain HTTP cannot be tampered
/// with by the network.
pub(super) fn is_loopback_http(base_url: &str) -> bool {
    let Some(rest) = base_url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
