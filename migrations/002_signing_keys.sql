-- Signing keys for ID tokens (and JWT access tokens, should we issue them),
-- rotated the way dex does it: one current key signs; a key that has been
-- rotated out stays published in the JWKS, for verification only, until
-- expires_at, so the tokens it signed keep verifying until they expire.
CREATE TABLE signing_keys (
    kid                 text        PRIMARY KEY,
    algorithm           text        NOT NULL CHECK (algorithm IN ('RS256', 'ES256')),
    -- The public key as a JWK (with kid, alg and use). Never a private member.
    public_jwk          jsonb       NOT NULL
        CHECK (jsonb_typeof(public_jwk) = 'object'
               AND NOT public_jwk ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']),
    -- The private key, PKCS #8 DER sealed with AES-256-GCM under a key
    -- derived from a system secret: nonce || ciphertext || tag.
    private_key         bytea       NOT NULL,
    -- Which system secret sealed private_key (a short hash of the derived
    -- key, never the secret), so the right one is tried first.
    secret_fingerprint  text        NOT NULL,
    created_at          timestamptz NOT NULL,
    -- NULL while the key is current; set when it is rotated out.
    rotated_at          timestamptz,
    -- How long a rotated-out key stays published; NULL while current.
    expires_at          timestamptz,
    CONSTRAINT signing_keys_retired_has_expiry CHECK ((rotated_at IS NULL) = (expires_at IS NULL))
);

-- At most one current key: replicas that start together race to insert the
-- first one and all but one lose, and rotations serialize on it.
CREATE UNIQUE INDEX signing_keys_one_current_idx ON signing_keys ((true)) WHERE rotated_at IS NULL;
CREATE INDEX signing_keys_expires_at_idx ON signing_keys (expires_at);
