//! The OpenAPI 3.1 document (`GET /v1/openapi.json`) and the API reference page (`/docs`), built
//! from the same registration table as the router (ADR 0015).
//!
//! Every route is registered in [`crate::server::route_table`] through utoipa-axum's `routes!`:
//! a handler's `#[utoipa::path]` gives both the method and path axum routes by and the operation
//! the document describes, so a route registered that way cannot be served undescribed. What
//! every operation of a group shares — its security scheme, the problems its extractors and
//! layers answer (401, 413, 415, 429, 503...), the `Idempotency-Key` header of writes — is added
//! once, by [`finish`], instead of on each annotation. `tests/tests/openapi.rs` proves the two
//! directions: every documented operation reaches a handler, and every path the router serves
//! is documented with exactly the methods it answers.
//!
//! The schemas of domain values (`Name`, `SeatCount`, `FeatureSet`, the text enums...) are
//! written here from the domain's own bounds (`SeatCount::MAX`, `OrganizationKind::ALL`, ...),
//! so `domain` needs no documentation dependency; the response views derive their schemas in
//! `application` (feature `openapi`).

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use domain::ErrorCode;
use domain::validation::ValidationCode;
use strum::IntoEnumIterator;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, KnownFormat, OpenApi, Ref, RefOr, Required, ResponseBuilder,
    SecurityRequirement,
};
use utoipa::{OpenApi as _, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/v1/openapi.json";
/// Where the reference page is served (its assets under it).
pub const DOCS_PATH: &str = "/docs";

/// The parts of the document no handler states: title, security schemes, shared components.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "license-ledger",
        description = "The administration API (bearer tokens `llt_…`) and the client-application \
API (`X-App-Id` and a license key) of license-ledger. Every error is `application/problem+json` \
(RFC 9457) with a stable `code`; see `docs/api.md`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(
        schemas(ProblemBody),
        responses(Problem)
    ),
    tags(
        (name = "organizations", description = "Customers, partners and the vendor"),
        (name = "products", description = "What is licensed"),
        (name = "policies", description = "Versioned license terms"),
        (name = "releases", description = "Versions of products, their signed artifacts, upgrade paths"),
        (name = "licenses", description = "Issue, read (also as of an instant), change"),
        (name = "tokens", description = "Administration tokens"),
        (name = "users", description = "Users of identity providers, their roles, and who is asking (`/v1/me`)"),
        (name = "operations", description = "Audit trail, signed checkpoints, projector lag"),
        (name = "client", description = "What client applications call (X-App-Id)"),
        (name = "offline", description = "Air-gapped request files"),
        (name = "health", description = "Liveness, readiness, public keys, this document")
    )
)]
struct ApiDoc;

/// The route groups of the server; each is finished with what all its operations share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// No authentication: health, JWKS, this document.
    Public,
    /// Administration: bearer token, rate limit per token (per address without one), deadline.
    Admin,
    /// Client applications: `X-App-Id`, their own rate limit, deadline.
    Client,
    /// Payment gateways' webhooks: a signature over the body, body limit, deadline.
    Webhook,
    /// Streamed bodies (artifact uploads): bearer token and its rate limit, the store's own size
    /// limit and stall timeout instead of the body limit and deadline; retried by content, not
    /// through the idempotency store (ADR 0023).
    Transfer,
}

/// The document, built once from the registration table.
pub fn document() -> OpenApi {
    let table = crate::server::route_table();
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    // Value schemas that only parameters name (bodies' are collected from their types): a
    // `$ref` to a schema the document lacks breaks every client generator and schemathesis.
    for (name, schema) in [
        ("Filename", schemas::Filename::schema()),
        ("Platform", schemas::Platform::schema()),
        ("Arch", schemas::Arch::schema()),
    ] {
        components.schemas.entry(name.to_owned()).or_insert(schema);
    }
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("llt_<id>_<secret> or JWT")
                .description(Some(
                    "An administration token (`ledger token`, `POST /v1/tokens`), or an OpenID \
                     Connect access token (JWT) of an issuer given to `--oidc-issuer`, for a \
                     user: what it may do is its roles' reach.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "app_id",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-App-Id",
            "The product's App GUID (a non-nil UUID); the license key goes in the body.",
        ))),
    );
    for (group, routes) in [
        (Group::Public, table.public),
        (Group::Public, table.keys),
        (Group::Admin, table.admin),
        (Group::Client, table.client),
        (Group::Webhook, table.webhooks),
        (Group::Transfer, table.transfers),
    ] {
        doc.merge(finish(group, routes.into_openapi()));
    }
    doc
}

