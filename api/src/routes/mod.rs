//! The routes, one module per resource. Each handler extracts the request, calls one use case
//! of the application layer ([`application::App`]) and renders its answer; what is shared
//! between them (answers of commands, query parameters and pages of lists) is here.

use std::collections::HashSet;
use std::sync::Arc;

use application::lists::{Listed, PageRequest};
use application::views::{Page, Written};
use axum::Json;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::{ErrorCode, Timestamp};
use projections::queries::{MAX_PAGE, Order};
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

pub mod billing;
pub mod client;
pub mod downloads;
pub mod health;
pub mod licenses;
pub mod offline;
pub mod operations;
pub mod organizations;
pub mod policies;
pub mod products;
pub mod releases;
pub mod tokens;
pub mod users;
pub mod webhooks;

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

/// The operations (`METHOD path-template`) whose OpenAPI annotations declare no query parameter:
/// on those, any query parameter is unknown (ADR 0017). Read from the same annotations that
/// build the router, so a route that starts taking a parameter declares it once.
#[derive(Clone, Debug, Default)]
pub(crate) struct QueryFree(Arc<HashSet<(Method, String)>>);

impl QueryFree {
    /// The operations of `doc` that take no query parameter.
    pub fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        use utoipa::openapi::path::ParameterIn;
        let mut free = HashSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, item.get.as_ref()),
                (Method::POST, item.post.as_ref()),
                (Method::PUT, item.put.as_ref()),
                (Method::PATCH, item.patch.as_ref()),
                (Method::DELETE, item.delete.as_ref()),
            ] {
                let Some(op) = op else { continue };
                let takes_query = op.parameters.iter().flatten().any(|p| {
                    matches!(p, utoipa::openapi::RefOr::T(p) if p.parameter_in == ParameterIn::Query)
                });
                if !takes_query {
                    free.insert((method, path.clone()));
                }
            }
        }
        Self(Arc::new(free))
    }
}

/// What [`refuse_unknown_query`] needs: the operations, and on administration routes the state
/// to authenticate with first (an unauthenticated request is answered 401 by its handler, as on
/// the lists, whatever its query).
#[derive(Clone)]
pub(crate) struct QueryCheck {
    pub free: QueryFree,
    pub authenticate: Option<crate::state::AppState>,
}

/// Middleware: a route that takes no query parameter refuses any with 400 `INVALID_QUERY`
/// naming it, as the lists refuse a parameter they do not know (a typo must not pass silently).
/// An empty query (`?` alone) is no parameter.
pub(crate) async fn refuse_unknown_query(
    State(check): State<QueryCheck>,
    req: Request,
    next: Next,
) -> Response {
    let refused = match (req.uri().query(), req.extensions().get::<MatchedPath>()) {
        (Some(query), Some(path))
            if check
                .free
                .0
                .contains(&(req.method().clone(), path.as_str().to_owned())) =>
        {
            Params::parse(Some(query), &[]).err()
        }
        _ => None,
    };
    let Some(refused) = refused else {
        return next.run(req).await;
    };
    let Some(state) = check.authenticate else {
        return refused.into_response();
    };
    // The principal is cached in the request's extensions: the handler does not look it up again.
    let (mut parts, body) = req.into_parts();
    let authenticated = crate::auth::Principal::from_request_parts(&mut parts, &state)
        .await
        .is_ok();
    let req = Request::from_parts(parts, body);
    if authenticated {
        refused.into_response()
    } else {
        next.run(req).await
    }
}

/// The paging parameters every list takes.
pub(crate) const PAGE_PARAMS: [&str; 3] = ["limit", "cursor", "order"];

/// A query string, checked before any handler reads it: every parameter is one the route knows
/// (an unknown one is a typo that would otherwise silently widen a list), none is given twice,
/// and no value holds a control character (PostgreSQL refuses NUL in text; no parameter of the
/// ledger has a use for any). Each reader then refuses a bad value with 400 `INVALID_QUERY`
/// naming the parameter in `field`.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// 400 `INVALID_QUERY` naming `field`.
fn invalid(field: &str, detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidQuery, detail, Some(field.to_owned()))
}

