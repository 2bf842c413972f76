-- Issue 13: clients choose the algorithm of their ID tokens (RS256, PS256,
-- ES256 or EdDSA), and each algorithm has its own current key, rotated on
-- its own: one key per algorithm has rotated_at NULL. The rows already
-- stored (one current key, RS256 or ES256) satisfy both new rules.
ALTER TABLE signing_keys DROP CONSTRAINT signing_keys_algorithm_check;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_algorithm_check
    CHECK (algorithm IN ('RS256', 'PS256', 'ES256', 'EdDSA'));

-- At most one current key per algorithm: replicas that start together race
-- to insert the first key of each and all but one lose, and rotations of
-- one algorithm serialize on its key.
DROP INDEX signing_keys_one_current_idx;
CREATE UNIQUE INDEX signing_keys_one_current_per_alg_idx ON signing_keys (algorithm) WHERE rotated_at IS NULL;
