-- The web UI's logins in flight travel sealed in the browser's cookie (ADR 0025): nothing is
-- stored before the provider calls back, so a flood of login pages fills no table. The table of
-- migration 0019 held only short-lived operational rows, never facts of the ledger.
DROP TABLE ui_logins;
