-- Issue 12: the scope catalogue. Operators describe their own scopes once
-- (authz scopes set, PUT /admin/scopes/{name}); the consent page shows the
-- description and discovery's scopes_supported lists the name. A built-in
-- OpenID Connect scope listed here has its description overridden.
CREATE TABLE scopes (
    -- A scope-token of RFC 6749 3.3, at most 128 characters (authz/scopes.go).
    name            text        PRIMARY KEY
                                CHECK (name ~ '^[\x21\x23-\x5b\x5d-\x7e]{1,128}$'),
    -- What the consent page says the scope allows, at most 200 characters.
    description     text        NOT NULL
                                CHECK (description <> '' AND char_length(description) <= 200),
    -- false: the scope is not listed on the consent page (one the client
    -- needs for itself, that tells the person nothing).
    show_on_consent boolean     NOT NULL DEFAULT true,
    -- false: left out of discovery's scopes_supported (RFC 8414 lets a
    -- server keep some scopes unadvertised).
    discoverable    boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
