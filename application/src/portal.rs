//! The portal's reads of an organization (API.md "Portal reads"): its licenses (and its
//! descendants'), its installations, and its entitlements per product, for any principal that
//! may read licenses there (reach; out of reach answers as an unknown organization).
//!
//! Installations and entitlements are folded here from the licenses' states in the read model
//! (`rm_licenses`, the License aggregate's own state), at most [`MAX_LICENSES`] licenses per
//! answer: a portal's organization holds tens or hundreds of licenses; an answer that would read
//! more says so (`complete: false`) instead of pretending.

use std::collections::BTreeMap;

use domain::Timestamp;
use domain::ids::OrganizationId;
use domain::reach::Action;
use domain::status::{LicenseStatus, status_at};
use domain::values::LicenseModel;
use projections::queries::{self, LicenseFilter, Order, Window};
use serde::Serialize;
use uuid::Uuid;

use crate::access::Access;
use crate::catalogue::{Listed, PageRequest};
use crate::lists::Scope;
use crate::views::{ActivationView, LicenseView};
use crate::{App, AppError};

/// The most licenses one installations or entitlements answer folds.
pub const MAX_LICENSES: i64 = 10_000;

/// An installation of one of the organization's licenses.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallationView {
    pub license_id: Uuid,
    pub organization_id: Uuid,
    pub product_id: Uuid,
    #[serde(flatten)]
    pub installation: ActivationView,
}

/// What an organization is entitled to for one product, from its usable licenses (active,
/// trialing or past due with grace).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntitlementView {
    pub product_id: Uuid,
    /// The features of any usable license, sorted.
    pub features: Vec<String>,
    pub seats_total: u64,
    /// Seats in use: active installations, or users named on `named_user` licenses.
    pub seats_used: u64,
    pub licenses: u32,
    /// The latest end among them; `null` when one of them is perpetual.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    /// The latest end of maintenance among them, if any has one.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub maintenance_until: Option<Timestamp>,
}

/// One license's subscription (`GET /v1/organizations/{id}/subscriptions`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseSubscriptionView {
    pub license_id: Uuid,
    pub organization_id: Uuid,
    pub product_id: Uuid,
    #[serde(flatten)]
    pub subscription: crate::views::SubscriptionView,
}

/// `GET /v1/organizations/{id}/subscriptions`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionsView {
    pub organization_id: Uuid,
    pub include_descendants: bool,
    pub subscriptions: Vec<LicenseSubscriptionView>,
    /// False when the organization holds more than the licenses one answer reads (10,000).
    pub complete: bool,
}

/// `GET /v1/organizations/{id}/entitlements`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntitlementsView {
    pub organization_id: Uuid,
    pub include_descendants: bool,
    pub products: Vec<EntitlementView>,
    /// False when the organization holds more than the licenses one answer reads (10,000).
    pub complete: bool,
}

/// A release one of the organization's licenses sees (`GET /v1/organizations/{id}/releases`).
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibleReleaseView {
    #[serde(flatten)]
    pub release: crate::views::ReleaseView,
    /// The licenses of the subtree that see it now: ask a download link for one of them.
    pub license_ids: Vec<Uuid>,
}

/// `GET /v1/organizations/{id}/releases`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibleReleasesView {
    pub organization_id: Uuid,
    /// Newest version first within each product.
    pub releases: Vec<VisibleReleaseView>,
    /// False when the subtree holds more than the licenses one answer reads (10,000).
    pub complete: bool,
}

/// The portal use cases of an [`App`].
#[derive(Clone, Copy, Debug)]
pub struct Portal<'a> {
    app: &'a App,
}

impl App {
    /// The portal's reads.
    pub fn portal(&self) -> Portal<'_> {
        Portal { app: self }
    }
}

