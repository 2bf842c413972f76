package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
)

// migrate applies pending migrations ("authz migrate") or lists them
// ("authz migrate status").
func (c *cli) migrate(ctx context.Context, args []string) error {
	fs := newFlags("migrate")
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "[status] [flags]", args)
	if err != nil {
		return err
	}
	status := false
	switch {
	case len(pos) == 0:
	case len(pos) == 1 && pos[0] == "status":
		status = true
	default:
		return usagef("migrate: unexpected argument %q (usage: authz migrate [status])", pos[0])
	}

	conn, err := c.connectForMigrations(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if status {
		list, err := storage.MigrationsStatus(ctx, conn)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		for _, m := range list {
			state := "pending"
			if m.Applied {
				state = "applied"
			}
			fmt.Fprintf(tw, "%s\t%s\n", migrationName(m), state)
		}
		return tw.Flush()
	}

	applied, err := storage.Migrate(ctx, conn)
	var failed *storage.MigrationError
	if errors.As(err, &failed) {
		// Pending migrations run in one transaction: none of them stayed.
		return fmt.Errorf("migration %s failed, so none was applied: %w", migrationName(failed.Migration), failed.Err)
	}
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(c.stdout, "applied %s\n", migrationName(m))
	}
	list, err := storage.MigrationsStatus(ctx, conn)
	if err != nil {
		return err
	}
	version := schemaVersion(list)
	if len(applied) == 0 {
		_, err = fmt.Fprintf(c.stdout, "schema is up to date (version %d)\n", version)
	} else {
		_, err = fmt.Fprintf(c.stdout, "schema is now at version %d\n", version)
	}
	return err
}

// migrateOnStart applies pending migrations for serve --migrate and dev,
// logging each: on AUTHZ_MIGRATE_DATABASE_URL when set, else on a
// connection of the server's pool, which may be a transaction pooler's.
func (c *cli) migrateOnStart(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	raw, separate, err := c.separateMigrationURL()
	if err != nil {
		return err
	}
	migrate := func(conn *pgx.Conn) error {
		applied, err := storage.Migrate(ctx, conn)
		if err != nil {
			return err
		}
		for _, m := range applied {
			logger.Info("applied migration", "name", migrationName(m))
		}
		return nil
	}
	if !separate {
		return pool.AcquireFunc(ctx, func(conn *pgxpool.Conn) error { return migrate(conn.Conn()) })
	}
	conn, err := connect(ctx, raw)
	if err != nil {
		return fmt.Errorf("AUTHZ_MIGRATE_DATABASE_URL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return migrate(conn)
}

// migrationName is the migration's file name without ".sql".
func migrationName(m storage.MigrationStatus) string {
	return strings.TrimSuffix(m.Name, ".sql")
}

// schemaVersion is the sequence number of the last applied migration.
func schemaVersion(list []storage.MigrationStatus) int32 {
	var v int32
	for _, m := range list {
		if m.Applied && m.Sequence > v {
			v = m.Sequence
		}
	}
	return v
}

// pendingMigrations lists the names of migrations not yet applied.
func pendingMigrations(list []storage.MigrationStatus) []string {
	var out []string
	for _, m := range list {
		if !m.Applied {
			out = append(out, migrationName(m))
		}
	}
	return out
}
