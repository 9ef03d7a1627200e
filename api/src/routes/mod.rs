//! The routes, one module per resource. Each handler extracts the request, calls one use case
//! of the application layer ([`application::App`]) and renders its answer; what is shared
//! between them (answers of commands, list parameters) is here.

use application::catalogue::{Listed, PageRequest};
use application::views::{Page, Written};
use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::ErrorCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub mod client;
pub mod health;
pub mod licenses;
pub mod offline;
pub mod operations;
pub mod organizations;
pub mod policies;
pub mod products;
pub mod tokens;

/// A command's answer: the status, the `Location` of a created resource, and the
/// `Idempotent-Replayed` marker on replays.
pub(crate) fn answer<T: Serialize>(
    status: StatusCode,
    location: Option<String>,
    written: Written<T>,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    if written.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    (status, headers, Json(written.view)).into_response()
}

/// List parameters: `after` (cursor), `limit` (1-1000, default 100) and the filters of the
/// catalogue lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
    pub parent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
}

impl ListQuery {
    /// The page asked for.
    pub fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after,
            limit: self.limit.unwrap_or(100),
        }
    }
}

/// The page parameters every list takes, as the document states them (the filters are stated
/// per route).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// `next_cursor` of the previous page.
    after: Option<Uuid>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// A body that may be absent or `{}`: the schema of [`crate::extract::NoBody`].
pub(crate) type EmptyBody = crate::extract::NoBody;

macro_rules! page_schema {
    ($($name:ident { $field:ident: $view:ty }),+ $(,)?) => {$(
        /// A page of a list.
        #[derive(utoipa::ToSchema)]
        #[allow(dead_code)]
        pub(crate) struct $name {
            $field: Vec<$view>,
            /// Pass as `after` for the next page; absent on the last.
            #[schema(nullable = false)]
            next_cursor: Option<Uuid>,
        }
    )+};
}

page_schema!(
    OrganizationPage {
        organizations: application::views::OrganizationView
    },
    ProductPage {
        products: application::views::ProductView
    },
    PolicyPage {
        policies: application::views::PolicyView
    },
    LicensePage {
        licenses: application::views::LicenseView
    },
);

/// The list parameters, or 400 `INVALID_QUERY`.
pub(crate) fn list_query(
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<ListQuery, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::bad_request(ErrorCode::InvalidQuery, e.body_text(), None))?;
    crate::extract::page_limit(q.limit)?;
    Ok(q)
}

/// A page of a list under its resource's name: `{"<name>": [...], "next_cursor": ...}`.
///
/// # Errors
/// 500 when a view does not serialize (a bug; never an empty page in its place).
pub(crate) fn page<T: Serialize>(name: &str, listed: Listed<T>) -> Result<Response, ApiError> {
    let items = serde_json::to_value(listed.items).map_err(|e| ApiError::internal(&e))?;
    let mut named = serde_json::Map::new();
    named.insert(name.to_owned(), items);
    Ok(Json(Page {
        items: serde_json::Value::Object(named),
        next_cursor: listed.next_cursor,
    })
    .into_response())
}
