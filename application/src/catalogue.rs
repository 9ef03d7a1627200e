//! The catalogue as a use case: organizations, products and policies — defined through the
//! command services, read back by folding their stream (read-your-writes), listed from the read
//! models (which may trail the log by the projector's lag).

use commands::ledger::{NewOrganization, NewProduct};
use commands::{CommandContext, Loaded, Outcome};
use domain::DomainError;
use domain::ids::{OrganizationId, PolicyId, ProductId};
use domain::organization::Organization;
use domain::policy::{Policy, PolicyAction, PolicyTerms};
use domain::product::Product;
use domain::values::Name;
use projections::queries;
use uuid::Uuid;

use crate::views::{LicenseView, OrganizationView, PolicyView, ProductView, Written};
use crate::{App, AppError};

/// One page of a list: the items, and the cursor of the next page (absent on the last).
#[derive(Clone, Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Uuid>,
}

impl<T> Listed<T> {
    /// A page of `limit` asked for: a full page may have a successor.
    pub(crate) fn of<R>(
        rows: Vec<R>,
        limit: i64,
        id: impl Fn(&R) -> Uuid,
        view: impl Fn(R) -> T,
    ) -> Self {
        let full = usize::try_from(limit).is_ok_and(|l| rows.len() == l);
        let next_cursor = if full { rows.last().map(&id) } else { None };
        Self {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Where a list starts and how long it is.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    /// The `next_cursor` of the previous page.
    pub after: Option<Uuid>,
    /// Items per page (the API checks the range).
    pub limit: i64,
}

/// The catalogue use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Catalogue<'a> {
    app: &'a App,
}

impl App {
    /// The catalogue use cases.
    pub fn catalogue(&self) -> Catalogue<'_> {
        Catalogue { app: self }
    }
}

