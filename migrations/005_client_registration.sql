-- Issue 5: secret rotation with a grace period, dynamic registration,
-- private_key_jwt and per-client token lifespans.
ALTER TABLE clients
    -- The previous secret's hash stays valid until rotated_secret_expires_at.
    ADD COLUMN rotated_secret_hash             text        NOT NULL DEFAULT '',
    ADD COLUMN rotated_secret_expires_at       timestamptz,
    -- SHA-256 of the RFC 7592 registration access token; empty for clients
    -- an operator created.
    ADD COLUMN registration_token_hash         text        NOT NULL DEFAULT '',
    -- How the client's private_key_jwt assertions must be signed.
    ADD COLUMN token_endpoint_auth_signing_alg text        NOT NULL DEFAULT '',
    -- Per-client lifespans in seconds; 0 uses the server's.
    ADD COLUMN access_token_lifespan           integer     NOT NULL DEFAULT 0 CHECK (access_token_lifespan >= 0),
    ADD COLUMN refresh_token_lifespan          integer     NOT NULL DEFAULT 0 CHECK (refresh_token_lifespan >= 0),
    ADD COLUMN id_token_lifespan               integer     NOT NULL DEFAULT 0 CHECK (id_token_lifespan >= 0);
