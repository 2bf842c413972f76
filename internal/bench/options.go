package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options is what one benchmark run measures and how.
type Options struct {
	// Duration is how long each operation is measured at each
	// concurrency; a warm-up (Warmup) comes before it.
	Duration time.Duration
	// Concurrencies are the numbers of workers each operation runs with.
	Concurrencies []int
	// Ops are the operations to run, in the order of allOps.
	Ops []string
	// JSON prints the report as JSON instead of a table.
	JSON bool
	// CPUProfile, when set, is a file to write the server's CPU profile
	// to, its samples labelled op=<operation>/c<concurrency>.
	CPUProfile string
	// NoFsync runs the private cluster as the tests do (fsync,
	// full_page_writes and synchronous_commit off, data in RAM) instead of
	// with PostgreSQL's durable defaults.
	NoFsync bool
	// PgbenchScale is pgbench -i's scale factor.
	PgbenchScale int
	// IDTokenAlg is the id_token_signed_response_alg of the sign-in
	// client whose codes and refresh tokens are exchanged ('' = RS256):
	// signing its ID token is most of an exchange's CPU with RSA.
	IDTokenAlg string
	// Repeat is how many rounds run: each measures pgbench -S and then
	// every operation, and the report gives each row's medians, its
	// fraction of pgbench -S taken against its own round's. On a shared
	// machine whose speed drifts, that keeps the fractions honest.
	Repeat int
	// DatabaseURL is the PostgreSQL to use instead of a private cluster
	// (AUTHZ_DATABASE_URL); the benchmark makes and drops its own
	// databases there.
	DatabaseURL string
}

// Defaults: about three minutes for everything, about 30 s with --quick.
const (
	defaultDuration = 7 * time.Second
	quickDuration   = time.Second
	defaultScale    = 10
	quickScale      = 1
)

var defaultConcurrencies = []int{8, 32}

// Warmup is how long each run goes unmeasured first: connections are
// opened and caches warmed before the clock starts.
func (o Options) Warmup() time.Duration {
	return min(max(o.Duration/8, 250*time.Millisecond), time.Second)
}

// ParseArgs reads the command line; getenv supplies AUTHZ_DATABASE_URL.
// Usage and errors go to stderr; -h gives flag.ErrHelp.
func ParseArgs(args []string, getenv func(string) string, stderr io.Writer) (Options, error) {
	o := Options{DatabaseURL: strings.TrimSpace(getenv("AUTHZ_DATABASE_URL"))}
	fs := flag.NewFlagSet("authz-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: authz-bench [flags]\n\n"+
			"Measures the authorization server's hot paths against pgbench -S on the same\n"+
			"PostgreSQL: a private cluster it starts and stops, or the server\n"+
			"AUTHZ_DATABASE_URL names (it creates and drops its own databases there).\n"+
			"Operations: %s\n\nFlags:\n", strings.Join(allOps, ", "))
		fs.PrintDefaults()
	}
	var (
		quick    bool
		duration durationFlag
		conc     = intsFlag(slices.Clone(defaultConcurrencies))
		ops      string
	)
	fs.BoolVar(&quick, "quick", false, fmt.Sprintf("a smoke run of about 30 s: %v per run and pgbench scale %d", quickDuration, quickScale))
	fs.Var(&duration, "duration", fmt.Sprintf("how long each operation is measured at each concurrency (default %v, or %v with --quick)", defaultDuration, quickDuration))
	fs.Var(&conc, "concurrency", "comma-separated `numbers` of concurrent workers (default 8,32)")
	fs.StringVar(&ops, "ops", "", "comma-separated operations to run (default all)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write the server's CPU profile to `file`, labelled op=<operation>/c<N> (go tool pprof -tagfocus)")
	fs.StringVar(&o.IDTokenAlg, "id-token-alg", "", "`alg` the sign-in client's ID tokens are signed with: RS256 (default), PS256, ES256 or EdDSA")
	fs.IntVar(&o.Repeat, "repeat", 1, "rounds of pgbench -S and every operation; the table gives medians, each fraction against its own round's pgbench -S")
	fs.BoolVar(&o.NoFsync, "no-fsync", false, "run the private cluster as the tests do: fsync and synchronous_commit off, data in RAM")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	o.Duration, o.PgbenchScale = defaultDuration, defaultScale
	if quick {
		o.Duration, o.PgbenchScale = quickDuration, quickScale
	}
	if duration.set {
		o.Duration = duration.d
	}
	if o.Duration < 100*time.Millisecond || o.Duration > 10*time.Minute {
		return o, fmt.Errorf("--duration %v must be between 100ms and 10m", o.Duration)
	}
	if o.Repeat < 1 || o.Repeat > 20 {
		return o, fmt.Errorf("--repeat %d must be between 1 and 20", o.Repeat)
	}
	o.Concurrencies = conc
	var err error
	if o.Ops, err = parseOps(ops); err != nil {
		return o, err
	}
	switch o.IDTokenAlg {
	case "", "RS256", "PS256", "ES256", "EdDSA":
	default:
		return o, fmt.Errorf("--id-token-alg %q: want RS256, PS256, ES256 or EdDSA", o.IDTokenAlg)
	}
	if o.NoFsync && o.DatabaseURL != "" {
		return o, errors.New("--no-fsync applies to the private cluster only, not to AUTHZ_DATABASE_URL")
	}
	return o, nil
}

// parseOps checks a comma-separated list of operations and puts it in
// the order the benchmark runs them; empty means all.
func parseOps(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return slices.Clone(allOps), nil
	}
	want := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if !slices.Contains(allOps, part) {
			return nil, fmt.Errorf("--ops: unknown operation %q; the operations are %s", part, strings.Join(allOps, ", "))
		}
		want[part] = true
	}
	var out []string
	for _, op := range allOps {
		if want[op] {
			out = append(out, op)
		}
	}
	return out, nil
}

// durationFlag is a duration flag that knows whether it was given.
type durationFlag struct {
	d   time.Duration
	set bool
}

func (f *durationFlag) String() string { return f.d.String() }

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 7s", s)
	}
	f.d, f.set = d, true
	return nil
}

// intsFlag is a comma-separated list of positive numbers.
type intsFlag []int

func (f *intsFlag) String() string {
	parts := make([]string, len(*f))
	for i, n := range *f {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (f *intsFlag) Set(s string) error {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("%q is not a number of workers between 1 and 1024", part)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	*f = out
	return nil
}
