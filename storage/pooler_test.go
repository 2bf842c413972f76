package storage_test

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/internal/pgcluster/pgclustertest"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/storagetest"
)

// TestConformanceThroughPgBouncer runs the storage conformance suite
// through a PgBouncer in transaction pooling mode, with each pgx query exec
// mode that uses no named prepared statement: exec is what `authz serve`
// uses behind a pooler (AUTHZ_DATABASE_POOLER=transaction); the others
// check that nothing in storage depends on the mode (JSON, say, goes as
// text with a cast, which every mode types right). PgBouncer hands each
// transaction to whichever server connection is free, so state that
// leaked out of a transaction would show here.
func TestConformanceThroughPgBouncer(t *testing.T) {
	t.Parallel()
	cluster := pgclustertest.Cluster(t, pgcluster.Options{})
	bouncer := pgclustertest.PgBouncer(t, cluster)
	template := migratedTemplate(t, cluster)

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			storagetest.Run(t, func(t *testing.T, now func() time.Time) *storage.Store {
				name := "authz_" + strings.ToLower(rand.Text())
				pgclustertest.Exec(t, cluster.URL("postgres"),
					"CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize())
				cfg, err := pgxpool.ParseConfig(bouncer.URL(name))
				if err != nil {
					t.Fatal(err)
				}
				cfg.ConnConfig.DefaultQueryExecMode = mode
				cfg.MaxConns = 8
				pool, err := pgxpool.NewWithConfig(t.Context(), storage.PoolConfig(cfg))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { closeWithin(t, pool, 10*time.Second) })
				return storage.New(pool, storage.WithClock(now))
			})
		})
	}
}

// migratedTemplate migrates a database on c, directly (migrations hold a
// session-level lock, which a transaction pooler cannot keep), and closes
// it to connections so that it can be copied.
func migratedTemplate(t *testing.T, c *pgcluster.Cluster) string {
	t.Helper()
	name := pgclustertest.CreateDatabase(t, c, "authz_template")
	conn, err := pgx.Connect(t.Context(), c.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	_, err = storage.Migrate(t.Context(), conn)
	conn.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pgclustertest.Exec(t, c.URL("postgres"), "ALTER DATABASE "+name+" WITH ALLOW_CONNECTIONS false")
	return name
}

// closeWithin closes pool unless a connection is still held (a failed
// subtest's open transaction), which would make Close wait forever; the
// cluster's stop ends such connections.
func closeWithin(t *testing.T, pool *pgxpool.Pool, d time.Duration) {
	closed := make(chan struct{})
	go func() {
		pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(d):
		t.Errorf("pool not closed after %v: a connection is still held", d)
	}
}
