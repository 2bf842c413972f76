package storage

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5"
)

// MigrateFSForTest is Migrate with the migrations in fsys.
func MigrateFSForTest(ctx context.Context, conn *pgx.Conn, fsys fs.FS) ([]MigrationStatus, error) {
	return migrateFS(ctx, conn, fsys)
}
