-- The Organization events in commit order (issue #15, ADR 0020): what the in-memory organization
-- tree reads before an authorization, below the commit horizon and beyond it
-- (projections::tree). Organization events are few among the log's; without this index each of
-- those reads walked every event after the tree's checkpoint, of every type, and while a
-- transaction stays open on the server that range only grows.
--
-- Plain CREATE INDEX (migrations run in a transaction): it holds appends while it builds, once,
-- at the upgrade.
CREATE INDEX events_organization_commit_order ON events (tx_id, global_position)
    WHERE aggregate_type = 'Organization';
