-- The license that recorded a fact of a subscription (issue #16, ADR 0022 part 5): a license
-- records the facts of a subscription it does not follow yet (another one runs), and that
-- subscription's invoices go to the same license, whichever arrives first. Read-your-writes
-- from the log, as 0014's index of `SubscriptionLinked`.
CREATE INDEX events_subscription_synced
    ON events ((payload -> 'fact' -> 'target' ->> 'subscription_id'))
    WHERE event_type = 'SubscriptionSynced';