impl Portal<'_> {
    /// Checks `id` exists and `access` may read licenses there.
    async fn authorize(&self, access: &Access, id: OrganizationId) -> Result<(), AppError> {
        self.app
            .authorize_organization(access, id, Action::ReadLicenses)
            .await
    }

    /// The licenses of organization `id` (with its descendants' when asked), a page at a time.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), `INVALID_CURSOR`; database errors.
    pub async fn licenses(
        &self,
        access: &Access,
        id: OrganizationId,
        include_descendants: bool,
        page: PageRequest,
    ) -> Result<Listed<LicenseView>, AppError> {
        self.authorize(access, id).await?;
        if !include_descendants {
            return self.app.catalogue().organization_licenses(id, page).await;
        }
        let scope = Scope::new("organization licenses")
            .with("organization_id", Some(id))
            .with("include_descendants", Some(true));
        let cursors = self.app.cursors();
        let window = cursors.window(&scope, &page)?;
        let filter = self.filter(id, true).await?;
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

    /// The audit trail of organization `id` and its descendants (the tree as it is now): its
    /// licenses' events, its own and its users', newest first, for a principal that may read
    /// licenses there (out of reach: as an unknown organization).
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), `INVALID_CURSOR`; database errors.
    pub async fn audit(
        &self,
        access: &Access,
        id: OrganizationId,
        page: PageRequest,
    ) -> Result<Listed<projections::queries::AuditRow>, AppError> {
        self.authorize(access, id).await?;
        // The tree's guard is released before the query.
        let organizations: Vec<Uuid> = {
            let tree = self.app.tree().await?;
            tree.tree().subtree(id).map(Uuid::from).collect()
        };
        self.app
            .audit(
                &queries::AuditFilter {
                    organizations: Some(organizations),
                    ..queries::AuditFilter::default()
                },
                page,
            )
            .await
    }

    /// The licenses of `id`, or of its subtree as the in-memory tree holds it now (a moved
    /// subsidiary leaves its former parent's lists at once, not when the read model catches up).
    async fn filter(
        &self,
        id: OrganizationId,
        include_descendants: bool,
    ) -> Result<LicenseFilter, AppError> {
        let subtree = if include_descendants {
            let tree = self.app.tree().await?;
            Some(tree.tree().subtree(id).map(Uuid::from).collect())
        } else {
            None
        };
        Ok(LicenseFilter {
            organization_id: Some(id.into()),
            include_descendants,
            subtree,
            ..LicenseFilter::default()
        })
    }

    /// The licenses folded by installations and entitlements, and whether that is all of them.
    async fn all_licenses(
        &self,
        id: OrganizationId,
        include_descendants: bool,
    ) -> Result<(Vec<queries::LicenseRow>, bool), AppError> {
        let filter = self.filter(id, include_descendants).await?;
        let now = self.app.now();
        let mut rows: Vec<queries::LicenseRow> = Vec::new();
        let mut window = Window::first(Order::Asc, queries::MAX_PAGE);
        // Pages of the list (each a window of at most MAX_PAGE, and one more to tell whether
        // more follow), until the end or the cap.
        loop {
            let mut page = queries::licenses(self.app.pool(), &filter, now, &window).await?;
            let more = page.len() as i64 > queries::MAX_PAGE;
            page.truncate(queries::MAX_PAGE as usize);
            window.after = page.last().map(|r| r.id);
            rows.extend(page);
            if rows.len() as i64 > MAX_LICENSES {
                rows.truncate(MAX_LICENSES as usize);
                return Ok((rows, false));
            }
            if !more {
                return Ok((rows, true));
            }
        }
    }

    /// The installations of organization `id`'s licenses (with its descendants' when asked), by
    /// installation id, a page at a time.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), `INVALID_CURSOR`; database errors.
    pub async fn installations(
        &self,
        access: &Access,
        id: OrganizationId,
        include_descendants: bool,
        page: PageRequest,
    ) -> Result<Listed<InstallationView>, AppError> {
        self.authorize(access, id).await?;
        let scope = Scope::new("organization installations")
            .with("organization_id", Some(id))
            .with("include_descendants", include_descendants.then_some(true));
        let cursors = self.app.cursors();
        let window = cursors.window::<Uuid>(&scope, &page)?;
        let (rows, _) = self.all_licenses(id, include_descendants).await?;
        let now = self.app.now();
        let mut all: Vec<InstallationView> = rows
            .iter()
            .flat_map(|r| {
                let view = LicenseView::new(r.id, &r.state, None, None, r.version, now);
                let (license_id, organization_id, product_id) =
                    (view.id, view.organization_id, view.product_id);
                view.activations
                    .into_iter()
                    .map(move |installation| InstallationView {
                        license_id,
                        organization_id,
                        product_id,
                        installation,
                    })
            })
            .filter(|i| {
                window.after.is_none_or(|after| match window.order {
                    Order::Asc => i.installation.installation_id > after,
                    Order::Desc => i.installation.installation_id < after,
                })
            })
            .collect();
        all.sort_by_key(|i| i.installation.installation_id);
        if window.order == Order::Desc {
            all.reverse();
        }
        Ok(cursors.page(
            &scope,
            &window,
            all,
            |i| i.installation.installation_id,
            |i| i,
        ))
    }

    /// The subscriptions of organization `id`'s licenses (with its descendants' when asked), for a
    /// principal that may read billing there (`billing_admin`, `customer_admin`, vendor roles).
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), 403 without `ReadBilling`; database
    /// errors.
    pub async fn subscriptions(
        &self,
        access: &Access,
        id: OrganizationId,
        include_descendants: bool,
    ) -> Result<SubscriptionsView, AppError> {
        self.app
            .authorize_organization(access, id, Action::ReadBilling)
            .await?;
        let (rows, complete) = self.all_licenses(id, include_descendants).await?;
        let subscriptions = rows
            .iter()
            .filter_map(|r| {
                Some(LicenseSubscriptionView {
                    license_id: r.id,
                    organization_id: r.state.organization_id.into(),
                    product_id: r.state.product_id.into(),
                    subscription: crate::views::SubscriptionView::of(&r.state)?,
                })
            })
            .collect();
        Ok(SubscriptionsView {
            organization_id: id.into(),
            include_descendants,
            subscriptions,
            complete,
        })
    }

    /// What organization `id` (with its descendants when asked) is entitled to, per product.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach); database errors.
    pub async fn entitlements(
        &self,
        access: &Access,
        id: OrganizationId,
        include_descendants: bool,
    ) -> Result<EntitlementsView, AppError> {
        self.authorize(access, id).await?;
        let (rows, complete) = self.all_licenses(id, include_descendants).await?;
        let now = self.app.now();
        let mut products: BTreeMap<Uuid, (EntitlementView, bool)> = BTreeMap::new();
        for r in &rows {
            if !matches!(
                status_at(&r.state, now),
                LicenseStatus::Active | LicenseStatus::Trialing | LicenseStatus::PastDue
            ) {
                continue;
            }
            let view = LicenseView::new(r.id, &r.state, None, None, r.version, now);
            let (entry, perpetual) = products.entry(view.product_id).or_insert_with(|| {
                (
                    EntitlementView {
                        product_id: view.product_id,
                        features: Vec::new(),
                        seats_total: 0,
                        seats_used: 0,
                        licenses: 0,
                        expires_at: None,
                        maintenance_until: None,
                    },
                    false,
                )
            });
            entry.licenses += 1;
            entry.seats_total += u64::from(view.seats);
            // A named-user license's seats are its assignees; the others' their installations.
            entry.seats_used += if r.state.terms.model == LicenseModel::NamedUser {
                u64::from(r.state.named_seats_used())
            } else {
                view.activations.len() as u64
            };
            for f in view.features {
                if !entry.features.contains(&f) {
                    entry.features.push(f);
                }
            }
            match view.expires_at {
                None => *perpetual = true,
                Some(end) => entry.expires_at = entry.expires_at.max(Some(end)),
            }
            entry.maintenance_until = entry.maintenance_until.max(view.maintenance_until);
        }
        Ok(EntitlementsView {
            organization_id: id.into(),
            include_descendants,
            products: products
                .into_values()
                .map(|(mut e, perpetual)| {
                    e.features.sort();
                    if perpetual {
                        e.expires_at = None;
                    }
                    e
                })
                .collect(),
            complete,
        })
    }

    /// The releases any license of organization `id`'s subtree sees now (DOMAIN.md "Release
    /// visibility", decided per license), optionally of one product and with a file for one
    /// platform (`any` files count for every platform; only those files are listed), for
    /// whoever may read licenses there.
    ///
    /// # Errors
    /// `ORGANIZATION_NOT_FOUND` (unknown or out of reach), 403; database errors.
    pub async fn releases(
        &self,
        access: &Access,
        id: OrganizationId,
        product_id: Option<Uuid>,
        platform: Option<domain::values::Platform>,
    ) -> Result<VisibleReleasesView, AppError> {
        // Listing is reading (vendor support and auditors too); links need `Download`.
        self.authorize(access, id).await?;
        let (licenses, complete) = self.all_licenses(id, true).await?;
        let now = self.app.now();
        let mut products: Vec<Uuid> = licenses
            .iter()
            .map(|l| Uuid::from(l.state.product_id))
            .filter(|p| product_id.is_none_or(|wanted| wanted == *p))
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut releases = Vec::new();
        for product in products {
            let mut seen: Vec<(domain::release::Version, VisibleReleaseView)> = Vec::new();
            for mut row in queries::published_releases(self.app.pool(), product).await? {
                if let Some(platform) = platform {
                    row.artifacts
                        .retain(|a| crate::releases::runs_on(a, platform, None));
                    if row.artifacts.is_empty() {
                        continue;
                    }
                }
                let Some(facts) = crate::releases::release_facts(&row) else {
                    continue;
                };
                let license_ids: Vec<Uuid> = licenses
                    .iter()
                    .filter(|l| {
                        domain::release::visibility(
                            &facts,
                            &l.state,
                            &domain::download::sight_of(&l.state),
                            now,
                        )
                        .is_ok()
                    })
                    .map(|l| l.id)
                    .collect();
                if !license_ids.is_empty() {
                    seen.push((
                        facts.version,
                        VisibleReleaseView {
                            release: crate::views::ReleaseView::from_row(row),
                            license_ids,
                        },
                    ));
                }
            }
            seen.sort_by(|a, b| b.0.cmp(&a.0));
            releases.extend(seen.into_iter().map(|(_, r)| r));
        }
        Ok(VisibleReleasesView {
            organization_id: id.into(),
            releases,
            complete,
        })
    }
}
