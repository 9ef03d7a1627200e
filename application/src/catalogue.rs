//! The catalogue as a use case: organizations, products and policies — defined through the
//! command services, read back by folding their stream (read-your-writes), listed from the read
//! models (which may trail the log by the projector's lag).

use commands::ledger::{NewOrganization, NewProduct};
use commands::{CommandContext, Loaded, Outcome};
use domain::DomainError;
use domain::Timestamp;
use domain::ids::LicenseId;
use domain::ids::{OrganizationId, PolicyId, ProductId};
use domain::keys::SupportPrefixSearch;
use domain::organization::Organization;
use domain::policy::{Policy, PolicyAction, PolicyTerms};
use domain::product::Product;
use domain::reach::Action;
use domain::status::LicenseStatus;
use domain::values::Name;
use projections::queries::{self, LicenseFilter, OrganizationFilter};
use uuid::Uuid;

use crate::lists::Scope;
use crate::views::{
    ActivationView, LicenseView, OrganizationView, PolicyView, ProductView, Written,
};
use crate::{App, AppError};

pub use crate::lists::{Listed, PageRequest};

/// The filters of the license list (`GET /v1/licenses`), as the caller gave them.
#[derive(Clone, Debug, Default)]
pub struct LicenseQuery {
    pub organization_id: Option<Uuid>,
    /// With `organization_id`: its descendants' licenses too.
    pub include_descendants: bool,
    pub product_id: Option<Uuid>,
    pub policy_id: Option<Uuid>,
    pub status: Option<LicenseStatus>,
    /// The start of a license key as support typed it ([`SupportPrefixSearch`]).
    pub key_prefix: Option<String>,
    pub expires_before: Option<Timestamp>,
    /// Licenses naming this user (named-user assignments).
    pub user_id: Option<Uuid>,
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
        organization_written(self.app.ledger().register_organization(ctx, input).await?)
    }

    /// Whether `access` may register an organization of `kind` below `parent_id`: under a parent, whoever manages organizations
    /// there (a customer administrator creates its locations; a parent out of reach answers
    /// as an unknown one); a new root, vendor administration only. Partners receive other
    /// customers' delegations and vendor organizations hold vendor roles: only the vendor's
    /// administrators create those; a customer creates customers. The API and the web UI ask
    /// the same.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (the parent), 403; database errors.
    pub async fn authorize_new_organization(
        &self,
        access: &crate::access::Access,
        parent_id: Option<OrganizationId>,
        kind: domain::values::OrganizationKind,
    ) -> Result<(), AppError> {
        match parent_id {
            Some(parent) => {
                self.app
                    .authorize_organization(access, parent, Action::ManageOrganizations)
                    .await?;
            }
            None => self.app.authorize_everywhere(access, Action::Administer)?,
        }
        if !Self::registrable_kinds(access).contains(&kind) {
            self.app.authorize_everywhere(access, Action::Administer)?;
        }
        Ok(())
    }

    /// The kinds of organization `access` may register (where it may register at all):
    /// every kind for the vendor's administrators, customers for anyone else.
    pub fn registrable_kinds(
        access: &crate::access::Access,
    ) -> &'static [domain::values::OrganizationKind] {
        use domain::values::OrganizationKind as K;
        if access.may_everywhere(Action::Administer) {
            &[K::Customer, K::Partner, K::Vendor]
        } else {
            &[K::Customer]
        }
    }

    /// Renames an organization.
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn rename_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        name: Name,
    ) -> Result<Written<OrganizationView>, AppError> {
        organization_written(self.app.ledger().rename_organization(ctx, id, name).await?)
    }

    /// Moves an organization, with everything below it, under `parent_id` (`None`: to the
    /// root). Moves are serialized across processes, so the tree never holds a cycle.
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_CYCLE`, `ORGANIZATION_TOO_DEEP`, ...) and infrastructure errors.
    pub async fn move_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        parent_id: Option<OrganizationId>,
    ) -> Result<Written<OrganizationView>, AppError> {
        organization_written(
            self.app
                .ledger()
                .move_organization(ctx, id, parent_id)
                .await?,
        )
    }

    /// Closes an organization (its children stay open where they are).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn close_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
    ) -> Result<Written<OrganizationView>, AppError> {
        organization_written(self.app.ledger().close_organization(ctx, id).await?)
    }

    /// Delegates the administration of an organization to a partner organization.
    ///
    /// # Errors
    /// Refusals (`NOT_A_PARTNER`, `DELEGATION_ALREADY_GRANTED`, ...) and infrastructure errors.
    pub async fn grant_partner_delegation(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        partner_id: OrganizationId,
    ) -> Result<Written<OrganizationView>, AppError> {
        organization_written(
            self.app
                .ledger()
                .grant_partner_delegation(ctx, id, partner_id)
                .await?,
        )
    }

    /// Ends a partner's delegation.
    ///
    /// # Errors
    /// Refusals (`DELEGATION_NOT_GRANTED`, ...) and infrastructure errors.
    pub async fn revoke_partner_delegation(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        partner_id: OrganizationId,
    ) -> Result<Written<OrganizationView>, AppError> {
        organization_written(
            self.app
                .ledger()
                .revoke_partner_delegation(ctx, id, partner_id)
                .await?,
        )
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

    /// Organizations that pass `filter`.
    ///
    /// # Errors
    /// `INVALID_CURSOR`; database errors.
    pub async fn organizations(
        &self,
        filter: OrganizationFilter,
        page: PageRequest,
    ) -> Result<Listed<OrganizationView>, AppError> {
        let scope = Scope::new("organizations")
            .with("parent_id", filter.parent_id)
            .with("kind", filter.kind.as_deref())
            .with("q", filter.q.as_deref());
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let rows = queries::organizations(self.app.pool(), &filter, &window).await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, OrganizationView::from_row))
    }

    /// The direct children of an organization (read model, which may trail the log), by id.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND`, `INVALID_CURSOR`; database errors.
    pub async fn organization_children(
        &self,
        id: OrganizationId,
        page: PageRequest,
    ) -> Result<Listed<OrganizationView>, AppError> {
        // A list of its own: a cursor of `GET /v1/organizations?parent_id=` is not one of these.
        let scope = Scope::new("organization children").with("organization_id", Some(id));
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        // From the log, as `organization` reads it: an organization registered a moment ago
        // exists (with no children yet) even while the read model trails.
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
        let filter = OrganizationFilter {
            parent_id: Some(id.into()),
            ..OrganizationFilter::default()
        };
        let rows = queries::organizations(self.app.pool(), &filter, &window).await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, OrganizationView::from_row))
    }

    /// The licenses of an organization (read model), status derived now.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND`, `INVALID_CURSOR`; database errors.
    pub async fn organization_licenses(
        &self,
        id: OrganizationId,
        page: PageRequest,
    ) -> Result<Listed<LicenseView>, AppError> {
        let scope = Scope::new("organization licenses").with("organization_id", Some(id));
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
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
        let rows = queries::organization_licenses(self.app.pool(), id.into(), &window).await?;
        let now = self.app.now();
        Ok(cursors.page(
            &scope,
            &window,
            rows,
            |r| r.id,
            |r| LicenseView::from_row(&r, now),
        ))
    }

    // ----- licenses -----

    /// Licenses that pass every filter of `query`, status derived now (read model).
    ///
    /// # Errors
    /// `INVALID_CURSOR`; a malformed key prefix (`InvalidParameter`); database errors.
    pub async fn licenses(
        &self,
        query: LicenseQuery,
        page: PageRequest,
    ) -> Result<Listed<LicenseView>, AppError> {
        let key_prefix = query
            .key_prefix
            .as_deref()
            .map(SupportPrefixSearch::parse)
            .transpose()
            .map_err(|e| AppError::InvalidParameter {
                field: "key_prefix",
                detail: e.to_string(),
            })?;
        let scope = Scope::new("licenses")
            .with("organization_id", query.organization_id)
            .with(
                "include_descendants",
                query.include_descendants.then_some(true),
            )
            .with("product_id", query.product_id)
            .with("policy_id", query.policy_id)
            .with("status", query.status.map(LicenseStatus::as_str))
            .with(
                "key_prefix",
                key_prefix.as_ref().map(SupportPrefixSearch::as_str),
            )
            .with(
                "expires_before",
                query.expires_before.map(|t| t.to_rfc3339()),
            )
            .with("user_id", query.user_id);
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let filter = LicenseFilter {
            organization_id: query.organization_id,
            include_descendants: query.include_descendants,
            subtree: None,
            product_id: query.product_id,
            policy_id: query.policy_id,
            status: query.status,
            key_prefix: key_prefix.as_ref().map(SupportPrefixSearch::range),
            expires_before: query.expires_before,
            user_id: query.user_id,
        };
        let now = self.app.now();
        let rows = queries::licenses(self.app.pool(), &filter, now, &window).await?;
        Ok(cursors.page(
            &scope,
            &window,
            rows,
            |r| r.id,
            |r| LicenseView::from_row(&r, now),
        ))
    }

    /// The installations of a license now, by installation id (read from its stream, like the
    /// license itself).
    ///
    /// # Errors
    /// `LICENSE_NOT_FOUND`, `INVALID_CURSOR`; database and decoding errors.
    pub async fn installations(
        &self,
        id: LicenseId,
        page: PageRequest,
    ) -> Result<Listed<ActivationView>, AppError> {
        let scope = Scope::new("installations").with("license_id", Some(id));
        let cursors = self.app.cursors();
        let window = cursors.window::<Uuid>(&scope, &page)?;
        let license = self.app.licenses().get(id).await?;
        // The view lists them by installation id (a BTreeMap's order), oldest first.
        let mut rows: Vec<ActivationView> = license
            .activations
            .into_iter()
            .filter(|a| {
                window.after.is_none_or(|after| match window.order {
                    queries::Order::Asc => a.installation_id > after,
                    queries::Order::Desc => a.installation_id < after,
                })
            })
            .collect();
        if window.order == queries::Order::Desc {
            rows.reverse();
        }
        // `page` keeps the first `limit` and tells from the rest whether more follow.
        Ok(cursors.page(&scope, &window, rows, |a| a.installation_id, |a| a))
    }

    /// The display names of the organizations and products among `ids` (and the key prefixes of
    /// the licenses), for pages that would otherwise show ids. From the read models: one registered a moment ago may be
    /// missing (the page shows its id). Names are not a secret of reach: a caller shows only
    /// names of ids it was allowed to see.
    ///
    /// # Errors
    /// Database errors.
    pub async fn names(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<std::collections::HashMap<Uuid, String>, AppError> {
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(queries::names(self.app.pool(), &ids)
            .await?
            .into_iter()
            .collect())
    }

    /// The e-mail addresses of the users among `ids`, for an audit page's actors: every user
    /// for the vendor (`within` `None`), else only those homed at organization `within` or
    /// below it (the vendor's staff, and other customers' people, stay ids).
    ///
    /// # Errors
    /// Database errors.
    pub async fn user_emails(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        within: Option<OrganizationId>,
    ) -> Result<std::collections::HashMap<Uuid, String>, AppError> {
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let homes: Option<Vec<Uuid>> = match within {
            Some(id) => {
                let tree = self.app.tree().await?;
                Some(tree.tree().subtree(id).map(Uuid::from).collect())
            }
            None => None,
        };
        Ok(
            queries::user_emails(self.app.pool(), &ids, homes.as_deref())
                .await?
                .into_iter()
                .collect(),
        )
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
    /// `INVALID_CURSOR`; database errors.
    pub async fn products(&self, page: PageRequest) -> Result<Listed<ProductView>, AppError> {
        let scope = Scope::new("products");
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let rows = queries::products(self.app.pool(), &window).await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, ProductView::from_row))
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

    /// Links Stripe prices `price_ids` to policy `id` (the set replaces the one before).
    ///
    /// # Errors
    /// `POLICY_NOT_FOUND`, `POLICY_RETIRED`, `PRICE_LINKED_ELSEWHERE` (409); infrastructure
    /// errors.
    pub async fn link_stripe_prices(
        &self,
        ctx: &CommandContext,
        id: PolicyId,
        price_ids: std::collections::BTreeSet<domain::billing::PriceId>,
    ) -> Result<Written<PolicyView>, AppError> {
        let o = self
            .app
            .ledger()
            .link_policy_prices(ctx, id, domain::billing::STRIPE, price_ids)
            .await?;
        if !o.events.is_empty() {
            // Events that failed for want of this link (a subscription whose price no policy
            // held) are taken again now, not at their back-off or never.
            self.app.rearm_failed_billing_events().await?;
        }
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
    /// `INVALID_CURSOR`; database errors.
    pub async fn policies(
        &self,
        product_id: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Listed<PolicyView>, AppError> {
        let scope = Scope::new("policies").with("product_id", product_id);
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let rows = queries::policies(self.app.pool(), product_id, &window).await?;
        Ok(cursors.page(&scope, &window, rows, |r| r.id, PolicyView::from_row))
    }
}

/// The answer of an organization command: the organization as the command left it.
fn organization_written(o: Outcome<Organization>) -> Result<Written<OrganizationView>, AppError> {
    let state = o
        .aggregate
        .state()
        .ok_or(AppError::Invariant("an organization command left no state"))?;
    Ok(Written {
        view: OrganizationView::new(o.id.into(), state, o.created_at, o.updated_at, o.version),
        replayed: o.replayed,
    })
}
