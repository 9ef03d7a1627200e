//! Organizations, products and policies: the catalogue the licenses are issued from.

use std::collections::{BTreeMap, BTreeSet};

use domain::AggregateType;
use domain::billing::PriceId;
use domain::ids::{AppId, OrganizationId, PolicyId, ProductId};
use domain::organization::{MAX_DEPTH, Organization, OrganizationAction, OrganizationCommand};
use domain::policy::{Policy, PolicyAction, PolicyCommand, PolicyTerms};
use domain::product::{Product, ProductAction, ProductCommand};
use domain::values::{KeyPrefix, Name, OrganizationKind, ProductKind};
use tracing::Instrument;
use uuid::Uuid;

use super::{Ledger, LedgerError};

use crate::executor::{CommandContext, CommandError, Outcome};
use crate::locks::{DatabaseLock, ORGANIZATION_TREE_LOCK, PRICE_LINKS_LOCK, is_lock_timeout};

/// The in-process queue of moves (a [`crate::locks::KeyedLocks`] key no aggregate type has).
const TREE_QUEUE: &str = "organization tree";

/// How `pg_stat_activity` shows the connection that holds [`ORGANIZATION_TREE_LOCK`].
const TREE_LOCK_APPLICATION_NAME: &str = "license-ledger organization tree";

/// How many levels lie below an organization now (`$2`, as its stream id), from the log: each
/// organization's parent is the one its last `OrganizationRegistered` or `OrganizationMoved`
/// names (payload fields `parent_id` and `new_parent_id` of the stored version 1 events, which
/// never change; a new version of either event must be read here too). The walk down stops at
/// `$3` levels (MAX_DEPTH: no tree is deeper), so even a corrupt log cannot make it loop.
const SUBTREE_HEIGHT_SQL: &str = "
WITH RECURSIVE parents AS MATERIALIZED (
    SELECT DISTINCT ON (aggregate_id) aggregate_id AS id,
           CASE event_type WHEN 'OrganizationMoved' THEN payload ->> 'new_parent_id'
                           ELSE payload ->> 'parent_id' END AS parent_id
    FROM events
    WHERE aggregate_type = $1 AND event_type IN ('OrganizationRegistered', 'OrganizationMoved')
    ORDER BY aggregate_id, sequence DESC
), below (id, depth) AS (
    SELECT $2::text, 0
    UNION ALL
    SELECT p.id, b.depth + 1 FROM below b JOIN parents p ON p.parent_id = b.id
    WHERE b.depth < $3
)
SELECT max(depth) FROM below";

/// The in-process queue of price links (a [`crate::locks::KeyedLocks`] key no aggregate type has).
const PRICES_QUEUE: &str = "gateway prices";

/// How `pg_stat_activity` shows the connection that holds [`PRICE_LINKS_LOCK`].
const PRICES_LOCK_APPLICATION_NAME: &str = "license-ledger price links";

