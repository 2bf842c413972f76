-- Issue 14: the device authorization grant (RFC 8628). One row per device
-- authorization request, from POST /oauth2/device/auth until it expires;
-- the janitor deletes it then. The device code itself is never stored,
-- only its SHA-256 (it is 256 random bits: the hash cannot be reversed).
CREATE TABLE device_codes (
    signature          text        PRIMARY KEY,
    -- The code a person types, normalised (upper case, no dash): unique,
    -- and an expired row is deleted before its code is handed out again.
    user_code          text        NOT NULL UNIQUE,
    client_id          text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    requested_scopes   text[]      NOT NULL DEFAULT '{}',
    requested_audience text[]      NOT NULL DEFAULT '{}',
    status             text        NOT NULL DEFAULT 'pending'
                                   CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    -- Who approved or denied, and when they signed in.
    subject            text,
    auth_time          timestamptz,
    decided_at         timestamptz,
    -- Polling: the interval the device must keep, grown by slow_down.
    interval_seconds   integer     NOT NULL CHECK (interval_seconds > 0),
    last_polled_at     timestamptz,
    -- The token request that redeemed the code (its request id).
    request_id         text,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL
);

CREATE INDEX device_codes_expires_at ON device_codes (expires_at);
