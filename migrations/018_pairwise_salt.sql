-- Issue 15: the salt pairwise subject identifiers (OpenID Connect Core
-- 8.1) are keyed with. One per installation, shared by every replica, and
-- never rotated: AUTHZ_SECRETS rotate, and a rotation must not change the
-- sub every pairwise client knows its users by. The server creates the
-- row at start (INSERT ... ON CONFLICT DO NOTHING, then reads it back), not
-- this migration: a database cloned from a migrated template would
-- otherwise share its salt with every other clone.
CREATE TABLE pairwise_salt (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    salt bytea NOT NULL CHECK (length(salt) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
