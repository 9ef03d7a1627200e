-- Filters of the lists (GET /v1/licenses, GET /v1/organizations; ADR 0017) and an index for each,
-- so that a filtered page never reads rm_licenses sequentially.
--
-- Status is never stored: it is derived from the state and the clock when read
-- (domain::status::status_at). What SQL needs to derive it at any instant is kept in columns that
-- the licenses projector writes from the state it folds (projections::licenses::ListColumns), live
-- and in a rebuild alike, so a rebuild writes the same columns:
--   lifecycle      the status the state has whatever the clock says, in status_at's order:
--                  revoked, canceled (with no end date), suspended, paused, past_due; else
--                  trial (a trial end and no subscription: trialing, then expired) or term
--                  (active, then expired at expires_at when there is one);
--   cancel_at      for a license canceled at a future end date only: canceled from then on
--                  (before it, the lifecycle's own status holds);
--   trial_ends_at  and expires_at, copied from the state.
ALTER TABLE rm_licenses
    ADD COLUMN lifecycle     text,
    ADD COLUMN cancel_at     timestamptz,
    ADD COLUMN trial_ends_at timestamptz,
    ADD COLUMN expires_at    timestamptz;

-- Existing rows: the same derivation from the stored state's JSON (the only place SQL reads inside a
-- state; fields added later to the state default as serde defaults them).
UPDATE rm_licenses
SET lifecycle     = CASE
                        WHEN state ->> 'revocation' IS NOT NULL THEN 'revoked'
                        WHEN coalesce((state -> 'billing' ->> 'canceled')::boolean, false)
                            AND state -> 'billing' ->> 'cancel_at' IS NULL THEN 'canceled'
                        WHEN state ->> 'suspension' IS NOT NULL THEN 'suspended'
                        WHEN coalesce((state -> 'billing' ->> 'paused')::boolean, false) THEN 'paused'
                        WHEN state -> 'billing' ->> 'payment_grace_until' IS NOT NULL THEN 'past_due'
                        WHEN state ->> 'trial_ends_at' IS NOT NULL
                            AND state -> 'billing' ->> 'subscription' IS NULL THEN 'trial'
                        ELSE 'term'
    END,
    cancel_at     = CASE
                        WHEN state ->> 'revocation' IS NULL
                            AND coalesce((state -> 'billing' ->> 'canceled')::boolean, false)
                            THEN (state -> 'billing' ->> 'cancel_at')::timestamptz
        END,
    trial_ends_at = (state ->> 'trial_ends_at')::timestamptz,
    expires_at    = (state ->> 'expires_at')::timestamptz;

ALTER TABLE rm_licenses
    ALTER COLUMN lifecycle SET NOT NULL;

-- Every list is ordered by id (UUID v7: creation order) and pages by it, so each equality filter's
-- index ends with id: the page is a range of the index, read in order, LIMIT rows and no sort.
-- (organization_id, id) exists since 0002.
CREATE INDEX rm_licenses_product ON rm_licenses (product_id, id);
CREATE INDEX rm_licenses_policy ON rm_licenses (policy_id, id);
CREATE INDEX rm_licenses_lifecycle ON rm_licenses (lifecycle, id);
-- key_prefix is matched as a prefix with the pattern operators (~>=~, ~<~), which this operator
-- class serves whatever the database's collation, with bound parameters as well as literals.
CREATE INDEX rm_licenses_key_prefix ON rm_licenses (key_prefix text_pattern_ops);
-- expires_before, and the clock-dependent statuses (expired, trialing, canceled at a date).
CREATE INDEX rm_licenses_expires_at ON rm_licenses (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX rm_licenses_trial_ends_at ON rm_licenses (trial_ends_at) WHERE lifecycle = 'trial';
CREATE INDEX rm_licenses_cancel_at ON rm_licenses (cancel_at) WHERE cancel_at IS NOT NULL;

-- GET /v1/organizations?kind= (parent_id has rm_organizations_parent since 0002; q is a name
-- search over a table of organizations, not of licenses).
CREATE INDEX rm_organizations_kind ON rm_organizations (kind, id);
