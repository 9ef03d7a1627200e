//! Downloads (ADR 0023): `POST /v1/artifacts/{id}/download-links` grants a short-lived signed
//! link to a license that sees the release; `GET /v1/downloads/{token}` serves the bytes to
//! whoever holds the link, with `Range`, `ETag` and `Repr-Digest`, and records each completed
//! transfer (`DownloadServed`).
//!
//! The transfer streams the file from disk a block at a time, so memory stays flat whatever
//! the file's size and the number of downloads; it runs under no deadline (a 2 GiB download
//! takes minutes) and is limited per address like the client routes.

use std::pin::Pin;
use std::task::{Context, Poll};

use application::App;
use application::views::{DownloadCountsView, DownloadLinkView};
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use bytes::Bytes;
use domain::ErrorCode;
use domain::ids::{ArtifactId, DownloadId, LicenseId, OrganizationId, ReleaseId};
use futures_util::Stream;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, Downloads, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::request_id::RequestId;
use crate::state::AppState;

/// The link route (administration group: bearer tokens and users).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_download_link))
        .routes(routes!(list_downloads))
        .routes(routes!(release_download_counts))
        .routes(routes!(organization_download_counts))
        .routes(routes!(organization_releases))
}

/// The download itself (no credentials but the link; limited per address).
pub fn download_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    /// The license the download is for: it must see the artifact's release now.
    #[schema(value_type = uuid::Uuid)]
    license_id: LicenseId,
}

/// Grants a download link: valid for 300 seconds, for the holder of the link alone, recorded
/// as `DownloadGranted`.
#[utoipa::path(post, path = "/v1/artifacts/{id}/download-links", tag = "releases", summary = "Grant a download link",
    params(("id" = uuid::Uuid, Path, description = "The artifact")),
    request_body = LinkBody,
    responses(
        (status = 201, description = "Granted", body = DownloadLinkView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 422, response = Problem),
    ))]
async fn create_download_link(
    State(state): State<AppState>,
    PathParam(raw): PathParam,
    cmd: Command<LinkBody, Downloads>,
) -> Result<Response, ApiError> {
    let artifact: ArtifactId = path_id(&raw, ErrorCode::ArtifactNotFound, "artifact")?;
    let written = state
        .app
        .downloads()
        .grant(
            &cmd.principal.access,
            &cmd.context,
            artifact,
            cmd.body.license_id,
        )
        .await?;
    Ok(answer(StatusCode::CREATED, None, written))
}

