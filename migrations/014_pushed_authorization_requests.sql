-- Issue 14: pushed authorization requests (RFC 9126). A client pushes its
-- authorize parameters to POST /oauth2/par and gets back a short-lived
-- request_uri; the row is keyed by the SHA-256 of that URI, so the table
-- never holds a usable one. browser_hash is NULL until the first
-- /oauth2/authorize with the URI binds it to that browser (the SHA-256 of
-- its CSRF cookie); only that browser may use it afterwards, and issuing
-- the code deletes the row.
CREATE TABLE pushed_authorization_requests (
    id_hash      text        PRIMARY KEY,
    client_id    text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    form         jsonb       NOT NULL,
    requested_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    browser_hash text
);
CREATE INDEX pushed_authorization_requests_expires_at_idx ON pushed_authorization_requests (expires_at);
CREATE INDEX pushed_authorization_requests_client_id_idx ON pushed_authorization_requests (client_id);

-- A client registered with require_pushed_authorization_requests may only
-- start an authorization through a pushed request (RFC 9126 6).
ALTER TABLE clients
    ADD COLUMN require_pushed_authorization_requests boolean NOT NULL DEFAULT false;
