// Package bench measures the authorization server's hot paths: it starts
// a private PostgreSQL (or uses AUTHZ_DATABASE_URL's), runs the server in
// this process on a loopback listener, prepares clients, users, sessions
// and tokens, and drives each operation with a closed-loop load generator
// at a few concurrencies, next to pgbench -S on the same PostgreSQL as
// the ceiling. It prints one table (or JSON). cmd/authz-bench is its
// command; docs/benchmark.md explains the columns.
package bench

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
)

// Main runs the authz-bench command and returns its exit status. As the
// load generator's child process (driveArg), it drives one job.
func Main(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == driveArg {
		if err := driveChild(ctx, stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "authz-bench load generator: %v\n", err)
			return 1
		}
		return 0
	}
	o, err := ParseArgs(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "authz-bench: %v\n", err)
		return 2
	}
	if err := Run(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "authz-bench: %v\n", err)
		return 1
	}
	return 0
}

// supplyRate is the least rate, in items per second, that the supply of a
// consuming run (codes, refresh tokens) is topped up for before it starts;
// a run that consumes faster ends early, and its note says so.
const supplyRate = 300

// Run runs the benchmark and writes the report to stdout, progress to
// stderr.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) (err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	self, err := selfExecutable()
	if err != nil {
		return err
	}
	pgbenchBin, err := findPgbench()
	if err != nil {
		return err
	}
	t0 := time.Now()
	b, err := setUp(ctx, o, pgbenchBin)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.Close()) }()
	logf("PostgreSQL %s (%s), pgbench data, server at %s and fixtures ready in %v",
		b.db.Version, b.db.Describe, b.srv.Issuer, time.Since(t0).Round(100*time.Millisecond))

	rep := &Report{
		Started: t0, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Database: b.db.Describe, PGVersion: b.db.Version, Duration: Seconds(o.Duration), Warmup: Seconds(o.Warmup()),
		LoadBefore: loadAverage(), IDTokenAlg: cmp.Or(o.IDTokenAlg, "RS256"),
	}
	stopProfile, err := startProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	p := &plan{
		o: o, fx: b.fx, srv: b.srv, logf: logf,
		gen: &generator{self: self, pool: b.pool, pgPID: b.db.pgPID, phase: &b.srv.phase},
	}
	var (
		rounds  [][]Row
		pgbench []Pgbench
		runErr  error
	)
	for round := 1; round <= o.Repeat && runErr == nil; round++ {
		if o.Repeat > 1 {
			logf("round %d of %d", round, o.Repeat)
		}
		logf("pgbench -S for %v ...", o.Duration)
		pg, err := measurePgbench(ctx, pgbenchBin, b.db.pgbench, o.Duration, o.PgbenchScale)
		if err != nil {
			runErr = err
			break
		}
		logf("pgbench -S: %s tps", thousands(pg.TPS))
		p.pgbenchTPS = pg.TPS
		rows, err := p.run(ctx)
		runErr = err
		if err == nil || len(rounds) == 0 {
			// A failed round is reported alone, as far as it got, and
			// only when no round completed.
			rounds, pgbench = append(rounds, rows), append(pgbench, pg)
		}
	}
	runErr = errors.Join(runErr, stopProfile())
	rep.Rows, rep.LoadAfter = medianRows(rounds), loadAverage()
	rep.Pgbench, rep.Rounds = medianPgbench(pgbench), len(rounds)
	if len(rounds) > 1 {
		rep.PgbenchRounds = pgbench
	}
	if len(rep.Rows) > 0 {
		if o.JSON {
			err = rep.WriteJSON(stdout)
		} else {
			err = rep.WriteTable(stdout)
		}
	}
	logf("done in %v", time.Since(t0).Round(time.Second))
	return errors.Join(runErr, err)
}

// bed is what the runs run on: the databases, the server's pool, the
// server, and what was prepared on it.
type bed struct {
	db   *database
	pool *pgxpool.Pool
	srv  *server
	fx   *fixtures
}

