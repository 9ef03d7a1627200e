-- The events that name a license's holder (its issue and its transfers), by license in log
-- order: an organization's audit trail keeps a license's events recorded while the organization
-- held it, and finds the holder at each of its rows with one backward step of this index
-- (projections::queries::audit), however many leases and activations the license recorded.
CREATE INDEX rm_audit_license_holders ON rm_audit (license_id, position)
    WHERE action IN ('LicenseIssued', 'LicenseTransferred');
