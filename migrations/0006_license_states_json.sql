-- License states (rm_licenses.state, rm_license_snapshots.state) are stored as json, not jsonb:
-- the exact text serde wrote, checked to be JSON, instead of a parsed binary tree.
--
-- Nothing queries inside a state in SQL: it is the License aggregate's own state, written by the
-- licenses projector and read back whole into domain::license::LicenseState. jsonb paid for a
-- parse into its tree on every write and for printing it back as text on every read, for
-- operators nobody used: copying 100,000 states took PostgreSQL about 30% less time as json
-- (1.14-1.31 s vs 1.68-1.78 s, text COPY), reading them back about 60% less (138 vs 366 ms), and
-- the table is 6% smaller. That copy is the longest step of a rebuild's last serial stretch.
-- (ADR 0009.) Other read models keep jsonb where SQL looks inside (rm_validation.activations
-- gained too little to change: 60 ms per 100,000 rows).
--
-- json keeps the text as written: serde writes a state's fields in declaration order and its
-- maps (BTreeMap) sorted, so the same state is always the same text, and the live projector and
-- a rebuild write the same bytes. json has no equality operator: compare states as text.
--
-- Rewrites both tables once (the states converted keep jsonb's key order until next written).
ALTER TABLE rm_licenses ALTER COLUMN state TYPE json USING state::json;
ALTER TABLE rm_license_snapshots ALTER COLUMN state TYPE json USING state::json;
