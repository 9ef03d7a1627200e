//! Organizations, products and policies: the catalogue the licenses are issued from.

use domain::ids::{AppId, OrganizationId, PolicyId, ProductId};
use domain::organization::{Organization, OrganizationAction, OrganizationCommand};
use domain::policy::{Policy, PolicyAction, PolicyCommand, PolicyTerms};
use domain::product::{Product, ProductAction, ProductCommand};
use domain::values::{KeyPrefix, Name, OrganizationKind, ProductKind};
use uuid::Uuid;

use super::{Ledger, LedgerError};
use crate::executor::{CommandContext, Outcome};

/// A new organization.
#[derive(Clone, Debug)]
pub struct NewOrganization {
    pub name: Name,
    pub kind: OrganizationKind,
    pub parent_id: Option<OrganizationId>,
}

/// A new product.
#[derive(Clone, Debug)]
pub struct NewProduct {
    pub name: Name,
    pub kind: ProductKind,
    /// Generated (random) when absent.
    pub app_id: Option<AppId>,
    pub parent_product_id: Option<ProductId>,
    /// Derived from the name when absent.
    pub key_prefix: Option<KeyPrefix>,
}

impl Ledger {
    /// Registers an organization.
    ///
    /// # Errors
    /// Refusals ([`DomainError`]) and infrastructure errors.
    pub async fn register_organization(
        &self,
        ctx: &CommandContext,
        input: NewOrganization,
    ) -> Result<Outcome<Organization>, LedgerError> {
        let id = OrganizationId::from_uuid(Uuid::now_v7());
        let parent = match input.parent_id {
            Some(parent_id) => Some(self.organization_ref(parent_id).await?),
            None => None,
        };
        let command = OrganizationCommand {
            organization_id: id,
            at: self.now(),
            action: OrganizationAction::Register {
                name: input.name,
                kind: input.kind,
                parent,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    // ----- products -----

    /// Defines a product; its App GUID is claimed for it alone.
    ///
    /// # Errors
    /// Refusals, a taken App GUID ([`CommandError::ClaimTaken`]), infrastructure errors.
    pub async fn define_product(
        &self,
        ctx: &CommandContext,
        input: NewProduct,
    ) -> Result<Outcome<Product>, LedgerError> {
        let id = ProductId::from_uuid(Uuid::now_v7());
        let parent = match input.parent_product_id {
            Some(parent_id) => Some(self.product_ref(parent_id).await?),
            None => None,
        };
        let app_id = match input.app_id {
            Some(app_id) => app_id,
            None => AppId::parse(Uuid::new_v4()).expect("a v4 UUID is never nil"),
        };
        let key_prefix = input
            .key_prefix
            .unwrap_or_else(|| KeyPrefix::from_product_name(&input.name));
        let command = ProductCommand {
            product_id: id,
            at: self.now(),
            action: ProductAction::Define {
                name: input.name,
                kind: input.kind,
                app_id,
                parent,
                key_prefix,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    // ----- policies -----

    /// Defines a policy (version 1).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn define_policy(
        &self,
        ctx: &CommandContext,
        product_id: ProductId,
        name: Name,
        terms: PolicyTerms,
    ) -> Result<Outcome<Policy>, LedgerError> {
        let id = PolicyId::from_uuid(Uuid::now_v7());
        let product = self.product_ref(product_id).await?;
        let command = PolicyCommand {
            policy_id: id,
            at: self.now(),
            action: PolicyAction::Define {
                product,
                name,
                terms,
            },
        };
        Ok(self.store.execute_new(id, command, ctx).await?)
    }

    /// Revises a policy (next version) or retires it.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn change_policy(
        &self,
        ctx: &CommandContext,
        id: PolicyId,
        action: PolicyAction,
    ) -> Result<Outcome<Policy>, LedgerError> {
        let command = PolicyCommand {
            policy_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(id, command, ctx).await?)
    }
}