static DOCUMENT_JSON: LazyLock<Vec<u8>> = LazyLock::new(|| {
    // The document is a value built from annotations; it always serializes.
    serde_json::to_vec(&document()).unwrap_or_default()
});

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "health",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = DOCUMENT_JSON.as_slice().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The document's own route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The reference page: Swagger UI, its assets compiled into the binary (`vendored`), reading
/// the document from [`DOCUMENT_PATH`]. Nothing is fetched from elsewhere, so it works offline.
pub fn reference_page<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::new([DOCUMENT_PATH]))
        .into()
}

/// The paths of the reference page, which are not API operations and are not in the document.
pub const REFERENCE_PAGE_PATHS: &[&str] = &["/docs", "/docs/", "/docs/{*rest}"];

fn problem_ref() -> RefOr<utoipa::openapi::Response> {
    RefOr::Ref(Ref::from_response_name("Problem"))
}

/// Adds to every operation of `group` what the group shares.
fn finish(group: Group, mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
        ] {
            let Some(op) = op else { continue };
            finish_operation(group, path, &method, op);
        }
    }
    doc
}

fn is_json_body(body: Option<&RefOr<RequestBody>>) -> bool {
    matches!(body, Some(RefOr::T(b)) if b.content.keys().any(|c| c == "application/json"))
}

/// The writes that take no `Idempotency-Key`, because doing them twice is doing them once and they
/// record no event to find a key on: validation (appends nothing, answers the license as it is
/// now; ADR 0016), Stripe's webhook (deduplicated by the event's own id) and the billing inbox's
/// retry (makes an event due again; ADR 0022), and the artifact upload (streamed, so the store,
/// which keeps a digest of the body, is not in its way: the same bytes under the same name replay
/// the recorded artifact; ADR 0023).
pub const KEYLESS_WRITES: [&str; 4] = [
    "/v1/validate",
    "/v1/webhooks/stripe",
    "/v1/billing/events/{id}/retry",
    "/v1/releases/{id}/artifacts/{filename}",
];

fn finish_operation(group: Group, path: &str, method: &HttpMethod, op: &mut Operation) {
    let write = matches!(
        method,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch | HttpMethod::Delete
    );
    // Every write takes an `Idempotency-Key` but validation, which appends nothing and answers
    // the license as it is now (ADR 0016); the public group has no writes.
    let keyed = write
        && !matches!(group, Group::Public | Group::Webhook | Group::Transfer)
        && !KEYLESS_WRITES.contains(&path);
    let limited = !matches!(group, Group::Public | Group::Webhook);
    let mut problems: Vec<u16> = Vec::new();
    match group {
        Group::Public => {}
        Group::Admin => {
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("bearer", [])]);
            // A query parameter the operation does not take (400 `INVALID_QUERY`); no or a bad
            // token; over the token's (or address's) rate; the deadline or the database.
            problems.extend([400, 401, 429, 500, 503]);
            if is_json_body(op.request_body.as_ref()) {
                // The `Command` extractor: unreadable or invalid body, too large, not JSON;
                // racing writers kept winning.
                problems.extend([400, 409, 413, 415]);
            }
        }
        Group::Client => {
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("app_id", [])]);
            // Missing or malformed X-App-Id, body or query; the key opens no license of this
            // application (unknown and foreign keys alike); too large; rate; deadline.
            problems.extend([400, 403, 413, 429, 500, 503]);
        }
        Group::Webhook => {
            op.security = Some(Vec::new());
            // An unverified signature or a verified body that is not an event; too large; the
            // deadline or the database.
            problems.extend([400, 413, 500, 503]);
        }
        Group::Transfer => {
            op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("bearer", [])]);
            // A bad query or body; no or a bad token; over the rate; the database.
            problems.extend([400, 401, 429, 500, 503]);
        }
    }
    if keyed {
        // A malformed key; the first request with this key still running; the key used with
        // another request.
        problems.extend([400, 409, 422]);
    }
    for status in problems {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(problem_ref);
    }
    if limited {
        // A transfer that replays (the same upload again) says so like a keyed write.
        add_success_headers(op, keyed || (write && group == Group::Transfer));
    }
    optional_body_is_absent_not_null(op);
    if keyed {
        let params = op.parameters.get_or_insert_with(Vec::new);
        if !params
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.name == "Idempotency-Key"))
        {
            params.push(RefOr::T(idempotency_key()));
        }
    }
}

