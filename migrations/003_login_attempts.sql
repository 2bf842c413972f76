-- Failed logins, counted per username and client address to slow down
-- password guessing. Rows expire with the counting window.
CREATE TABLE login_attempts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key           text        NOT NULL,
    attempted_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX login_attempts_key_idx ON login_attempts (key, attempted_at);
CREATE INDEX login_attempts_expires_at_idx ON login_attempts (expires_at);
