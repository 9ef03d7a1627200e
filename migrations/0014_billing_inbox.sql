-- The billing inbox (issue #16, ADR 0022): every verified Stripe event, stored once by its id in
-- the statement that acknowledges the webhook, then processed apart from the request by the
-- inbox's consumer, which records the outcome. Not part of the log: the events a Stripe event
-- causes are (with `causation_id` = its id); this is the delivery's record, kept so that support
-- sees each event once with what became of it, and so that a failed one can be retried.
CREATE TABLE billing_inbox
(
    event_id        text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    gateway         text        NOT NULL,
    event_type      text        NOT NULL,
    -- Stripe's `created`: what orders one subscription's facts.
    created         timestamptz NOT NULL,
    livemode        boolean     NOT NULL,
    api_version     text,
    -- The body exactly as Stripe sent it and signed it.
    payload         json        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT statement_timestamp(),
    -- NULL while pending; then processed, ignored or failed (with `reason`).
    outcome         text CHECK (outcome IN ('processed', 'ignored', 'failed')),
    reason          text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT statement_timestamp(),
    processed_at    timestamptz
);
-- What the consumer takes next: pending, and failed ones whose back-off ran out.
CREATE INDEX billing_inbox_due ON billing_inbox (next_attempt_at, created)
    WHERE outcome IS NULL OR outcome = 'failed';
-- The inbox by outcome, for support (`GET /v1/billing/events?outcome=`).
CREATE INDEX billing_inbox_outcome ON billing_inbox (outcome, received_at);
GRANT SELECT, INSERT, UPDATE ON billing_inbox TO ledger_app;

-- The license a subscription is linked to, read from the log (read-your-writes, as 0012's).
CREATE INDEX events_subscription_linked ON events ((payload ->> 'subscription_id'))
    WHERE event_type = 'SubscriptionLinked';
