-- When a refresh token was rotated, to tell a concurrent refresh (two tabs
-- of one app) from the replay of an old token.
ALTER TABLE refresh_tokens ADD COLUMN IF NOT EXISTS rotated_at timestamptz;
