-- A refresh revokes the rest of its family with
--   UPDATE refresh_tokens SET active = false WHERE request_id = $1 AND active
-- Through the plain request_id index that visited every token the family
-- ever had (rotated ones stay until they expire, so reuse is recognised),
-- so refreshing got slower the longer a person stayed signed in. Only the
-- active tokens are indexed now: at most one or two per family.
CREATE INDEX refresh_tokens_active_request_id_idx ON refresh_tokens (request_id) WHERE active;
DROP INDEX refresh_tokens_request_id_idx;

-- Revoking a user's tokens (new password, disabled or deleted account,
-- withdrawn consent) looks them up by subject, which scanned whole tables.
CREATE INDEX access_tokens_subject_idx ON access_tokens (subject, client_id);
CREATE INDEX refresh_tokens_subject_idx ON refresh_tokens (subject, client_id);
CREATE INDEX authorization_codes_subject_idx ON authorization_codes (subject, client_id);
