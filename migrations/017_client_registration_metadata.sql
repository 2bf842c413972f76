-- Issue 15: the rest of the OpenID Connect Dynamic Client Registration 1.0
-- and RFC 7591 vocabulary. Each column is either acted on (application_type
-- decides the redirect URI rules, default_max_age and require_auth_time
-- shape sign-ins and ID tokens, subject_type and sector_identifier pick the
-- sub a client sees, userinfo_signed_response_alg signs userinfo answers,
-- tos_uri and policy_uri are shown on the consent page) or kept for what is
-- to come and echoed back (software_*, default_acr_values, the logout
-- URIs, initiate_login_uri).
ALTER TABLE clients
    ADD COLUMN application_type text NOT NULL DEFAULT 'web'
        CHECK (application_type IN ('web', 'native')),
    ADD COLUMN tos_uri text NOT NULL DEFAULT '',
    ADD COLUMN policy_uri text NOT NULL DEFAULT '',
    ADD COLUMN software_id text NOT NULL DEFAULT '',
    ADD COLUMN software_version text NOT NULL DEFAULT '',
    ADD COLUMN software_statement text NOT NULL DEFAULT '',
    ADD COLUMN default_max_age integer NOT NULL DEFAULT 0 CHECK (default_max_age >= 0),
    ADD COLUMN require_auth_time boolean NOT NULL DEFAULT false,
    ADD COLUMN default_acr_values text[] NOT NULL DEFAULT '{}',
    ADD COLUMN subject_type text NOT NULL DEFAULT 'public'
        CHECK (subject_type IN ('public', 'pairwise')),
    ADD COLUMN sector_identifier_uri text NOT NULL DEFAULT '',
    -- sector is the host that pairwise subjects are computed for (OpenID
    -- Connect Core 8.1): the sector_identifier_uri's host, else the one
    -- host of the redirect URIs. It is fixed when the client becomes
    -- pairwise, so the subjects it sees do not move under it.
    ADD COLUMN sector text NOT NULL DEFAULT '',
    ADD COLUMN userinfo_signed_response_alg text NOT NULL DEFAULT ''
        CHECK (userinfo_signed_response_alg IN ('', 'RS256', 'PS256', 'ES256', 'EdDSA')),
    ADD COLUMN frontchannel_logout_uri text NOT NULL DEFAULT '',
    ADD COLUMN frontchannel_logout_session_required boolean NOT NULL DEFAULT false,
    ADD COLUMN backchannel_logout_uri text NOT NULL DEFAULT '',
    ADD COLUMN backchannel_logout_session_required boolean NOT NULL DEFAULT false,
    ADD COLUMN initiate_login_uri text NOT NULL DEFAULT '',
    ADD CONSTRAINT clients_pairwise_has_sector CHECK (subject_type = 'public' OR sector <> '');
