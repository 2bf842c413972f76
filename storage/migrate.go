package storage

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/authz/authz/migrations"
)

// versionTable is where tern records the schema version.
const versionTable = "schema_version"

// MigrationStatus describes one migration and whether it has been applied.
type MigrationStatus struct {
	Sequence int32
	Name     string
	Applied  bool
}

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return m, nil
}

// Migrate applies every pending migration. It is safe to run concurrently
// from several replicas: tern holds an advisory lock while it works. Running
// it again when nothing is pending changes nothing.
func Migrate(ctx context.Context, conn *pgx.Conn) (applied []MigrationStatus, err error) {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return nil, err
	}
	m.OnStart = func(seq int32, name, _, _ string) {
		applied = append(applied, MigrationStatus{Sequence: seq, Name: name, Applied: true})
	}
	if err := m.Migrate(ctx); err != nil {
		return applied, fmt.Errorf("migrate: %w", err)
	}
	return applied, nil
}

// MigrationsStatus lists every known migration and whether it is applied.
func MigrationsStatus(ctx context.Context, conn *pgx.Conn) ([]MigrationStatus, error) {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return nil, err
	}
	current, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	out := make([]MigrationStatus, 0, len(m.Migrations))
	for _, mig := range m.Migrations {
		out = append(out, MigrationStatus{Sequence: mig.Sequence, Name: mig.Name, Applied: mig.Sequence <= current})
	}
	return out, nil
}
