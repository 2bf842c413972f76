package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/tern/v2/migrate"

	"github.com/authz/authz/migrations"
)

// versionTable records the schema version: tern's table (one row, column
// version), kept so that databases migrated by earlier releases, which ran
// tern's own migrator, keep their version.
const versionTable = "schema_version"

// migrateExecMode runs the migrator's queries without named prepared
// statements: behind a transaction pooler the next transaction may get
// another server session, where a statement prepared earlier is unknown.
const migrateExecMode = pgx.QueryExecModeExec

// disableTx is tern's marker for a migration that must run outside a
// transaction (CREATE INDEX CONCURRENTLY, say), which we cannot offer.
var disableTx = regexp.MustCompile(`(?m)^---- tern: disable-tx ----$`)

// errNoVersion says that the version table or its row is not there (yet).
var errNoVersion = errors.New(versionTable + " is missing or has no row")

// MigrationStatus describes one migration and whether it has been applied.
type MigrationStatus struct {
	Sequence int32
	Name     string
	Applied  bool
}

// MigrationError is a migration that failed. Pending migrations run in
// one transaction, so the run that failed applied none of them.
type MigrationError struct {
	Migration MigrationStatus
	Err       error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("migration %s: %v", e.Migration.Name, e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// Migrate applies every pending migration and returns them, in order.
// Running it again when nothing is pending changes nothing.
//
// It is safe to run concurrently from several replicas without a session
// advisory lock, which neither a transaction pooler nor distributed SQL
// engines offer: all pending migrations run in one transaction that
// first locks the row of the version table. A concurrent migrator waits
// on that row, then reads the version the first one committed and
// applies nothing. Under REPEATABLE READ or SERIALIZABLE its snapshot
// predates that commit, so it fails with a serialization error instead
// and runs again on a fresh one.
//
// On failure nothing is applied; the error is a *MigrationError when a
// migration's own SQL failed.
func Migrate(ctx context.Context, conn *pgx.Conn) ([]MigrationStatus, error) {
	return migrateFS(ctx, conn, migrations.FS)
}

// migrateFS is Migrate with the migrations in fsys.
func migrateFS(ctx context.Context, conn *pgx.Conn, fsys fs.FS) ([]MigrationStatus, error) {
	list, err := loadMigrations(fsys)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		applied, err := migrateOnce(ctx, conn, list)
		if !RunAgain(ctx, attempt, Retryable(err)) {
			return applied, err
		}
	}
}

// migrateOnce applies the pending migrations, creating the version table
// first when the database was never migrated.
//
// Under REPEATABLE READ or SERIALIZABLE, PostgreSQL takes a transaction's
// snapshot before it looks the table up in the catalog: a migrator may
// find the table another has just created yet not its row. Then too the
// version table is made sure of, and the next transaction sees the row.
func migrateOnce(ctx context.Context, conn *pgx.Conn, list []*migrate.Migration) ([]MigrationStatus, error) {
	applied, err := applyPending(ctx, conn, list)
	if !errors.Is(err, errNoVersion) {
		return applied, err
	}
	if err := createVersionTable(ctx, conn); err != nil {
		return nil, err
	}
	return applyPending(ctx, conn, list)
}

// createVersionTable creates the version table with its one row, version
// 0, unless they exist. Both happen in one transaction, so of migrators
// racing on an empty database one creates the table and the others fail
// on the catalog's unique name (the table's, taken by the winner's CREATE)
// once it commits: then the table and its row exist, and that failure is
// success. READ COMMITTED, because a migrator that finds the table the
// winner created must also see its row: at the stricter levels its
// snapshot may predate both, and it would add a second row.
func createVersionTable(ctx context.Context, conn *pgx.Conn) error {
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (version int4 NOT NULL);
INSERT INTO `+versionTable+` (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM `+versionTable+`)`)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == pgerrcode.UniqueViolation ||
		pgErr.Code == pgerrcode.DuplicateTable || pgErr.Code == pgerrcode.DuplicateObject) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", versionTable, err)
	}
	return nil
}

// applyPending applies, in one transaction, the migrations after the
// version it reads with the version row locked, and records the new one.
func applyPending(ctx context.Context, conn *pgx.Conn, list []*migrate.Migration) ([]MigrationStatus, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin migrations: %w", err)
	}
	// A no-op after Commit; with nothing pending it ends the transaction.
	defer func() { _ = tx.Rollback(ctx) }()

	current, err := lockVersion(ctx, tx)
	if err != nil {
		return nil, err
	}
	if int(current) > len(list) || current < 0 {
		return nil, fmt.Errorf("the database schema is at version %d, which this binary does not know (its last migration is %d)",
			current, len(list))
	}
	var applied []MigrationStatus
	for _, m := range list[current:] {
		if err := applyOne(ctx, tx, m); err != nil {
			return nil, err
		}
		applied = append(applied, MigrationStatus{Sequence: m.Sequence, Name: m.Name, Applied: true})
	}
	if len(applied) == 0 {
		return nil, nil
	}
	// Changing the row also makes a migrator waiting on it under
	// REPEATABLE READ or SERIALIZABLE fail and start again.
	if _, err := tx.Exec(ctx, `UPDATE `+versionTable+` SET version = $1`, migrateExecMode, applied[len(applied)-1].Sequence); err != nil {
		return nil, fmt.Errorf("record schema version: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit migrations: %w", err)
	}
	return applied, nil
}

// lockVersion reads the schema version with its row locked until the
// transaction ends: the lock concurrent migrators queue on.
func lockVersion(ctx context.Context, tx pgx.Tx) (int32, error) {
	rows, _ := tx.Query(ctx, `SELECT version FROM `+versionTable+` FOR UPDATE`, migrateExecMode)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if isUndefinedTable(err) || err == nil && len(versions) == 0 {
		return 0, errNoVersion
	}
	if err != nil {
		return 0, fmt.Errorf("lock schema version: %w", err)
	}
	if len(versions) != 1 {
		return 0, fmt.Errorf("lock schema version: %s has %d rows, want 1", versionTable, len(versions))
	}
	return versions[0], nil
}

// applyOne runs one migration's SQL in tx.
func applyOne(ctx context.Context, tx pgx.Tx, m *migrate.Migration) error {
	if _, err := tx.Exec(ctx, m.UpSQL); err != nil {
		return &MigrationError{Migration: MigrationStatus{Sequence: m.Sequence, Name: m.Name}, Err: err}
	}
	// As tern does: a setting one migration changed (search_path, say)
	// does not change how the next one runs.
	if _, err := tx.Exec(ctx, "RESET ALL"); err != nil {
		return fmt.Errorf("reset settings after %s: %w", m.Name, err)
	}
	return nil
}

// loadMigrations parses the migrations in fsys, in tern's format
// (NNN_name.sql, templates included).
func loadMigrations(fsys fs.FS) ([]*migrate.Migration, error) {
	// Without a connection tern's Migrator only loads: it neither reads
	// nor creates anything in the database.
	m, err := migrate.NewMigrator(context.Background(), nil, versionTable)
	if err != nil {
		return nil, fmt.Errorf("prepare migrations: %w", err)
	}
	if err := m.LoadMigrations(fsys); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	for _, mig := range m.Migrations {
		if disableTx.MatchString(mig.UpSQL) {
			return nil, fmt.Errorf("load migrations: %s: disable-tx is not supported: migrations run in one transaction", mig.Name)
		}
	}
	return m.Migrations, nil
}

// MigrationsStatus lists every known migration and whether it is applied.
// It changes nothing: on a database never migrated every one is pending.
func MigrationsStatus(ctx context.Context, conn *pgx.Conn) ([]MigrationStatus, error) {
	list, err := loadMigrations(migrations.FS)
	if err != nil {
		return nil, err
	}
	current, err := readVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationStatus, 0, len(list))
	for _, mig := range list {
		out = append(out, MigrationStatus{Sequence: mig.Sequence, Name: mig.Name, Applied: mig.Sequence <= current})
	}
	return out, nil
}

// readVersion reads the schema version: 0 when nothing was migrated.
func readVersion(ctx context.Context, conn *pgx.Conn) (int32, error) {
	var v int32
	err := conn.QueryRow(ctx, `SELECT version FROM `+versionTable, migrateExecMode).Scan(&v)
	if isUndefinedTable(err) || errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedTable
}
