package storage

import (
	"context"
	"time"
)

// RecordLoginAttempt counts a login attempt under key and returns how many
// attempts under key, this one included, fall within window. Counting and
// recording are one step under a per-key lock, so a burst of simultaneous
// attempts cannot all pass a limit. A success clears the count
// (ClearLoginFailures); what remains are failures.
func (s *Store) RecordLoginAttempt(ctx context.Context, key string, window time.Duration) (int, error) {
	var n int
	err := s.InTx(ctx, func(ctx context.Context) error {
		db := s.db(ctx)
		now := s.now().UTC()
		if _, err := db.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "login:"+key); err != nil {
			return translate("lock login attempts", err)
		}
		if _, err := db.Exec(ctx,
			`INSERT INTO login_attempts (key, attempted_at, expires_at) VALUES ($1, $2, $3)`,
			key, now, now.Add(window)); err != nil {
			return translate("record login attempt", err)
		}
		err := db.QueryRow(ctx,
			`SELECT count(*) FROM login_attempts WHERE key = $1 AND attempted_at > $2`,
			key, now.Add(-window)).Scan(&n)
		return translate("count login attempts", err)
	})
	return n, err
}

// ClearLoginFailures forgets the attempts under key, after a success.
func (s *Store) ClearLoginFailures(ctx context.Context, key string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM login_attempts WHERE key = $1`, key)
	return translate("clear login failures", err)
}