/// The headers of a limited route's answers: `RateLimit-*` (ADR 0018) and, on a write that takes
/// an `Idempotency-Key`, `Idempotent-Replayed` (ADRs 0016, 0019). Problems carry them too; their shared
/// response states `Retry-After` only.
fn add_success_headers(op: &mut Operation, keyed: bool) {
    let integer = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some(description))
            .build()
            .into()
    };
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        response.headers.insert(
            "RateLimit-Limit".into(),
            integer("The size of the bucket this request spent (its token's, or its address's)."),
        );
        response.headers.insert(
            "RateLimit-Remaining".into(),
            integer("Requests left in the bucket after this one."),
        );
        response.headers.insert(
            "RateLimit-Reset".into(),
            integer("Seconds until the bucket is full again."),
        );
        if keyed {
            response.headers.insert(
                "Idempotent-Replayed".into(),
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(["true"])),
                    ))
                    .description(Some(
                        "`true` when this is the stored answer of an earlier request with the \
                         same `Idempotency-Key`; absent on a first execution.",
                    ))
                    .build()
                    .into(),
            );
        }
    }
}

/// An optional body (`request_body(content = Option<T>)`) is one that may be left out; utoipa
/// also makes its schema accept `null`, which the server refuses (found by schemathesis). The
/// document says what the server does: absent, or `T`.
fn optional_body_is_absent_not_null(op: &mut Operation) {
    let Some(RefOr::T(body)) = op.request_body.as_mut() else {
        return;
    };
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema {
            let mut rest = one.items.iter().filter(|s| !is_null(s));
            if let (Some(only), None) = (rest.next(), rest.next()) {
                content.schema = Some(only.clone());
            }
        }
    }
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retry safe: no write executes twice. The same key with the same request \
             within the retention (24 h by default) answers the first successful (2xx) answer \
             again, byte for byte, with `Idempotent-Replayed: true`, and executes nothing; a \
             refusal (4xx) executed nothing, and its retry is evaluated afresh. With another \
             request 422 `IDEMPOTENCY_KEY_REUSED`; while the first still runs on the same \
             server process 409 `IDEMPOTENCY_IN_PROGRESS` with `Retry-After`. Scoped per \
             bearer token (administration) or license key (client routes). 1-255 visible ASCII \
             characters, else 400 `INVALID_IDEMPOTENCY_KEY`.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x21-\\x7e]+$")),
        ))
        .build()
}

// ----- problems -----

/// An error answer (RFC 9457), `application/problem+json`: the schema.
pub struct ProblemBody;

impl ToSchema for ProblemBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

impl PartialSchema for ProblemBody {
    fn schema() -> RefOr<Schema> {
        let codes: Vec<&str> = ErrorCode::iter()
            .map(ErrorCode::as_str)
            .chain(ValidationCode::iter().map(ValidationCode::as_str))
            .collect();
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A problem (RFC 9457). `code` is stable: branch on it, not on `detail`.",
            ))
            .property(
                "type",
                string().format(Some(SchemaFormat::Custom("uri".into()))),
            )
            .required("type")
            .property("title", string())
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(400))
                    .maximum(Some(599)),
            )
            .required("status")
            .property("detail", string())
            .required("detail")
            .property(
                "code",
                string()
                    .enum_values(Some(codes))
                    .description(Some("The stable code (`docs/api.md` lists each).")),
            )
            .required("code")
            .property(
                "field",
                string().description(Some(
                    "The field, query parameter or header at fault, when one is.",
                )),
            )
            .into()
    }
}

/// The response every problem status refers to: `(status = 404, response = Problem)`.
pub struct Problem;

