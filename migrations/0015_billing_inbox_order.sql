-- The billing inbox in arrival order, for its list (`GET /v1/billing/events`, paged by this key
-- like every list, ADR 0017).
ALTER TABLE billing_inbox ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX billing_inbox_seq ON billing_inbox (seq);
CREATE INDEX billing_inbox_outcome_seq ON billing_inbox (outcome, seq);
DROP INDEX billing_inbox_outcome;
