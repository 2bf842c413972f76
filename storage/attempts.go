package storage

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Guessing is slowed by counters in login_throttle, one row per key: an
// account, a client address or a client. An attempt is counted before the
// secret is checked, in one INSERT ... ON CONFLICT DO UPDATE statement whose
// row lock orders simultaneous attempts, so a burst cannot slip more
// attempts under a limit than it allows. A success takes its count back
// (UncountAttempt) or clears the row (ResetThrottle): what stays counted
// are failures.

// ThrottlePolicy says how a counter slows and stops attempts.
type ThrottlePolicy struct {
	// Window is how long failures are counted, from the first one.
	Window time.Duration
	// FreeFailures are let through without delay. From then on each
	// further attempt waits BaseDelay, doubling with every failure up to
	// MaxDelay. A zero BaseDelay means no delays.
	FreeFailures        int
	BaseDelay, MaxDelay time.Duration
	// LockAfter failures lock the key for LockFor. Zero: never.
	LockAfter int
	LockFor   time.Duration
}

// Attempt is what a counter says about one attempt.
type Attempt struct {
	// Admitted: the attempt may go ahead. Otherwise it was not counted and
	// may be retried after RetryAfter.
	Admitted    bool
	Failures    int       // counted in the current window, this attempt included
	WindowStart time.Time // identifies the window, for UncountAttempt
	LockedUntil time.Time // no attempt is admitted before it; zero: no wait
	RetryAfter  time.Duration
}

// Keys of the counters. Usernames ignore case, as logins do. PostgreSQL's
// text holds neither NUL nor invalid UTF-8, so those become "?": such a
// username is an unknown user like any other and is counted as one.

// UserThrottleKey is the key counting failed sign-ins as username, whether
// or not such a user exists.
func UserThrottleKey(username string) string {
	return "user:" + strings.ToLower(cleanKey(username))
}

// AddressThrottleKey is the key counting failed sign-ins from a client
// address (or network, for IPv6).
func AddressThrottleKey(addr string) string { return "addr:" + cleanKey(addr) }

// ClientThrottleKey is the key counting failed authentications of a client.
func ClientThrottleKey(clientID string) string { return "client:" + cleanKey(clientID) }

func cleanKey(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "?"), "\x00", "?")
}

// ThrottledSecret reports whether checking a secret against hash is worth
// throttling: an Argon2id hash is of a secret a person chose, which may be
// guessable, and each check costs 19 MiB and tens of milliseconds. A
// generated secret (SHA-256) cannot be guessed, and throttling it would
// only let anyone lock its client out.
func ThrottledSecret(hash string) bool { return strings.HasPrefix(hash, argonPrefix) }

// waitAfter is the SQL for how long, in microseconds, a key waits after n
// counted failures under the policy in $4..$8 (see countAttemptSQL).
func waitAfter(n string) string {
	return `(CASE WHEN ` + n + ` >= $7::int THEN $8::float8
		WHEN ` + n + ` >= $4::int THEN least($6::float8, $5::float8 * power(2::float8, least(` + n + ` - $4::int, 60)))
		ELSE 0 END)`
}

// untilAfter is the SQL for when the wait after n failures counted at $2
// ends: NULL when there is none. Not $2 itself: a concurrent attempt whose
// clock read a moment earlier would take that for a wait.
func untilAfter(n string) string {
	return `(CASE WHEN ` + waitAfter(n) + ` > 0 THEN $2::timestamptz + ` + waitAfter(n) + ` * interval '1 microsecond' END)`
}

// expiry is the SQL for when a row with n failures in the window starting
// at ws, locked until until, no longer matters: at the end of its lock once
// it reached the limit (a lock's end starts over), else at the end of its
// window or of its delay, whichever is later.
func expiry(n, ws, until string) string {
	return `(CASE WHEN ` + n + ` >= $7::int AND ` + until + ` IS NOT NULL THEN ` + until + `
		ELSE greatest(` + ws + ` + $3::float8 * interval '1 microsecond', ` + until + `) END)`
}

