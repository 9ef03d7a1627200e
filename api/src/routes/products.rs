//! `/v1/products`: define, read, list.

use application::views::ProductView;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use commands::ledger::NewProduct;
use domain::ErrorCode;
use domain::ids::{AppId, ProductId};
use domain::values::{KeyPrefix, Name, ProductKind};
use serde::Deserialize;

use super::{PAGE_PARAMS, Params, answer, page};
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::{Command, path_id};
use crate::state::AppState;

/// The product routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/products", post(create_product).get(list_products))
        .route("/v1/products/{id}", get(get_product))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProduct {
    name: Name,
    kind: ProductKind,
    #[serde(default)]
    app_id: Option<AppId>,
    #[serde(default)]
    parent_product_id: Option<ProductId>,
    #[serde(default)]
    key_prefix: Option<KeyPrefix>,
}

async fn create_product(
    State(state): State<AppState>,
    cmd: Command<CreateProduct>,
) -> Result<Response, ApiError> {
    cmd.principal.require(Permission::Admin)?;
    let b = cmd.body;
    let written = state
        .app
        .catalogue()
        .create_product(
            &cmd.context,
            NewProduct {
                name: b.name,
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

async fn get_product(
    State(state): State<AppState>,
    principal: Principal,
    Path(raw): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    principal.require(Permission::Read)?;
    let id: ProductId = path_id(&raw, ErrorCode::ProductNotFound, "product")?;
    Ok(Json(state.app.catalogue().product(id).await?))
}

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
