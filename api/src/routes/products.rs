//! `/v1/products`: define, read, list.

use application::views::ProductView;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::ledger::NewProduct;
use domain::ErrorCode;
use domain::ids::{AppId, ProductId};
use domain::values::{KeyPrefix, NewName, ProductKind};
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Admin, Command, PathParam, path_id};
use crate::openapi::{Problem, schemas};
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The product routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateProduct {
    #[schema(value_type = schemas::Name)]
    name: NewName,
    #[schema(value_type = schemas::ProductKind)]
    kind: ProductKind,
    /// The App GUID client applications send as `X-App-Id` (a non-nil UUID); generated when
    /// absent.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    app_id: Option<AppId>,
    /// Required for plugins and features: an application or cloud service.
    #[serde(default)]
    #[schema(value_type = Option<uuid::Uuid>)]
    parent_product_id: Option<ProductId>,
    /// Derived from the name when absent.
    #[serde(default)]
    #[schema(value_type = Option<schemas::KeyPrefix>)]
    key_prefix: Option<KeyPrefix>,
}

/// Defines a product.
#[utoipa::path(post, path = "/v1/products", tag = "products", summary = "Define a product",
    request_body = CreateProduct,
    responses(
        (status = 201, description = "Defined", body = ProductView,
            headers(("Location" = String, description = "The product's URL"))),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ))]
async fn create_product(
    State(state): State<AppState>,
    cmd: Command<CreateProduct, Admin>,
) -> Result<Response, ApiError> {
    let b = cmd.body;
    let written = state
        .app
        .catalogue()
        .create_product(
            &cmd.context,
            NewProduct {
                name: b.name.into_name(),
                kind: b.kind,
                app_id: b.app_id,
                parent_product_id: b.parent_product_id,
                key_prefix: b.key_prefix,
            },
        )
        .await?;
    let location = format!("/v1/products/{}", written.view.id);
    Ok(answer(StatusCode::CREATED, Some(location), written))
}

/// One product.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "products", summary = "Read a product",
    params(("id" = uuid::Uuid, Path, description = "The product")),
    responses((status = 200, description = "The product", body = ProductView), (status = 404, response = Problem)))]
async fn get_product(
    State(state): State<AppState>,
    principal: Principal,
    PathParam(raw): PathParam,
) -> Result<Json<ProductView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: ProductId = path_id(&raw, ErrorCode::ProductNotFound, "product")?;
    Ok(Json(state.app.catalogue().product(id).await?))
}

/// Products, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/products", tag = "products", summary = "List products",
    params(super::PageParams, super::AfterParam),
    responses((status = 200, description = "A page", body = super::ProductPage), (status = 400, response = Problem)))]
async fn list_products(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Permission::Read)?;
    let q = Params::parse(query.as_deref(), &[&PAGE_PARAMS[..], &["after"]].concat())?;
    let listed = state.app.catalogue().products(q.page()?).await?;
    page("products", listed)
}
