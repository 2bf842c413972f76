package devserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
)

// stateFile is where a running dev records its own cluster's URL, in the
// data directory, so that CLI commands run from the same folder find the
// database: the cluster's socket is in a temporary directory of a random
// name. Dev removes it when it stops.
const stateFile = "state.json"

// probeTimeout bounds the check that the database a state file names
// still answers.
const probeTimeout = 5 * time.Second

// state is what a running dev records.
type state struct {
	DatabaseURL string `json:"database_url"`
	PID         int    `json:"pid"`
	Issuer      string `json:"issuer,omitempty"`
}

// writeState records s in dataDir, readable by the owner only: the URL
// reaches the cluster as its superuser.
func writeState(dataDir string, s state) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the URL's & as is, for people reading it
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dataDir, stateFile), b.Bytes()); err != nil {
		return fmt.Errorf("write %s: %w", stateFile, err)
	}
	return nil
}

// removeState removes the state file if this process wrote it: another
// dev on the same data directory may have replaced it.
func removeState(dataDir string) error {
	path := filepath.Join(dataDir, stateFile)
	s, err := readState(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && s.PID != os.Getpid() {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", stateFile, err)
	}
	return nil
}

func readState(path string) (state, error) {
	var s state
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ErrNoDatabase means dataDir holds no database of dev's: dev never ran
// there on its own cluster (or its data was deleted).
var ErrNoDatabase = errors.New("no database of authz dev here")

// Database is the database of dev that FindDatabase found.
type Database struct {
	// URL reaches it directly, as the cluster's superuser.
	URL string
	// Started: dev was not running, so its cluster was started for the
	// caller, who stops it with Close.
	Started bool
	// PGDir is the started cluster's data directory.
	PGDir   string
	cluster *pgcluster.Cluster
}

// Close stops the cluster if FindDatabase started it (the server process
// it started, and no other); else it does nothing.
func (d *Database) Close() error {
	if d.cluster == nil {
		return nil
	}
	if err := d.cluster.Stop(); err != nil {
		return fmt.Errorf("stop authz dev's PostgreSQL: %w", err)
	}
	return nil
}

// FindDatabase finds the database of a dev run with dataDir: while dev
// runs, its cluster, from the state file; after dev stopped, the cluster
// it left in dataDir, started for the caller (Close stops it). The error
// wraps ErrNoDatabase when dataDir holds neither, and says why when the
// cluster is there but did not start.
func FindDatabase(ctx context.Context, dataDir string) (*Database, error) {
	if url, ok := runningDatabase(ctx, dataDir); ok {
		return &Database{URL: url}, nil
	}
	pgDir, err := existingClusterDir(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoDatabase
	}
	if err != nil {
		return nil, err
	}
	// Start would initialise an empty directory: that is dev's job.
	if _, err := os.Stat(filepath.Join(pgDir, "PG_VERSION")); err != nil {
		return nil, ErrNoDatabase
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: pgDir, Durable: true})
	if err != nil {
		return nil, fmt.Errorf("found no running authz dev in %s, and its PostgreSQL in %s did not start (%s): "+
			"run `make run` (authz dev) first, or set AUTHZ_DATABASE_URL", relPath(dataDir), relPath(pgDir), startFailure(err))
	}
	return &Database{URL: cluster.URL(demoDatabase), Started: true, PGDir: pgDir, cluster: cluster}, nil
}

// runningDatabase is the URL in dataDir's state file, if the database
// there answers. A dev that was killed leaves the file behind; its server
// may still run (and then serves), or not.
func runningDatabase(ctx context.Context, dataDir string) (string, bool) {
	s, err := readState(filepath.Join(dataDir, stateFile))
	if err != nil || s.DatabaseURL == "" {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		return "", false
	}
	_ = conn.Close(ctx)
	return s.DatabaseURL, true
}

// startFailure is why a cluster did not start, in one line: the error's
// first line, and the server's own complaint from the log tail after it.
func startFailure(err error) string {
	lines := strings.Split(err.Error(), "\n")
	why := lines[0]
	for _, line := range lines[1:] {
		if _, fatal, ok := strings.Cut(line, "FATAL:"); ok {
			return why + "; " + strings.TrimSpace(fatal)
		}
	}
	return why
}
