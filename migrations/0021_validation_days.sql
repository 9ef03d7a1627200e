-- Validations per UTC day by code (issue #18, the dashboard's plot; application::usage).
-- Validations are reads, not events: these are counts kept by the servers, not facts of the
-- ledger, and a server killed mid-interval loses a few seconds of them.
CREATE TABLE validation_days (
    day   date   NOT NULL,
    code  text   NOT NULL CHECK (code ~ '^[A-Z_]{1,40}$'),
    count bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (day, code)
);
GRANT SELECT, INSERT, UPDATE ON validation_days TO ledger_app;
