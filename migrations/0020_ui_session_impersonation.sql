-- A web UI session acting through an impersonation (issue #18, ADR 0025): the impersonation
-- token the staff member started from the UI. The session is the credential; the token's own
-- stream says whether it still acts (revoked, expired), as for a bearer of it.
ALTER TABLE ui_sessions ADD COLUMN impersonation uuid;
