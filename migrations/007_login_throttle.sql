-- Counters that slow down guessing: failed sign-ins per account and per
-- client address, failed client authentications per client. One row per
-- key, changed only by one INSERT ... ON CONFLICT DO UPDATE statement
-- (storage.CountAttempt): the row lock alone makes simultaneous attempts
-- count exactly, without advisory locks.
--
-- failures      attempts counted since window_start (a success takes its
--               own back, or clears the row)
-- locked_until  no attempt is let through before it: a growing delay, or
--               a lock once the failures reach the policy's limit; NULL
--               when the key need not wait
-- admitted      whether the statement that last touched the row let its
--               attempt through (RETURNING cannot see the old row)
-- expires_at    when the row no longer matters: the window and any delay
--               or lock are over; the janitor deletes it then
CREATE TABLE login_throttle (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL,
    window_start  timestamptz NOT NULL,
    locked_until  timestamptz,
    admitted      boolean     NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX login_throttle_expires_at_idx ON login_throttle (expires_at);

-- One row per attempt, counted under an advisory lock: replaced by the
-- counters above.
DROP TABLE login_attempts;