impl Params {
    /// Parses `raw` (the query string, without `?`) for a route that knows the names `known`.
    ///
    /// # Errors
    /// 400 `INVALID_QUERY` naming the first unknown, repeated or control-character parameter.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !known.contains(&name.as_ref()) {
                // Echoed in the problem, so kept short and printable.
                let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
                return Err(invalid(
                    &shown,
                    format!(
                        "unknown query parameter {shown:?}; this route takes: {}",
                        known.join(", ")
                    ),
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(invalid(&name, format!("{name} is given more than once")));
            }
            if value.chars().any(char::is_control) {
                return Err(invalid(
                    &name,
                    format!("{name} must not contain control characters"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// The raw value of `name`, when given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A UUID.
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(name, format!("{name} must be a UUID")))
            })
            .transpose()
    }

    /// `true` or `false`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(invalid(name, format!("{name} must be true or false"))),
            })
            .transpose()
    }

    /// An RFC 3339 instant.
    pub fn instant(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        crate::extract::query_instant(name, self.get(name))
    }

    /// Text of 1 to `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        self.get(name)
            .map(|v| {
                let n = v.chars().count();
                if n == 0 || n > max {
                    Err(invalid(
                        name,
                        format!("{name} must be 1 to {max} characters"),
                    ))
                } else {
                    Ok(v.to_owned())
                }
            })
            .transpose()
    }

    /// One of `choices`, by its text.
    pub fn one_of<T: Copy>(
        &self,
        name: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                choices
                    .iter()
                    .find(|(text, _)| *text == v)
                    .map(|(_, choice)| *choice)
                    .ok_or_else(|| {
                        let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
                        invalid(name, format!("{name} must be one of: {}", names.join(", ")))
                    })
            })
            .transpose()
    }

    /// The page asked for: `limit` (1-1000, default 100), `cursor` and `order` (`asc`, the
    /// default, or `desc`). `after` is the name `cursor` had before it was opaque (ADR 0017): a
    /// deprecated alias, read when the route knows it and refused together with `cursor`.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self
            .get("limit")
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    invalid(
                        "limit",
                        format!("limit must be an integer between 1 and {MAX_PAGE}"),
                    )
                })
            })
            .transpose()?;
        crate::extract::page_limit(limit)?;
        let order = self
            .one_of("order", &[("asc", Order::Asc), ("desc", Order::Desc)])?
            .unwrap_or_default();
        let cursor = match (self.get("cursor"), self.get("after")) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "after",
                    "after is the deprecated name of cursor: give cursor alone",
                ));
            }
            (Some(c), None) | (None, Some(c)) => Some(c.to_owned()),
            (None, None) => None,
        };
        Ok(PageRequest {
            cursor,
            limit: limit.unwrap_or(100),
            order,
        })
    }
}

/// The page parameters every list takes, as the document states them (the filters are stated
/// per route, see `Params`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PageParams {
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page of the same list (opaque).
    cursor: Option<String>,
    /// `asc` (oldest first, the default) or `desc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
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
            /// Pass as `cursor` for the next page; absent on the last.
            #[schema(nullable = false)]
            next_cursor: Option<String>,
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
    InstallationPage {
        installations: application::views::ActivationView
    },
    OrganizationInstallationPage {
        installations: application::portal::InstallationView
    },
    UserPage {
        users: application::users::UserView
    },
    BillingEventPage {
        events: application::billing::InboxEntry
    },
    ReleasePage {
        releases: application::views::ReleaseView
    },
    DownloadPage {
        downloads: application::views::DownloadView
    },
);

/// The deprecated name of `cursor` on the lists that had it before cursors were opaque (ADR 0017).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AfterParam {
    /// Deprecated alias of `cursor`; never together with it.
    #[deprecated(note = "use cursor")]
    after: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str, known: &[&str]) -> (String, Option<String>) {
        let e = Params::parse(Some(raw), known)
            .and_then(|p| p.page().map(|_| p))
            .unwrap_err();
        (e.code().to_owned(), e.field().map(str::to_owned))
    }

    #[test]
    fn a_query_is_refused_by_the_name_of_its_bad_parameter() {
        let known = &["limit", "cursor", "order", "after", "q"];
        let field = |raw| refused(raw, known).1;
        assert_eq!(field("nope=1"), Some("nope".into()));
        assert_eq!(field("q=a&q=b"), Some("q".into()));
        assert_eq!(field("q=%00"), Some("q".into()));
        assert_eq!(field("limit=0"), Some("limit".into()));
        assert_eq!(field("limit=x"), Some("limit".into()));
        assert_eq!(field("order=sideways"), Some("order".into()));
        assert_eq!(field("cursor=a&after=b"), Some("after".into()));
        assert_eq!(refused("limit=0", known).0, "INVALID_QUERY");
        // An unknown name is echoed short and printable.
        let long = format!("{}%01=1", "n".repeat(100));
        assert_eq!(field(&long).unwrap().len(), 64);
    }

    #[test]
    fn a_page_defaults_to_100_oldest_first_and_after_is_the_cursor() {
        let known = &["limit", "cursor", "order", "after"];
        let page = Params::parse(None, known).unwrap().page().unwrap();
        assert_eq!(
            (page.limit, page.order, page.cursor),
            (100, Order::Asc, None)
        );
        let page = Params::parse(Some("after=abc&order=desc&limit=1000"), known)
            .unwrap()
            .page()
            .unwrap();
        assert_eq!(
            (page.limit, page.order, page.cursor.as_deref()),
            (1000, Order::Desc, Some("abc"))
        );
    }
}