/// A release's download links, oldest first, a page at a time (vendor staff).
#[utoipa::path(get, path = "/v1/releases/{id}/downloads", tag = "releases", summary = "List a release's download links",
    params(
        ("id" = uuid::Uuid, Path, description = "The release"),
        ("organization_id" = Option<uuid::Uuid>, Query, description = "Only links granted for this organization's licenses"),
        super::PageParams,
    ),
    responses(
        (status = 200, description = "A page", body = super::DownloadPage),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn list_downloads(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let id: ReleaseId = path_id(&raw, ErrorCode::ReleaseNotFound, "release")?;
    let q = Params::parse(
        query.as_deref(),
        &[&PAGE_PARAMS[..], &["organization_id"]].concat(),
    )?;
    let listed = state
        .app
        .downloads()
        .list(id, q.uuid("organization_id")?, q.page()?)
        .await?;
    page("downloads", listed)
}

/// A release's download counts, in all and by organization (vendor staff).
#[utoipa::path(get, path = "/v1/releases/{id}/download-counts", tag = "releases", summary = "A release's download counts",
    params(("id" = uuid::Uuid, Path, description = "The release")),
    responses(
        (status = 200, description = "The counts; `groups` by organization", body = DownloadCountsView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn release_download_counts(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<DownloadCountsView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: ReleaseId = path_id(&raw, ErrorCode::ReleaseNotFound, "release")?;
    Ok(Json(state.app.downloads().release_counts(id).await?))
}

/// An organization's download counts, in all and by release (whoever reads its licenses).
#[utoipa::path(get, path = "/v1/organizations/{id}/download-counts", tag = "releases", summary = "An organization's download counts",
    params(("id" = uuid::Uuid, Path, description = "The organization")),
    responses(
        (status = 200, description = "The counts; `groups` by release", body = DownloadCountsView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn organization_download_counts(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<DownloadCountsView>, ApiError> {
    let id: OrganizationId = path_id(&raw, ErrorCode::OrganizationNotFound, "organization")?;
    Ok(Json(
        state
            .app
            .downloads()
            .organization_counts(&principal.access, id)
            .await?,
    ))
}

/// The releases the licenses of an organization and those below it see now: the customer
/// portal's download area (whoever may download there).
#[utoipa::path(get, path = "/v1/organizations/{id}/releases", tag = "releases", summary = "Releases an organization sees",
    params(
        ("id" = uuid::Uuid, Path, description = "The organization"),
        ("product_id" = Option<uuid::Uuid>, Query, description = "Only this product's releases"),
        ("platform" = Option<schemas::Platform>, Query, description = "Only releases with a file for this platform (`any` files count for every one), and only those files"),
    ),
    responses(
        (status = 200, description = "The releases, newest first per product", body = application::portal::VisibleReleasesView),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn organization_releases(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
    RawQuery(query): RawQuery,
) -> Result<Json<application::portal::VisibleReleasesView>, ApiError> {
    let id: OrganizationId = path_id(&raw, ErrorCode::OrganizationNotFound, "organization")?;
    let q = Params::parse(query.as_deref(), &["product_id", "platform"])?;
    let platform = q.one_of(
        "platform",
        &[
            ("windows", domain::values::Platform::Windows),
            ("linux", domain::values::Platform::Linux),
            ("macos", domain::values::Platform::Macos),
            ("any", domain::values::Platform::Any),
        ],
    )?;
    Ok(Json(
        state
            .app
            .portal()
            .releases(&principal.access, id, q.uuid("product_id")?, platform)
            .await?,
    ))
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// The whole file (no `Range`, or one this server does not honour: several ranges, or
    /// `If-Range` naming another version).
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range outside the file: 416.
    Unsatisfiable,
}

/// Reads `Range: bytes=a-b | a- | -n` (RFC 9110 §14.1.2). Anything else is ignored, as the RFC
/// allows, and the whole file is sent.
fn wanted(range: Option<&str>, size: u64) -> Wanted {
    // The unit is case-insensitive (RFC 9110 §14.1).
    let Some(spec) = range.and_then(|r| {
        let r = r.trim();
        r.get(..6)
            .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
            .map(|_| &r[6..])
    }) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Wanted::Whole,
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if size == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (start, end) => match (number(start), end) {
            (None, _) => Wanted::Whole,
            (Some(start), _) if start >= size => Wanted::Unsatisfiable,
            (Some(start), "") => Wanted::Part {
                start,
                end: size - 1,
            },
            (Some(start), end) => match number(end) {
                Some(end) if end >= start => Wanted::Part {
                    start,
                    end: end.min(size - 1),
                },
                _ => Wanted::Whole,
            },
        },
    }
}

/// The file's bytes, followed by a `DownloadServed` once the last block is handed to the
/// connection (a client that goes away before it records nothing; one that goes away after
/// it, while the kernel still holds the bytes, is counted all the same).
struct Served {
    inner: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    remaining: u64,
    bytes: u64,
    on_done: Option<(App, DownloadId, String)>,
}

impl Stream for Served {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
            // The last byte is handed to the connection. hyper stops polling a body once its
            // `Content-Length` is reached, so the end is told by the count, not by `None`.
            if self.remaining == 0
                && let Some((app, id, request_id)) = self.on_done.take()
            {
                let bytes = self.bytes;
                metrics::counter!(crate::metrics::DOWNLOADS_SERVED).increment(1);
                metrics::counter!(crate::metrics::DOWNLOAD_BYTES).increment(bytes);
                // Recording it must not hold the response.
                tokio::spawn(async move {
                    if let Err(e) = app.downloads().served(id, bytes, &request_id).await {
                        tracing::warn!(error = %e, download_id = %id, "a completed download was not recorded");
                    }
                });
            }
        }
        polled
    }
}

/// Downloads an artifact through a granted link. `Range` resumes a broken download;
/// `ETag` is the file's SHA-256, `Repr-Digest` (RFC 9530) its digest for a client to check.
#[utoipa::path(get, path = "/v1/downloads/{token}", tag = "releases", summary = "Download an artifact",
    params(
        ("token" = String, Path, description = "The link's token, as granted"),
        ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-LAST`"),
        ("If-Range" = Option<String>, Header, description = "The ETag the range belongs to"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "If-None-Match names this file: unchanged"),
        (status = 403, response = Problem),
        (status = 412, response = Problem),
        (status = 416, response = Problem),
        (status = 429, response = Problem),
        (status = 500, response = Problem),
        (status = 503, response = Problem),
    ))]
async fn download(
    State(state): State<AppState>,
    PathParam(token): PathParam,
    headers: HeaderMap,
    request_id: Option<axum::Extension<RequestId>>,
) -> Result<Response, ApiError> {
    let opened = state.app.downloads().open(&token).await?;
    let a = &opened.artifact;
    let size = a.size;
    let etag = format!("\"{}\"", a.sha256);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok());
    // Conditional requests on the file's one version (RFC 9110 §13): a client holding it
    // already gets 304; one expecting another version, 412.
    // If-None-Match compares weakly (a `W/` tag names the file too); If-Match strongly, so a
    // weak tag never matches (RFC 9110 §13.1.1, §13.1.2).
    let names_it = |list: &str, weak: bool| {
        list.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || (weak && t.strip_prefix("W/") == Some(etag.as_str())))
    };
    if let Some(list) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
        && !names_it(list, false)
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::PreconditionFailed,
            "If-Match names another version of this file",
        ));
    }
    if let Some(list) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && names_it(list, true)
    {
        let mut unchanged = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&etag) {
            unchanged.headers_mut().insert(header::ETAG, v);
        }
        return Ok(unchanged);
    }
    let mut part = wanted(range, size);
    if if_range.is_some_and(|tag| tag.trim() != etag) {
        part = Wanted::Whole;
    }
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "sha-256=:{}:",
        Base64::encode_string(a.sha256.as_bytes())
    )) {
        out.insert("repr-digest", v);
    }
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    let (status, start, len) = match part {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Wanted::Unsatisfiable => {
            let mut refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
                format!("the file has {size} bytes; the range asked for lies outside it"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                refused.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(refused);
        }
    };
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    out.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(a.filename.as_str()),
    );
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let bytes = state
        .app
        .artifacts()
        .read(&a.sha256, start, len)
        .await
        .map_err(|e| match e {
            application::artifacts::StoreError::Unavailable(_) => ApiError::unavailable(&e),
            application::artifacts::StoreError::Io(_) => ApiError::internal(&e),
        })?;
    let request_id = request_id.map_or_else(|| "unknown".to_owned(), |r| r.0.0.clone());
    // A transfer is recorded when it delivers the file's end: a whole file, or the range
    // that completes a resumed one. Ranges inside the file (a flood of `bytes=0-0`) are served
    // and not recorded; a link records at most `domain::download::MAX_SERVED` transfers.
    let reaches_end = start + len == size;
    let body = Served {
        inner: bytes,
        remaining: len,
        bytes: len,
        on_done: reaches_end.then(|| (state.app.clone(), opened.download_id, request_id)),
    };
    Ok((status, out, Body::from_stream(body)).into_response())
}

/// `attachment` with the file's name: as is when it is printable ASCII (a `Filename` holds no
/// quote, backslash or control character), and as RFC 8187 UTF-8 besides.
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut value = format!("attachment; filename=\"{ascii}\"");
    if !name.is_ascii() {
        let encoded: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        value.push_str(&format!("; filename*=UTF-8''{encoded}"));
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_rfc_9110_says_and_the_rest_sends_the_whole_file() {
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-9"), 100), part(0, 9));
        assert_eq!(wanted(Some("Bytes=0-9"), 100), part(0, 9));
        assert_eq!(wanted(Some("bytes=90-"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(wanted(Some("bytes=-1000"), 100), part(0, 99));
        assert_eq!(wanted(Some("bytes=50-1000"), 100), part(50, 99));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=100-200"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        // Not honoured: the whole file.
        assert_eq!(wanted(Some("bytes=0-1,5-6"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=9-2"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-9"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=x-9"), 100), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=+1-9"), 100), Wanted::Whole);
        assert_eq!(
            wanted(Some("bytes=18446744073709551615-"), 100),
            Wanted::Unsatisfiable
        );
    }

    #[test]
    fn a_file_name_is_offered_as_it_is_and_in_utf_8_when_it_needs_to_be() {
        assert_eq!(
            content_disposition("studio-7.4.0.msi"),
            "attachment; filename=\"studio-7.4.0.msi\""
        );
        assert_eq!(
            content_disposition("ñandú 7.zip"),
            "attachment; filename=\"_and_ 7.zip\"; filename*=UTF-8''%C3%B1and%C3%BA%207.zip"
        );
    }
}