/// The prices each policy that is not retired holds now, from the log (`$1` the policy
/// aggregate type, `$2` the gateway): the last `PolicyPricesLinked` of each policy and gateway
/// (payload fields `gateway` and `price_ids` of the stored version 1 event, which never
/// change; a new version must be read here too). Partial index `events_policy_prices`
/// (migration 0016); a handful of events per policy.
const PRICES_HELD_SQL: &str = "
SELECT p.price_id, l.aggregate_id
FROM (
    SELECT DISTINCT ON (aggregate_id) aggregate_id, payload
    FROM events
    WHERE event_type = 'PolicyPricesLinked' AND aggregate_type = $1 AND payload ->> 'gateway' = $2
    ORDER BY aggregate_id, sequence DESC
) l
CROSS JOIN LATERAL json_array_elements_text(l.payload -> 'price_ids') AS p(price_id)
WHERE NOT EXISTS (
    SELECT 1 FROM events r
    WHERE r.aggregate_type = $1 AND r.aggregate_id = l.aggregate_id AND r.event_type = 'PolicyRetired'
)";

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
        self.register_organization_as(ctx, OrganizationId::from_uuid(Uuid::now_v7()), input)
            .await
    }

    /// Registers organization `id`: for an id derived from what it stands for (a payment
    /// gateway's customer), so that registering twice registers once (the second command is
    /// refused `ALREADY_EXISTS`).
    ///
    /// # Errors
    /// Refusals and infrastructure errors.
    pub async fn register_organization_as(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        input: NewOrganization,
    ) -> Result<Outcome<Organization>, LedgerError> {
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

    /// Renames an organization (the same name: nothing happens).
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND`, `ORGANIZATION_CLOSED`) and infrastructure errors.
    pub async fn rename_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        name: Name,
    ) -> Result<Outcome<Organization>, LedgerError> {
        self.organization_command(ctx, id, OrganizationAction::Rename { name })
            .await
    }

    /// Moves an organization, with everything below it, under `new_parent_id` (`None`: it
    /// becomes a root).
    ///
    /// The domain decides from facts about other organizations — the new parent's lineage and
    /// the height of the moved subtree — that a concurrent move could change without touching
    /// this organization's stream: A moved under B and B under A would each read the other's
    /// old lineage, both append, and the tree would hold a cycle. So every move, in every
    /// process, holds [`ORGANIZATION_TREE_LOCK`] from before it reads its facts until its event
    /// has committed, and moves happen one after another. Registrations do not take it (they
    /// would each open a connection for it): a new organization is a leaf and cannot close a
    /// cycle. A registration racing a move of one of its ancestors can at worst leave that leaf
    /// one level deeper than MAX_DEPTH; nothing is placed below it then (its lineage is cut at
    /// MAX_DEPTH, which is refused as too deep), so the cycle check, which needs whole lineages,
    /// stays exact.
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND`, `ORGANIZATION_CLOSED`, `ORGANIZATION_CYCLE`,
    /// `ORGANIZATION_TOO_DEEP`), [`CommandError::Conflict`] when other moves held the tree for
    /// 10 s, and infrastructure errors.
    pub async fn move_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        new_parent_id: Option<OrganizationId>,
    ) -> Result<Outcome<Organization>, LedgerError> {
        self.serialized(
            TREE_QUEUE,
            ORGANIZATION_TREE_LOCK,
            TREE_LOCK_APPLICATION_NAME,
            ctx,
            move |ledger, ctx| async move { ledger.move_locked(&ctx, id, new_parent_id).await },
        )
        .await
    }

    /// Runs `decide` one at a time across every node: queued in the process on `queue`, then
    /// under the database's advisory lock `key`, held from before `decide` reads its facts
    /// until its append has committed.
    ///
    /// In a task of its own, which a request cancelled midway (its client gone, its deadline
    /// past) does not cut: the lock must outlive an append already sent, which commits
    /// whatever becomes of the request, or the next command could read its facts before it.
    /// The executor's idempotency marks are task-local: they are carried back to this task.
    async fn serialized<T, F, Fut>(
        &self,
        queue: &'static str,
        key: i64,
        application_name: &'static str,
        ctx: &CommandContext,
        decide: F,
    ) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(Self, CommandContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, LedgerError>> + Send,
    {
        let ledger = self.clone();
        let ctx = ctx.clone();
        let serialized = tokio::spawn(
            crate::replays::observe(async move {
                // Queued in the process first: a process waits on the database with one
                // connection.
                let _queued = ledger.store.locks().lock(queue, "").await;
                let lock = DatabaseLock::acquire(ledger.store.pool(), key, application_name)
                    .await
                    .map_err(|e| {
                        if is_lock_timeout(&e) {
                            // Others held the lock all along: like a stream that kept changing.
                            CommandError::Conflict {
                                aggregate_type: queue,
                                attempts: 1,
                            }
                        } else {
                            CommandError::Database(e)
                        }
                    })?;
                let decided = decide(ledger.clone(), ctx).await;
                // Released only now: the events have committed (an autocommit append) or were
                // refused.
                lock.release().await;
                decided
            })
            .instrument(tracing::Span::current()),
        );
        let (decided, seen) = match serialized.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only a runtime shutting down cancels a task.
            Err(_) => return Err(CommandError::Database(sqlx::Error::PoolClosed).into()),
        };
        if seen.recorded {
            crate::replays::mark_recorded();
        }
        if seen.replayed {
            crate::replays::mark_replayed();
        }
        decided
    }

    /// The move itself, under the tree lock: facts read now are current until the append.
    async fn move_locked(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        new_parent_id: Option<OrganizationId>,
    ) -> Result<Outcome<Organization>, LedgerError> {
        let new_parent = match new_parent_id {
            Some(parent_id) => Some(self.organization_ref(parent_id).await?),
            None => None,
        };
        let subtree_height = self.subtree_height(id).await?;
        self.organization_command(
            ctx,
            id,
            OrganizationAction::MoveSubtree {
                new_parent,
                subtree_height,
            },
        )
        .await
    }

    /// How many levels lie below `id` now (0 for a leaf, or for an unknown id), read from the
    /// log rather than a read model: the write side never trusts the projections' lag.
    async fn subtree_height(&self, id: OrganizationId) -> Result<usize, LedgerError> {
        let height: Option<i32> = sqlx::query_scalar(SUBTREE_HEIGHT_SQL)
            .bind(AggregateType::Organization.as_str())
            .bind(id.to_string())
            .bind(i32::try_from(MAX_DEPTH).unwrap_or(i32::MAX))
            .fetch_one(self.store.pool())
            .await?;
        Ok(height.map_or(0, |h| usize::try_from(h).unwrap_or(0)))
    }

    /// Closes an organization for good. Its children stay where they are, open: closing does
    /// not cascade (see [`OrganizationAction::Close`]).
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND`, `ORGANIZATION_CLOSED`) and infrastructure errors.
    pub async fn close_organization(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
    ) -> Result<Outcome<Organization>, LedgerError> {
        self.organization_command(ctx, id, OrganizationAction::Close)
            .await
    }

    /// Lets the partner organization `partner_id` administer organization `id`.
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND` for either, `ORGANIZATION_CLOSED`, `NOT_A_PARTNER`,
    /// `DELEGATION_ALREADY_GRANTED`) and infrastructure errors.
    pub async fn grant_partner_delegation(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        partner_id: OrganizationId,
    ) -> Result<Outcome<Organization>, LedgerError> {
        let partner = self.organization_ref(partner_id).await?;
        self.organization_command(
            ctx,
            id,
            OrganizationAction::GrantPartnerDelegation { partner },
        )
        .await
    }

    /// Ends the partner organization `partner_id`'s administration of organization `id`.
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND`, `ORGANIZATION_CLOSED`, `DELEGATION_NOT_GRANTED`) and
    /// infrastructure errors.
    pub async fn revoke_partner_delegation(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        partner_id: OrganizationId,
    ) -> Result<Outcome<Organization>, LedgerError> {
        self.organization_command(
            ctx,
            id,
            OrganizationAction::RevokePartnerDelegation { partner_id },
        )
        .await
    }

    /// Runs `action` on the existing organization `id`, stamped now.
    async fn organization_command(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        action: OrganizationAction,
    ) -> Result<Outcome<Organization>, LedgerError> {
        let command = OrganizationCommand {
            organization_id: id,
            at: self.now(),
            action,
        };
        Ok(self.store.execute(id, command, ctx).await?)
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

    /// Links `price_ids` of `gateway` to policy `id`, replacing the prices it had (empty
    /// unlinks them all). A price belongs to one policy that is not retired: the prices the
    /// others hold are read from the log under [`PRICE_LINKS_LOCK`], which every link holds
    /// until its event has committed, so two policies never take the same price at once.
    ///
    /// # Errors
    /// Refusals (`POLICY_NOT_FOUND`, `POLICY_RETIRED`, `PRICE_LINKED_ELSEWHERE`),
    /// [`CommandError::Conflict`] when other links held the lock for 10 s, and infrastructure
    /// errors.
    pub async fn link_policy_prices(
        &self,
        ctx: &CommandContext,
        id: PolicyId,
        gateway: &str,
        price_ids: BTreeSet<PriceId>,
    ) -> Result<Outcome<Policy>, LedgerError> {
        let gateway = gateway.to_owned();
        self.serialized(
            PRICES_QUEUE,
            PRICE_LINKS_LOCK,
            PRICES_LOCK_APPLICATION_NAME,
            ctx,
            move |ledger, ctx| async move {
                let linked_elsewhere = ledger.prices_held(&gateway).await?;
                ledger
                    .change_policy(
                        &ctx,
                        id,
                        PolicyAction::LinkPrices {
                            gateway,
                            price_ids,
                            linked_elsewhere,
                        },
                    )
                    .await
            },
        )
        .await
    }

    /// Every price of `gateway` a policy that is not retired holds now, read from the log
    /// (read-your-writes: a checkout processed right after a link sees it).
    ///
    /// # Errors
    /// Database errors.
    pub async fn prices_held(
        &self,
        gateway: &str,
    ) -> Result<BTreeMap<PriceId, PolicyId>, LedgerError> {
        let rows: Vec<(String, String)> = sqlx::query_as(PRICES_HELD_SQL)
            .bind(AggregateType::Policy.as_str())
            .bind(gateway)
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(price, policy)| {
                // What was accepted once reads back; anything else is not a link.
                Some((
                    PriceId::parse(&price).ok()?,
                    PolicyId::from_uuid(Uuid::parse_str(&policy).ok()?),
                ))
            })
            .collect())
    }

    /// Records that customer `customer_id` of `gateway` is organization `id` (nothing when it
    /// is already).
    ///
    /// # Errors
    /// Refusals (`ORGANIZATION_NOT_FOUND`, `ORGANIZATION_CLOSED`), `ClaimTaken` when the
    /// customer is another organization, and infrastructure errors.
    pub async fn link_organization_customer(
        &self,
        ctx: &CommandContext,
        id: OrganizationId,
        gateway: &str,
        customer_id: &str,
    ) -> Result<Outcome<Organization>, LedgerError> {
        self.organization_command(
            ctx,
            id,
            OrganizationAction::LinkCustomer {
                gateway: gateway.to_owned(),
                customer_id: customer_id.to_owned(),
            },
        )
        .await
    }

    /// The organization customer `customer_id` of `gateway` is, found through its unique claim
    /// (written with the event: read-your-writes).
    ///
    /// # Errors
    /// Database errors.
    pub async fn organization_of_customer(
        &self,
        gateway: &str,
        customer_id: &str,
    ) -> Result<Option<OrganizationId>, LedgerError> {
        let stream: Option<String> = sqlx::query_scalar(
            "SELECT stream_id FROM unique_claims WHERE scope = $1 AND value = $2",
        )
        .bind(domain::stream::ClaimScope::GatewayCustomer.as_str())
        .bind(domain::organization::customer_claim(gateway, customer_id))
        .fetch_optional(self.store.pool())
        .await?;
        Ok(stream
            .as_deref()
            .and_then(|s| domain::stream::id_from_claim_stream(AggregateType::Organization, s)))
    }
}
