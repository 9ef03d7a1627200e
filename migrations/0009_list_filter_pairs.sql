-- A product's or a policy's licenses in one status (GET /v1/licenses?product_id=&status=, the
-- dashboard's "active licenses of product X"; ADR 0017). With (product_id, id) alone, PostgreSQL
-- walks the product's whole range in id order testing each row's status: the per-column
-- statistics cannot see that a trial-only product has no 'term' licenses, and the walk read all
-- 50,000 of a product's licenses for an empty page (p99 170-300 ms at 1M licenses, BENCHMARKS.md).
-- With the lifecycle beside the id, a status whose lifecycle is one value reads that value's
-- range only, in id order. The organization's own range is bounded by its licenses and served by
-- (organization_id, id).
--
-- Plain CREATE INDEX (migrations run in a transaction): it holds writes to rm_licenses while it
-- builds, which a projection table tolerates; the projector catches up from the log.
CREATE INDEX rm_licenses_product_lifecycle ON rm_licenses (product_id, lifecycle, id);
CREATE INDEX rm_licenses_policy_lifecycle ON rm_licenses (policy_id, lifecycle, id);
