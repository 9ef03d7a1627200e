-- License states (rm_licenses.state, rm_license_snapshots.state) stay in their row, uncompressed,
-- up to the largest row a page holds, instead of being compressed or moved to TOAST from 2 KB.
--
-- A state is one to a few KB of JSON (more with many activations) and barely compresses:
-- pglz, and lz4 alike, saved under 0.1% of the table while costing the backend a sixth of the
-- time of copying 100,000 states into a rebuild's copy of rm_licenses (pglz_compress was its
-- costliest function). Inline, that COPY took 20-25% less time for 8% more space, every live
-- upsert of a state over 2 KB skips the same work, and reads of a state skip the TOAST lookup.
-- Larger states are still compressed and moved out of line as before.
--
-- A rebuild's copies take the live tables' storage parameters (replay-tool's prepare_shadow).
ALTER TABLE rm_licenses SET (toast_tuple_target = 8160);
ALTER TABLE rm_license_snapshots SET (toast_tuple_target = 8160);
