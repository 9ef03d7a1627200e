//! Read models of the catalogue: organizations, products, policies (tables of migration 0002).
//! Every column comes from events; `created_at`/`updated_at` are the events' `recorded_at`, so a
//! rebuild writes identical rows.

use async_trait::async_trait;
use domain::AggregateType;
use domain::event::RecordedEvent;
use domain::organization::OrganizationEvent;
use domain::policy::PolicyEvent;
use domain::product::ProductEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::{Projection, ProjectionError, ReplaySafe};

pub(crate) fn stream_uuid(event: &RecordedEvent) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|_| {
        ProjectionError::Inconsistent(format!(
            "{} stream id {:?} is not a UUID",
            event.aggregate_type, event.aggregate_id
        ))
    })
}

pub(crate) fn expect_one(
    result: sqlx::postgres::PgQueryResult,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(ProjectionError::Inconsistent(format!(
            "{} at position {} found no row for {}",
            event.event_type, event.global_position, event.aggregate_id
        )))
    }
}

/// `rm_organizations`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrganizationsProjection;

#[async_trait]
impl Projection for OrganizationsProjection {
    fn name(&self) -> &'static str {
        "organizations"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_organizations"]
    }
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::Organization]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = stream_uuid(e)?;
        let at = e.recorded_at;
        let v = e.sequence;
        let result = match e.decode::<OrganizationEvent>()? {
            OrganizationEvent::Registered {
                name,
                kind,
                parent_id,
            } => {
                sqlx::query(
                    "INSERT INTO rm_organizations (id, name, kind, parent_id, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6)",
                )
                .bind(id)
                .bind(name.as_str())
                .bind(kind.as_str())
                .bind(parent_id.map(Uuid::from))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            OrganizationEvent::Renamed { name } => {
                sqlx::query("UPDATE rm_organizations SET name = $2, updated_at = $3, version = $4 WHERE id = $1")
                    .bind(id)
                    .bind(name.as_str())
                    .bind(at)
                    .bind(v)
                    .execute(&mut *conn)
                    .await?
            }
            OrganizationEvent::Moved { new_parent_id } => {
                sqlx::query("UPDATE rm_organizations SET parent_id = $2, updated_at = $3, version = $4 WHERE id = $1")
                    .bind(id)
                    .bind(new_parent_id.map(Uuid::from))
                    .bind(at)
                    .bind(v)
                    .execute(&mut *conn)
                    .await?
            }
            OrganizationEvent::PartnerDelegationGranted { partner_id } => {
                sqlx::query(
                    "UPDATE rm_organizations SET delegated_partners = array_append(delegated_partners, $2), \
                     updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(Uuid::from(partner_id))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            OrganizationEvent::PartnerDelegationRevoked { partner_id } => {
                sqlx::query(
                    "UPDATE rm_organizations SET delegated_partners = array_remove(delegated_partners, $2), \
                     updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(Uuid::from(partner_id))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
            OrganizationEvent::Closed {} => {
                sqlx::query("UPDATE rm_organizations SET closed = true, updated_at = $2, version = $3 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .bind(v)
                    .execute(&mut *conn)
                    .await?
            }
            OrganizationEvent::CustomerLinked {
                gateway,
                customer_id,
            } => {
                sqlx::query(
                    "UPDATE rm_organizations SET customers = array_append(customers, $2), \
                     updated_at = $3, version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(domain::organization::customer_claim(&gateway, &customer_id))
                .bind(at)
                .bind(v)
                .execute(&mut *conn)
                .await?
            }
        };
        expect_one(result, e)
    }
}

impl ReplaySafe for OrganizationsProjection {}

/// `rm_products`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProductsProjection;

#[async_trait]
impl Projection for ProductsProjection {
    fn name(&self) -> &'static str {
        "products"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_products"]
    }
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::Product]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = stream_uuid(e)?;
        let result = match e.decode::<ProductEvent>()? {
            ProductEvent::Defined {
                name,
                kind,
                app_id,
                parent_product_id,
                key_prefix,
            } => {
                sqlx::query(
                    "INSERT INTO rm_products (id, name, kind, app_id, parent_product_id, key_prefix, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
                )
                .bind(id)
                .bind(name.as_str())
                .bind(kind.as_str())
                .bind(Uuid::from(app_id))
                .bind(parent_product_id.map(Uuid::from))
                .bind(key_prefix.as_str())
                .bind(e.recorded_at)
                .bind(e.sequence)
                .execute(&mut *conn)
                .await?
            }
            // The paths are read from the product's stream where they are used (the update
            // path); the row only records that the product changed.
            ProductEvent::UpgradePathDeclared { .. } => {
                sqlx::query("UPDATE rm_products SET updated_at = $2, version = $3 WHERE id = $1")
                    .bind(id)
                    .bind(e.recorded_at)
                    .bind(e.sequence)
                    .execute(&mut *conn)
                    .await?
            }
        };
        expect_one(result, e)
    }
}

impl ReplaySafe for ProductsProjection {}

/// `rm_policies`: each policy at its current version.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoliciesProjection;

#[async_trait]
impl Projection for PoliciesProjection {
    fn name(&self) -> &'static str {
        "policies"
    }
    fn tables(&self) -> &'static [&'static str] {
        &["rm_policies"]
    }
    fn aggregate_types(&self) -> &'static [AggregateType] {
        &[AggregateType::Policy]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        e: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let id = stream_uuid(e)?;
        let terms_json = |t: &domain::policy::PolicyTerms| {
            serde_json::to_value(t).map_err(|err| ProjectionError::Inconsistent(err.to_string()))
        };
        let result = match e.decode::<PolicyEvent>()? {
            PolicyEvent::Defined {
                product_id,
                name,
                version,
                terms,
            } => {
                sqlx::query(
                    "INSERT INTO rm_policies (id, product_id, name, policy_version, terms, created_at, updated_at, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
                )
                .bind(id)
                .bind(Uuid::from(product_id))
                .bind(name.as_str())
                .bind(i32::try_from(version).unwrap_or(i32::MAX))
                .bind(terms_json(&terms)?)
                .bind(e.recorded_at)
                .bind(e.sequence)
                .execute(&mut *conn)
                .await?
            }
            PolicyEvent::Revised {
                version,
                name,
                terms,
            } => {
                sqlx::query(
                    "UPDATE rm_policies SET name = $2, policy_version = $3, terms = $4, updated_at = $5, version = $6 WHERE id = $1",
                )
                .bind(id)
                .bind(name.as_str())
                .bind(i32::try_from(version).unwrap_or(i32::MAX))
                .bind(terms_json(&terms)?)
                .bind(e.recorded_at)
                .bind(e.sequence)
                .execute(&mut *conn)
                .await?
            }
            PolicyEvent::Retired {} => {
                sqlx::query("UPDATE rm_policies SET retired = true, updated_at = $2, version = $3 WHERE id = $1")
                    .bind(id)
                    .bind(e.recorded_at)
                    .bind(e.sequence)
                    .execute(&mut *conn)
                    .await?
            }
            PolicyEvent::PricesLinked { gateway, price_ids } => {
                // The set replaces the gateway's; an empty one removes it.
                sqlx::query(
                    "UPDATE rm_policies SET prices = CASE WHEN jsonb_array_length($3) = 0 THEN prices - $2 \
                     ELSE jsonb_set(prices, ARRAY[$2], $3) END, updated_at = $4, version = $5 WHERE id = $1",
                )
                .bind(id)
                .bind(gateway)
                .bind(serde_json::to_value(&price_ids).map_err(|err| ProjectionError::Inconsistent(err.to_string()))?)
                .bind(e.recorded_at)
                .bind(e.sequence)
                .execute(&mut *conn)
                .await?
            }
        };
        expect_one(result, e)
    }
}

impl ReplaySafe for PoliciesProjection {}
