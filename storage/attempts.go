package storage

import (
	"context"
	"time"
)

// RecordLoginFailure counts a failed login under key for window.
func (s *Store) RecordLoginFailure(ctx context.Context, key string, window time.Duration) error {
	now := s.now().UTC()
	_, err := s.db(ctx).Exec(ctx,
		`INSERT INTO login_attempts (key, attempted_at, expires_at) VALUES ($1, $2, $3)`,
		key, now, now.Add(window))
	return translate("record login failure", err)
}

// LoginFailures counts the failed logins under key in the last window.
func (s *Store) LoginFailures(ctx context.Context, key string, window time.Duration) (int, error) {
	var n int
	err := s.db(ctx).QueryRow(ctx,
		`SELECT count(*) FROM login_attempts WHERE key = $1 AND attempted_at > $2`,
		key, s.now().UTC().Add(-window)).Scan(&n)
	return n, translate("count login failures", err)
}

// ClearLoginFailures forgets the failures under key, after a success.
func (s *Store) ClearLoginFailures(ctx context.Context, key string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM login_attempts WHERE key = $1`, key)
	return translate("clear login failures", err)
}
