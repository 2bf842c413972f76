-- Issue 10: key rotation that every replica survives. A rotated-in key is
-- published at once but signs only from activates_at, by which time every
-- replica has read it and put it in its JWKS; the key it replaces keeps
-- signing until then. So rotated_at, when a key stops signing, is its
-- successor's activates_at and may be ahead, and expires_at counts from it.
ALTER TABLE signing_keys ADD COLUMN activates_at timestamptz;

-- Keys made before this migration signed from their creation. LEAST skips
-- NULL and keeps the constraint below true for any row already stored.
UPDATE signing_keys SET activates_at = LEAST(created_at, rotated_at);

ALTER TABLE signing_keys
    ALTER COLUMN activates_at SET NOT NULL,
    -- Each key signs for one interval, [activates_at, rotated_at), and the
    -- next key's starts where it ends.
    ADD CONSTRAINT signing_keys_signs_before_rotation CHECK (rotated_at IS NULL OR activates_at <= rotated_at);
