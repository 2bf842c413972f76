-- Issue 13: what a client's tokens look like. access_token_strategy picks
-- opaque tokens (looked up at introspection) or RFC 9068 JWTs (verifiable
-- offline against the JWKS, still recorded by signature so introspection
-- and revocation treat them alike). id_token_signed_response_alg is the
-- JWS algorithm of its ID tokens and JWT access tokens (OpenID Connect
-- Registration 2); empty means the server's default, RS256.
ALTER TABLE clients
    ADD COLUMN access_token_strategy        text NOT NULL DEFAULT 'opaque'
        CHECK (access_token_strategy IN ('opaque', 'jwt')),
    ADD COLUMN id_token_signed_response_alg text NOT NULL DEFAULT ''
        CHECK (id_token_signed_response_alg IN ('', 'RS256', 'PS256', 'ES256', 'EdDSA'));