impl Catalogue<'_> {
    // ----- organizations -----

    /// Registers an organization.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn create_organization(
        &self,
        ctx: &CommandContext,
        input: NewOrganization,
    ) -> Result<Written<OrganizationView>, AppError> {
        let o = self.app.ledger().register_organization(ctx, input).await?;
        let state = o
            .aggregate
            .state()
            .ok_or(AppError::Invariant("an organization command left no state"))?;
        Ok(Written {
            view: OrganizationView::new(o.id.into(), state, o.created_at, o.updated_at, o.version),
            replayed: o.replayed,
        })
    }

    /// An organization now.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND`; database and decoding errors.
    pub async fn organization(&self, id: OrganizationId) -> Result<OrganizationView, AppError> {
        let loaded: Loaded<Organization> = self.app.ledger().store().read(id).await?;
        let org = loaded
            .aggregate
            .state()
            .ok_or(DomainError::OrganizationNotFound(id))?;
        Ok(OrganizationView::new(
            id.into(),
            org,
            loaded.created_at,
            loaded.updated_at,
            loaded.version,
        ))
    }

    /// Organizations, optionally the children of `parent_id`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn organizations(
        &self,
        parent_id: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Listed<OrganizationView>, AppError> {
        let rows =
            queries::organizations(self.app.pool(), parent_id, page.after, page.limit).await?;
        Ok(Listed::of(
            rows,
            page.limit,
            |r| r.id,
            OrganizationView::from_row,
        ))
    }

    /// The licenses of an organization (read model), status derived now.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND`; database errors.
    pub async fn organization_licenses(
        &self,
        id: OrganizationId,
        page: PageRequest,
    ) -> Result<Listed<LicenseView>, AppError> {
        let exists = self
            .app
            .ledger()
            .store()
            .read::<Organization>(id)
            .await?
            .exists();
        if !exists {
            return Err(DomainError::OrganizationNotFound(id).into());
        }
        let rows =
            queries::organization_licenses(self.app.pool(), id.into(), page.after, page.limit)
                .await?;
        let now = self.app.now();
        Ok(Listed::of(
            rows,
            page.limit,
            |r| r.id,
            |r| {
                LicenseView::new(
                    r.id,
                    &r.state,
                    Some(r.created_at),
                    Some(r.updated_at),
                    r.version,
                    now,
                )
            },
        ))
    }

    // ----- products -----

    /// Defines a product; its App GUID is claimed for it alone.
    ///
    /// # Errors
    /// Refusals (`APP_ID_TAKEN`) and infrastructure errors.
    pub async fn create_product(
        &self,
        ctx: &CommandContext,
        input: NewProduct,
    ) -> Result<Written<ProductView>, AppError> {
        let o = self.app.ledger().define_product(ctx, input).await?;
        let product = o
            .aggregate
            .state()
            .ok_or(AppError::Invariant("a product command left no state"))?;
        Ok(Written {
            view: ProductView::new(o.id.into(), product, o.created_at, o.updated_at, o.version),
            replayed: o.replayed,
        })
    }

    /// A product now.
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`; database and decoding errors.
    pub async fn product(&self, id: ProductId) -> Result<ProductView, AppError> {
        let loaded: Loaded<Product> = self.app.ledger().store().read(id).await?;
        let product = loaded
            .aggregate
            .state()
            .ok_or(DomainError::ProductNotFound(id))?;
        Ok(ProductView::new(
            id.into(),
            product,
            loaded.created_at,
            loaded.updated_at,
            loaded.version,
        ))
    }

    /// Products.
    ///
    /// # Errors
    /// Database errors.
    pub async fn products(&self, page: PageRequest) -> Result<Listed<ProductView>, AppError> {
        let rows = queries::products(self.app.pool(), page.after, page.limit).await?;
        Ok(Listed::of(
            rows,
            page.limit,
            |r| r.id,
            ProductView::from_row,
        ))
    }

    // ----- policies -----

    fn policy_view(o: &Outcome<Policy>) -> Result<Written<PolicyView>, AppError> {
        let policy = o
            .aggregate
            .state()
            .ok_or(AppError::Invariant("a policy command left no state"))?;
        Ok(Written {
            view: PolicyView::new(o.id.into(), policy, o.created_at, o.updated_at),
            replayed: o.replayed,
        })
    }

    /// Defines a policy (version 1).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn create_policy(
        &self,
        ctx: &CommandContext,
        product_id: ProductId,
        name: Name,
        terms: PolicyTerms,
    ) -> Result<Written<PolicyView>, AppError> {
        let o = self
            .app
            .ledger()
            .define_policy(ctx, product_id, name, terms)
            .await?;
        Self::policy_view(&o)
    }

    /// Revises a policy (its next version) or retires it.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn change_policy(
        &self,
        ctx: &CommandContext,
        id: PolicyId,
        action: PolicyAction,
    ) -> Result<Written<PolicyView>, AppError> {
        let o = self.app.ledger().change_policy(ctx, id, action).await?;
        Self::policy_view(&o)
    }

    /// A policy at its current version.
    ///
    /// # Errors
    /// `POLICY_NOT_FOUND`; database and decoding errors.
    pub async fn policy(&self, id: PolicyId) -> Result<PolicyView, AppError> {
        let loaded: Loaded<Policy> = self.app.ledger().store().read(id).await?;
        let policy = loaded
            .aggregate
            .state()
            .ok_or(DomainError::PolicyNotFound(id))?;
        Ok(PolicyView::new(
            id.into(),
            policy,
            loaded.created_at,
            loaded.updated_at,
        ))
    }

    /// Policies, optionally of one product.
    ///
    /// # Errors
    /// Database errors.
    pub async fn policies(
        &self,
        product_id: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Listed<PolicyView>, AppError> {
        let rows = queries::policies(self.app.pool(), product_id, page.after, page.limit).await?;
        Ok(Listed::of(rows, page.limit, |r| r.id, PolicyView::from_row))
    }
}
