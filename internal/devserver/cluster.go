package devserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
)

// DefaultStateRoot keeps the private cluster's data when, running as root,
// the 'postgres' user cannot enter the data directory (a checkout under
// /root).
const DefaultStateRoot = "/var/lib/authz-dev"

// demoDatabase is the database dev makes on its own cluster.
const demoDatabase = "authz"

// installPostgres is what to do when there is no PostgreSQL to start.
const installPostgres = "install PostgreSQL (Debian: sudo apt-get install -y postgresql) or set AUTHZ_DATABASE_URL"

// startCluster starts the private cluster for dataDir, installing
// PostgreSQL first if it is missing and we may.
func startCluster(ctx context.Context, dataDir, stateRoot string, stderr io.Writer, logger *slog.Logger) (*pgcluster.Cluster, error) {
	install := func(ctx context.Context) error { return aptInstallPostgres(ctx, stderr) }
	if err := ensurePostgres(ctx, os.Geteuid() == 0, pgcluster.FindBinaries, install); err != nil {
		return nil, err
	}
	pgDir, err := clusterDir(dataDir, stateRoot, logger)
	if err != nil {
		return nil, err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir: pgDir,
		Durable: true,
		Logf:    func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		if errors.Is(err, pgcluster.ErrNoBinaries) {
			err = fmt.Errorf("%w; %s", err, installPostgres)
		}
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return cluster, nil
}

// ensurePostgres makes sure the PostgreSQL server binaries are installed:
// as root it installs them (install) when they are missing; otherwise it
// says what to install.
func ensurePostgres(ctx context.Context, root bool, find func() (string, error), install func(context.Context) error) error {
	_, err := find()
	if !errors.Is(err, pgcluster.ErrNoBinaries) {
		return err
	}
	if !root {
		return fmt.Errorf("%w; %s", err, installPostgres)
	}
	if err := install(ctx); err != nil {
		return fmt.Errorf("install postgresql: %w; %s", err, installPostgres)
	}
	if _, err := find(); err != nil {
		return fmt.Errorf("installed postgresql, but: %w", err)
	}
	return nil
}

// aptInstallPostgres installs Debian's postgresql package, showing apt's
// output on stderr.
func aptInstallPostgres(ctx context.Context, stderr io.Writer) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("no apt-get here")
	}
	steps := [][]string{
		{"apt-get", "update", "-q"},
		{"apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"},
	}
	fmt.Fprintln(stderr, "authz dev: PostgreSQL is not installed; installing it with: apt-get update && apt-get install -y postgresql")
	for _, step := range steps {
		// Not CommandContext: a Ctrl-C reaches apt-get from the terminal,
		// and it should stop the way it knows, not be killed mid-install.
		cmd := exec.Command(step[0], step[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(step, " "), err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// clusterDir decides where the cluster for dataDir keeps its data:
// dataDir/pg, unless (running as root) the 'postgres' user cannot reach it,
// e.g. in a checkout under /root (0700). Then the data lives under
// stateRoot, in a directory named after dataDir's path, and dataDir/pg is a
// symbolic link to it, so that later starts find it. Nobody's directory is
// loosened.
func clusterDir(dataDir, stateRoot string, logger *slog.Logger) (string, error) {
	link := filepath.Join(dataDir, "pg")
	target, err := existingClusterDir(dataDir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return target, err // Start recreates a linked directory that went missing
	}

	var unreachable *pgcluster.UnreachableError
	if err := pgcluster.CheckReachable(link); !errors.As(err, &unreachable) {
		return link, err // nil: dataDir/pg will do
	}
	// The checks above and Start follow the link; the 'postgres' user
	// never needs to pass dataDir.
	sum := sha256.Sum256([]byte(dataDir))
	state := filepath.Join(stateRoot, hex.EncodeToString(sum[:])[:12])
	for _, dir := range []string{stateRoot, state} {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // ours; whatever the umask
			return "", err
		}
	}
	target = filepath.Join(state, "pg")
	// With no link to it, a cluster there was left by a data directory of
	// the same path that has been deleted: start over, as its owner meant.
	if _, err := os.Lstat(target); err == nil {
		logger.Warn("removing the cluster of a deleted data directory", "dir", target)
		if err := os.RemoveAll(target); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(target, link); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	logger.Info("the postgres user cannot enter "+unreachable.Blocker+", so PostgreSQL's data goes to "+target+
		", linked from "+relPath(link), "mode", fmt.Sprintf("%#o", unreachable.Mode))
	return target, nil
}

// existingClusterDir is where dataDir's cluster keeps its data, if dev made
// one: dataDir/pg, or where that links to. The error wraps fs.ErrNotExist
// when dataDir/pg does not exist.
func existingClusterDir(dataDir string) (string, error) {
	link := filepath.Join(dataDir, "pg")
	fi, err := os.Lstat(link)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(link)
		if err != nil {
			return "", fmt.Errorf("data directory: %w", err)
		}
		return target, nil
	case err == nil:
		return link, nil
	case errors.Is(err, fs.ErrNotExist):
		return "", err
	default:
		return "", fmt.Errorf("data directory: %w", err)
	}
}

// createDatabase creates database name on the cluster unless it exists, and
// returns its URL.
func createDatabase(ctx context.Context, cluster *pgcluster.Cluster, name string) (string, error) {
	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for database %s: %w", name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return cluster.URL(name), nil
}