impl<'r> utoipa::ToResponse<'r> for Problem {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        (
            "Problem",
            ResponseBuilder::new()
                .description("A problem (RFC 9457) with a stable `code`.")
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait; on 429 and 503."))
                        .build(),
                )
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
                .into(),
        )
    }
}

// ----- domain values, from the domain's own bounds -----

/// Text a `Name`, `Reason` or `Label` accepts: the server trims it, refuses it empty and refuses
/// control characters (`char::is_control`: U+0000-U+001F, U+007F-U+009F).
const TEXT_PATTERN: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";

fn text(max: usize, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(TEXT_PATTERN))
        .description(Some(description))
        .into()
}

fn one_of(all: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(all.iter().copied()))
        .description(Some(description))
        .into()
}

/// SemVer 2.0's own regular expression (semver.org), anchored.
const SEMVER_PATTERN: &str = "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$";

/// Schema-only types standing for domain values in request bodies
/// (`#[schema(value_type = schemas::Name)]`).
pub mod schemas {
    use super::*;

    macro_rules! value_schema {
        ($($(#[$doc:meta])* $name:ident => $schema:expr;)+) => {$(
            $(#[$doc])*
            pub struct $name;
            impl ToSchema for $name {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($name))
                }
            }
            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    $schema
                }
            }
        )+};
    }

    value_schema! {
        /// `domain::values::Name`.
        Name => text(200, "A display name: 1-200 characters once trimmed, no control characters.");
        /// `domain::values::Reason`.
        Reason => text(500, "Why: 1-500 characters once trimmed, no control characters.");
        /// `domain::values::Label`.
        Label => text(255, "A short text: 1-255 characters once trimmed, no control characters.");
        /// `domain::values::FeatureCode`.
        FeatureCode => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"))
            .description(Some("An entitlement code: 1-64 ASCII letters, digits or `_.:-`, \
                starting with a letter or digit; case-sensitive."))
            .into();
        /// `domain::values::FeatureSet`.
        FeatureSet => ArrayBuilder::new()
            .items(Ref::from_schema_name("FeatureCode"))
            .max_items(Some(domain::values::FeatureSet::MAX))
            .description(Some("Entitlement codes; duplicates collapse. At most 256."))
            .into();
        /// `domain::values::SeatCount`.
        SeatCount => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(domain::values::SeatCount::MAX))
            .description(Some("Seats: concurrent activations allowed."))
            .into();
        /// `domain::values::KeyPrefix`.
        KeyPrefix => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Z0-9]{2,8}$"))
            .description(Some("The readable prefix of the product's license keys."))
            .into();
        /// `domain::billing::PriceId`.
        PriceId => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_-]{1,255}$"))
            .description(Some("A Stripe price id (`price_…`): 1-255 ASCII letters, digits, `_` and `-`."))
            .into();
        /// `domain::values::Fingerprint`.
        Fingerprint => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_.:+/=-]{1,256}$"))
            .description(Some("A device, VM, container or tenant identifier: 1-256 ASCII \
                letters, digits and `-_.:+/=`."))
            .into();
        /// `domain::values::OrganizationKind`.
        OrganizationKind => one_of(domain::values::OrganizationKind::ALL, "What an organization is to the vendor.");
        /// `domain::values::ProductKind`.
        ProductKind => one_of(domain::values::ProductKind::ALL, "What a product is; plugins and features name a parent.");
        /// `domain::values::LicenseModel`.
        LicenseModel => one_of(domain::values::LicenseModel::ALL, "How seats are counted.");
        /// `domain::values::Environment`.
        Environment => one_of(domain::values::Environment::ALL, "Where an installation runs.");
        /// `domain::values::Role`.
        Role => one_of(domain::values::Role::ALL, "A role: vendor roles (over everything) or customer roles (held at an organization, over its subtree).");
        /// `domain::values::Email`.
        Email => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(3))
            .max_length(Some(254))
            .pattern(Some("^[^@\\s]+@[^@\\s]+$"))
            .description(Some("An e-mail address (compared in lower case)."))
            .into();
        /// `domain::values::Issuer`.
        Issuer => ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(2048))
            .pattern(Some("^https?://[^?#\\s]+$"))
            .description(Some("An OpenID Connect issuer, exactly as its tokens' `iss` spell it."))
            .into();
        /// `domain::values::Subject`.
        Subject => text(255, "The identity provider's `sub` of the person.");
        /// `domain::values::RevocationCategory`.
        RevocationCategory => one_of(domain::values::RevocationCategory::ALL, "Why a license was revoked.");
        /// `domain::release::Version`.
        Version => ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(300))
            .pattern(Some(SEMVER_PATTERN))
            .description(Some("A SemVer 2.0 version (`7.4.0`, `8.0.0-beta.2`, `7.4.0+build.5`); \
                build metadata takes no part in ordering or uniqueness."))
            .into();
        /// `domain::release::VersionRange`.
        VersionRange => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(300))
            .description(Some("A SemVer requirement (`>=7.2, <7.3`, `~7.2`); a bare version \
                is that version with its omitted parts free (`7.2` is every 7.2.x)."))
            .into();
        /// `domain::release::Notes`.
        Notes => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(domain::release::Notes::MAX_CHARS))
            .description(Some("Release notes: 1-20,000 characters once trimmed; line breaks \
                and tabs allowed, other control characters not."))
            .into();
        /// `domain::release::Filename`.
        Filename => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(domain::release::Filename::MAX_BYTES))
            .pattern(Some("^[^/\\\\:*?\"<>|\\x00-\\x1f\\x7f-\\x9f]+$"))
            .description(Some("A file name, never a path: at most 255 bytes, no `/ \\ : * ? \" \
                < > |`, no `..`, no control characters, no surrounding spaces."))
            .into();
        /// `domain::values::Channel`.
        Channel => one_of(domain::values::Channel::ALL, "The channel a release is published on.");
        /// `domain::values::Platform`.
        Platform => one_of(domain::values::Platform::ALL, "The operating system an artifact is for.");
        /// `domain::values::Arch`.
        Arch => one_of(domain::values::Arch::ALL, "The architecture an artifact is for.");
        /// An RFC 3339 instant (`domain::Timestamp`).
        Instant => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("An RFC 3339 instant, e.g. 2026-03-01T10:00:00Z."))
            .into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> serde_json::Value {
        serde_json::to_value(document()).unwrap()
    }

    #[test]
    fn every_reference_names_a_schema_or_response_the_document_holds() {
        fn refs(value: &serde_json::Value, out: &mut Vec<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        if k == "$ref" {
                            out.push(v.as_str().unwrap_or_default().to_owned());
                        } else {
                            refs(v, out);
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = json();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "{}", found.len());
        for reference in found {
            let pointer = reference.trim_start_matches('#');
            assert!(
                doc.pointer(pointer).is_some(),
                "{reference} names nothing in the document"
            );
        }
    }

    #[test]
    fn every_write_takes_an_idempotency_key_and_every_operation_names_its_answers() {
        let doc = json();
        let mut writes = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path}"
                );
                let takes_key = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
                if KEYLESS_WRITES.contains(&path.as_str()) {
                    assert!(!takes_key, "{method} {path}");
                } else if ["post", "put", "patch", "delete"].contains(&method.as_str()) {
                    writes += 1;
                    assert!(takes_key, "{method} {path}");
                }
                // An optional body is absent, never `null` (the server refuses `null`).
                let text = op["requestBody"].to_string();
                assert!(
                    !text.contains(r#""type":"null""#),
                    "{method} {path}: {text}"
                );
            }
        }
        assert!(writes >= 20, "{writes}");
    }

    #[test]
    fn the_problem_code_lists_every_code_the_server_answers() {
        let doc = json();
        let listed = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            listed,
            ErrorCode::iter().count() + ValidationCode::iter().count()
        );
    }

    #[test]
    fn admin_and_client_operations_state_their_security() {
        let doc = json();
        let security = |path: &str, method: &str| doc["paths"][path][method]["security"].clone();
        assert_eq!(
            security("/v1/licenses/{id}", "get")[0]["bearer"],
            serde_json::json!([])
        );
        assert_eq!(
            security("/v1/activations", "post")[0]["app_id"],
            serde_json::json!([])
        );
        assert!(security("/healthz", "get").is_null());
        assert!(security("/v1/openapi.json", "get").is_null());
    }
}