// setUp opens the databases, fills pgbench's, starts the server and
// prepares the fixtures. Close undoes it, also after a failure half way.
func setUp(ctx context.Context, o Options, pgbenchBin string) (b *bed, err error) {
	b = &bed{}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
			b = nil
		}
	}()
	if b.db, err = openDatabase(ctx, o); err != nil {
		return b, err
	}
	if err := initPgbench(ctx, pgbenchBin, b.db.pgbench, o.PgbenchScale); err != nil {
		return b, err
	}
	if b.pool, err = b.db.openPool(ctx); err != nil {
		return b, fmt.Errorf("open the server's pool: %w", err)
	}
	store := storage.New(b.pool)
	if b.srv, err = startServer(store, o.CPUProfile != ""); err != nil {
		return b, err
	}
	if b.fx, err = prepare(ctx, store, b.srv.Issuer, o.IDTokenAlg); err != nil {
		return b, fmt.Errorf("prepare: %w", err)
	}
	return b, nil
}

// Close stops the server, closes the pool, and drops the databases or
// stops the cluster.
func (b *bed) Close() error {
	var err error
	if b.srv != nil {
		err = b.srv.Close()
	}
	if b.pool != nil {
		b.pool.Close()
	}
	if b.db != nil {
		err = errors.Join(err, b.db.Close())
	}
	return err
}

