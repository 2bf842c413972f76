-- Clients: registered relying parties. Metadata uses RFC 7591 names where one exists.
CREATE TABLE clients (
    id                          text        PRIMARY KEY,
    secret_hash                 text        NOT NULL DEFAULT '',
    name                        text        NOT NULL DEFAULT '',
    redirect_uris               text[]      NOT NULL DEFAULT '{}',
    grant_types                 text[]      NOT NULL DEFAULT '{}',
    response_types              text[]      NOT NULL DEFAULT '{}',
    scopes                      text[]      NOT NULL DEFAULT '{}',
    audience                    text[]      NOT NULL DEFAULT '{}',
    token_endpoint_auth_method  text        NOT NULL,
    public                      boolean     NOT NULL DEFAULT false,
    skip_consent                boolean     NOT NULL DEFAULT false,
    jwks                        jsonb,
    jwks_uri                    text        NOT NULL DEFAULT '',
    post_logout_redirect_uris   text[]      NOT NULL DEFAULT '{}',
    logo_uri                    text        NOT NULL DEFAULT '',
    client_uri                  text        NOT NULL DEFAULT '',
    contacts                    text[]      NOT NULL DEFAULT '{}',
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT clients_public_has_no_secret CHECK (NOT public OR secret_hash = '')
);

-- Users: the id is the OpenID Connect subject, random and never reassigned.
CREATE TABLE users (
    id              text        PRIMARY KEY,
    username        text        NOT NULL,
    password_hash   text        NOT NULL,
    email           text        NOT NULL DEFAULT '',
    email_verified  boolean     NOT NULL DEFAULT false,
    name            text        NOT NULL DEFAULT '',
    disabled        boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

-- Token-like rows handed to fosite. All share one shape: the key is the token
-- signature (never a usable token), the request id groups what one grant
-- issued, and expires_at drives the janitor.
CREATE TABLE authorization_codes (
    signature         text        PRIMARY KEY,
    request_id        text        NOT NULL,
    requested_at      timestamptz NOT NULL,
    client_id         text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    subject           text        NOT NULL DEFAULT '',
    requested_scopes  text[]      NOT NULL DEFAULT '{}',
    granted_scopes    text[]      NOT NULL DEFAULT '{}',
    requested_audience text[]     NOT NULL DEFAULT '{}',
    granted_audience  text[]      NOT NULL DEFAULT '{}',
    form              jsonb       NOT NULL DEFAULT '{}',
    session           jsonb       NOT NULL,
    active            boolean     NOT NULL DEFAULT true,
    expires_at        timestamptz
);
CREATE INDEX authorization_codes_request_id_idx ON authorization_codes (request_id);
CREATE INDEX authorization_codes_expires_at_idx ON authorization_codes (expires_at);

CREATE TABLE access_tokens (LIKE authorization_codes INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE access_tokens ADD PRIMARY KEY (signature),
    ADD FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE;
CREATE INDEX access_tokens_request_id_idx ON access_tokens (request_id);
CREATE INDEX access_tokens_expires_at_idx ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (LIKE authorization_codes INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE refresh_tokens ADD PRIMARY KEY (signature),
    ADD FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE,
    ADD COLUMN access_signature text NOT NULL DEFAULT '';
CREATE INDEX refresh_tokens_request_id_idx ON refresh_tokens (request_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

CREATE TABLE pkce_requests (LIKE authorization_codes INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE pkce_requests ADD PRIMARY KEY (signature),
    ADD FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE;
CREATE INDEX pkce_requests_request_id_idx ON pkce_requests (request_id);
CREATE INDEX pkce_requests_expires_at_idx ON pkce_requests (expires_at);

CREATE TABLE oidc_sessions (LIKE authorization_codes INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE oidc_sessions ADD PRIMARY KEY (signature),
    ADD FOREIGN KEY (client_id) REFERENCES clients (id) ON DELETE CASCADE;
CREATE INDEX oidc_sessions_request_id_idx ON oidc_sessions (request_id);
CREATE INDEX oidc_sessions_expires_at_idx ON oidc_sessions (expires_at);

-- Login sessions: the browser cookie holds a random id; only its SHA-256 is kept.
CREATE TABLE login_sessions (
    id_hash     text        PRIMARY KEY,
    user_id     text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX login_sessions_user_id_idx ON login_sessions (user_id);
CREATE INDEX login_sessions_expires_at_idx ON login_sessions (expires_at);

-- Remembered consents: what a user allowed a client, so the page is not shown again.
CREATE TABLE consents (
    user_id     text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes      text[]      NOT NULL DEFAULT '{}',
    granted_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_client_id_idx ON consents (client_id);
CREATE INDEX consents_expires_at_idx ON consents (expires_at);

-- JWT IDs of client assertions (private_key_jwt), kept until they expire so
-- an assertion cannot be replayed.
CREATE TABLE client_assertion_jtis (
    jti         text        PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX client_assertion_jtis_expires_at_idx ON client_assertion_jtis (expires_at);
