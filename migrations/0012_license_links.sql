-- Two questions the portal asks by id that the license streams answer (issue #15, ADR 0021):
-- which license an installation belongs to (`POST /v1/installations/{id}/deactivate`), and which
-- licenses a user was ever assigned (`GET /v1/licenses?user_id=`, narrowed then by each
-- license's current state). Both read the log itself, so an installation activated a moment ago
-- on another server is found at once, as its license stream is.
--
-- Partial expression indexes: only the rows of those two event types enter them, so every other
-- append (heartbeats, validations' facts, the rest) pays nothing. Plain CREATE INDEX (migrations
-- run in a transaction): it holds appends while it builds, once, at the upgrade.
CREATE INDEX events_installation_activated ON events ((payload ->> 'installation_id'))
    WHERE event_type = 'InstallationActivated';
CREATE INDEX events_license_assigned ON events ((payload ->> 'user_id'))
    WHERE event_type = 'LicenseAssigned';