// startProfile starts the CPU profile into file, if one is named; stop
// ends it and closes the file.
func startProfile(file string) (stop func() error, err error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// plan runs every operation at every concurrency, passing what one run
// produces to the runs that consume it: codes from authorize to exchange,
// refresh tokens from exchange, refresh and the flow to refresh and
// revocation.
type plan struct {
	o          Options
	fx         *fixtures
	srv        *server
	gen        *generator
	logf       func(string, ...any)
	pgbenchTPS float64

	codes   []string // unused authorization codes, oldest first
	refresh []string // the newest refresh token of families not yet revoked
}

func (p *plan) run(ctx context.Context) ([]Row, error) {
	var rows []Row
	for _, op := range p.o.Ops {
		for i, c := range p.o.Concurrencies {
			row, err := p.runOne(ctx, op, c, len(p.o.Concurrencies)-i)
			if ctx.Err() != nil {
				return rows, fmt.Errorf("interrupted during %s at concurrency %d", op, c)
			}
			if err != nil {
				return rows, fmt.Errorf("%s at concurrency %d: %w", op, c, err)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// runOne measures op at concurrency c; remaining counts this run and the
// op's later ones, which share what is left to consume.
func (p *plan) runOne(ctx context.Context, op string, c, remaining int) (Row, error) {
	job := p.job(op, c)
	pool := p.poolOf(op)
	switch {
	case opUses[op] == useConsume:
		items, err := p.take(ctx, pool, remaining)
		if err != nil {
			return Row{}, err
		}
		job.Items = items
	case op == opRefreshLong:
		if err := p.topUp(ctx, &p.refresh, c); err != nil {
			return Row{}, err
		}
		job.Items, p.refresh = p.refresh[:c:c], p.refresh[c:]
	}
	p.logf("%s, %d workers ...", op, c)
	m, err := p.gen.drive(ctx, job, fmt.Sprintf("%s/c%d", op, c))
	if err != nil {
		return Row{}, err
	}
	if pool != nil {
		// What the run did not take goes back, first in line.
		*pool = append(slices.Clip(job.Items[m.Used:]), *pool...)
	}
	switch op {
	case opAuthorize:
		p.codes = append(p.codes, m.Outputs...)
	case opExchange, opRefreshShort, opRefreshLong, opFlow:
		p.refresh = append(p.refresh, m.Outputs...)
	}
	row := newRow(op, c, m, p.pgbenchTPS)
	row.Note = p.note(op, m)
	line := fmt.Sprintf("  %s req/s, p99 %s ms, %d errors", thousands(row.Rate), ms(row.P99), row.Errors)
	if row.Note != "" {
		line += "; " + row.Note
	}
	p.logf("%s", line)
	if m.ErrorSample != "" {
		p.logf("  first failure: %s", m.ErrorSample)
	}
	return row, nil
}

// note says what a reader of the row should know besides its numbers.
func (p *plan) note(op string, m measurement) string {
	var notes []string
	if op == opRefreshLong && m.LongestChain > 0 {
		notes = append(notes, fmt.Sprintf("families grew to %d tokens", m.LongestChain+1))
	}
	if m.Exhausted {
		notes = append(notes, fmt.Sprintf("measured %.1fs: supply used up", m.Elapsed.Seconds()))
	}
	if n, lines := p.srv.errs.take(); n > 0 {
		notes = append(notes, fmt.Sprintf("%d server errors logged", n))
		for _, l := range lines {
			p.logf("  server error: %s", l)
		}
	}
	return strings.Join(notes, "; ")
}

// job is op at concurrency c with the fixtures it needs.
func (p *plan) job(op string, c int) Job {
	fx := p.fx
	j := Job{
		Op: op, Issuer: p.srv.Issuer, Concurrency: c, Warmup: p.o.Warmup(), Duration: p.o.Duration,
		ClientID: fx.bff.ClientID, Secret: fx.bff.ClientSecret, RedirectURI: redirectURI, Scope: bffScope,
	}
	switch op {
	case opIntrospectActive, opIntrospectUnknown:
		j.ClientID, j.Secret, j.Scope = fx.resourceServer.ClientID, fx.resourceServer.ClientSecret, ""
		j.Items = fx.accessTokens
		if op == opIntrospectUnknown {
			j.Items = fx.unknownTokens
		}
	case opClientCredentials:
		j.ClientID, j.Secret, j.Scope = fx.machine.ClientID, fx.machine.ClientSecret, machineScope
	case opAuthorize, opFlow:
		j.Sessions, j.CookieName = fx.sessions, sessionCookie
	}
	return j
}

// poolOf is the supply op consumes, or nil.
func (p *plan) poolOf(op string) *[]string {
	switch op {
	case opExchange:
		return &p.codes
	case opRefreshShort, opRevoke:
		return &p.refresh
	}
	return nil
}

// take hands a run its share of a supply, topped up first if the share
// would not last a run at supplyRate.
func (p *plan) take(ctx context.Context, pool *[]string, remaining int) ([]string, error) {
	floor := int(supplyRate * (p.o.Warmup() + p.o.Duration).Seconds())
	if err := p.topUp(ctx, pool, floor*remaining); err != nil {
		return nil, err
	}
	n := len(*pool) / remaining
	items := (*pool)[:n:n]
	*pool = (*pool)[n:]
	return items, nil
}

// topUp makes the supply hold at least n items: codes by signed-in
// authorize requests, refresh tokens (fresh families) by the whole flow.
// It is not measured, and gives up after a while: the run is then shorter.
func (p *plan) topUp(ctx context.Context, pool *[]string, n int) error {
	missing := n - len(*pool)
	if missing <= 0 {
		return nil
	}
	producer := opFlow
	if pool == &p.codes {
		producer = opAuthorize
	}
	job := p.job(producer, slices.Max(p.o.Concurrencies))
	job.Warmup, job.Duration, job.MaxOutputs = 0, 3*(p.o.Warmup()+p.o.Duration)+5*time.Second, int64(missing)
	p.logf("  (making %d more %s first)", missing, map[bool]string{true: "codes", false: "refresh tokens"}[producer == opAuthorize])
	m, err := p.gen.drive(ctx, job, "topup")
	if err != nil {
		return fmt.Errorf("top up: %w", err)
	}
	if m.Errors > 0 {
		p.logf("  top-up: %d of %d requests failed: %s", m.Errors, m.Requests, m.ErrorSample)
	}
	p.srv.errs.take()
	*pool = append(*pool, m.Outputs...)
	return nil
}
