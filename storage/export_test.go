package storage

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// QueryRowForTest runs sql in the transaction ctx carries, or on the pool.
func (s *Store) QueryRowForTest(ctx context.Context, sql string, args ...any) pgx.Row {
	return s.db(ctx).QueryRow(ctx, sql, args...)
}

// ClientCacheListens counts the times the client cache started listening.
func (s *Store) ClientCacheListens() int64 { return s.clients.listens.Load() }

// ExecForTest runs sql in the transaction ctx carries, or on the pool.
func (s *Store) ExecForTest(ctx context.Context, sql string, args ...any) error {
	_, err := s.db(ctx).Exec(ctx, sql, args...)
	return err
}