// countAttemptSQL counts an attempt under $1 at time $2. A row whose
// expires_at has passed starts over; a row locked past $2 refuses the
// attempt and is left as it was; otherwise the attempt is counted and the
// key locked for the wait its new count calls for (expiry). The SET's
// sub-select reads the old row, which the conflict has locked, so each
// statement sees the one before it.
//
// $3 window, $5 base delay, $6 max delay, $8 lock: microseconds. $4 free
// failures, $7 lock after.
var countAttemptSQL = `
	INSERT INTO login_throttle AS t (key, failures, window_start, locked_until, admitted, expires_at)
	SELECT $1::text, 1, $2::timestamptz, f.until, true, ` + expiry("1", "$2::timestamptz", "f.until") + `
	FROM (SELECT ` + untilAfter("1") + ` AS until) f
	ON CONFLICT (key) DO UPDATE SET (failures, window_start, locked_until, admitted, expires_at) = (
		SELECT d.n, d.ws, d.until, d.admitted, ` + expiry("d.n", "d.ws", "d.until") + `
		FROM (
			SELECT s.n, s.ws, s.admitted,
				CASE WHEN s.admitted THEN ` + untilAfter("s.n") + ` ELSE t.locked_until END AS until
			FROM (
				SELECT
					CASE WHEN t.expires_at <= $2 THEN 1 WHEN t.locked_until > $2 THEN t.failures ELSE t.failures + 1 END AS n,
					CASE WHEN t.expires_at <= $2 THEN $2::timestamptz ELSE t.window_start END AS ws,
					t.expires_at <= $2 OR t.locked_until IS NULL OR t.locked_until <= $2 AS admitted
			) s
		) d
	)
	RETURNING admitted, failures, window_start, locked_until`

// CountAttempt counts an attempt under key, if the policy lets it through
// now, and reports whether it did.
func (s *Store) CountAttempt(ctx context.Context, key string, p ThrottlePolicy) (Attempt, error) {
	if p.Window <= 0 {
		return Attempt{}, errors.New("count attempt: the policy needs a positive window")
	}
	free, lockAfter := p.FreeFailures, p.LockAfter
	if p.BaseDelay <= 0 {
		free = math.MaxInt32
	}
	if lockAfter <= 0 {
		lockAfter = math.MaxInt32
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	var (
		a     Attempt
		until *time.Time
	)
	err := s.db(ctx).QueryRow(ctx, countAttemptSQL, key, now, micros(p.Window),
		free, micros(p.BaseDelay), micros(max(p.MaxDelay, p.BaseDelay)), lockAfter, micros(p.LockFor)).
		Scan(&a.Admitted, &a.Failures, &a.WindowStart, &until)
	if err != nil {
		return Attempt{}, translate("count attempt", err)
	}
	return a.at(now, until), nil
}

func micros(d time.Duration) float64 { return float64(d / time.Microsecond) }

// at fills in the lock, if any, and what follows from the time of the
// answer.
func (a Attempt) at(now time.Time, until *time.Time) Attempt {
	a.WindowStart = a.WindowStart.UTC()
	if until != nil {
		a.LockedUntil = until.UTC()
	}
	if !a.Admitted {
		a.RetryAfter = a.LockedUntil.Sub(now)
	}
	return a
}

// PeekAttempts says whether an attempt under key would be admitted now,
// without counting one. For checks that count only failures, after the
// fact: exact limits need CountAttempt.
func (s *Store) PeekAttempts(ctx context.Context, key string) (Attempt, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	var (
		a     = Attempt{Admitted: true}
		until *time.Time
	)
	err := s.db(ctx).QueryRow(ctx, `
		SELECT failures, window_start, locked_until FROM login_throttle
		WHERE key = $1 AND expires_at > $2`, key, now).Scan(&a.Failures, &a.WindowStart, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, nil
	}
	if err != nil {
		return Attempt{}, translate("peek attempts", err)
	}
	a.Admitted = until == nil || !until.After(now)
	return a.at(now, until), nil
}

// UncountAttempt takes back an attempt that CountAttempt admitted in the
// window starting at windowStart and that turned out not to be a failure
// (a success, or never checked). It lifts the lock that attempt may have
// set: it is meant for policies without delays, where only the attempt
// that reached the limit locks.
func (s *Store) UncountAttempt(ctx context.Context, key string, windowStart time.Time) error {
	_, err := s.db(ctx).Exec(ctx, `
		UPDATE login_throttle SET failures = failures - 1, locked_until = NULL
		WHERE key = $1 AND window_start = $2 AND failures > 0`,
		key, windowStart)
	return translate("uncount attempt", err)
}

// ResetThrottle forgets what was counted under key, after a success or
// when an operator unlocks it. It reports whether the key was locked or
// delayed.
func (s *Store) ResetThrottle(ctx context.Context, key string) (bool, error) {
	var locked bool
	err := s.db(ctx).QueryRow(ctx, `DELETE FROM login_throttle WHERE key = $1 RETURNING coalesce(locked_until > $2, false)`,
		key, s.now().UTC()).Scan(&locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return locked, translate("reset throttle", err)
}

// UnlockUser lets username sign in again at once: it forgets the failed
// sign-ins counted against it, and so its delay or lock.
func (s *Store) UnlockUser(ctx context.Context, username string) (bool, error) {
	return s.ResetThrottle(ctx, UserThrottleKey(username))
}
