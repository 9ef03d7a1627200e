-- Billing links (issue #16, ADR 0022): the gateway prices a policy is sold through and the
-- gateway customers an organization is, plus a cap on the inbox's automatic retries.

-- The prices each policy holds, read from the log by the write side (a price belongs to one
-- policy) and by the inbox's consumer (a checkout's policy from its price): read-your-writes,
-- as 0012's and 0014's indexes.
CREATE INDEX events_policy_prices ON events (aggregate_id, sequence)
    WHERE event_type = 'PolicyPricesLinked';

-- The read models show them: `{"stripe": ["price_…"]}` and `stripe:cus_…` claims.
ALTER TABLE rm_policies ADD COLUMN prices jsonb NOT NULL DEFAULT '{}';
ALTER TABLE rm_organizations ADD COLUMN customers text[] NOT NULL DEFAULT '{}';

-- An event that kept failing is retried no more by itself (NULL): support retries it by hand
-- once what it needs is put right.
ALTER TABLE billing_inbox ALTER COLUMN next_attempt_at DROP NOT NULL;
