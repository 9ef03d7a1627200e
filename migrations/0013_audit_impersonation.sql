-- Impersonation (issue #15, ADR 0021): an event caused through an impersonation token names the
-- user as `actor` and the vendor staff member as metadata `impersonated_by`; the audit trail
-- keeps both, and `GET /v1/audit?actor=` finds a staff member's events done as someone else
-- too. Events recorded before impersonation existed have none (NULL), as a rebuild writes them.
ALTER TABLE rm_audit ADD COLUMN impersonated_by text;
CREATE INDEX rm_audit_impersonated_by ON rm_audit (impersonated_by, position)
    WHERE impersonated_by IS NOT NULL;
