package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// RunFunc is the body of a demo command, which Main runs and its tests
// call: it reads args, with the environment (getenv) as their fallback,
// and runs until ctx is done.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// ParseFunc reads a demo command's flags: the address to listen on and the
// app's configuration C.
type ParseFunc[C any] func(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg C, err error)

// StartFunc builds a demo app from its configuration, and announces it
// once built. It may wait for the issuer until ctx is done.
type StartFunc[C any] func(ctx context.Context, cfg C, at Listening) (http.Handler, error)

// Listening is where a demo command's app is being started.
type Listening struct {
	Addr   net.Addr     // the address it listens on
	Logger *slog.Logger // the command's logger, to its stderr
	Stdout io.Writer    // the command's stdout, to announce the app on
}

// Main runs a demo command: run gets the process's arguments, environment
// and output, and a context that SIGINT or SIGTERM cancels. Main returns
// the exit status: 1 after printing the error, prefixed with the command's
// name, or 0 (also after -help).
//
//	func main() { os.Exit(demo.Main("demo-api", run)) }
func Main(name string, run RunFunc) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// Command is the body of a demo command: it reads the flags with parse,
// logs to stderr, listens, has start build the app, and serves it until
// ctx is done, then shuts down gracefully. Stopped while start waits, it
// returns nil.
func Command[C any](parse ParseFunc[C], start StartFunc[C]) RunFunc {
	return func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
		listen, cfg, err := parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		logger := slog.New(slog.NewTextHandler(stderr, nil))
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		defer ln.Close()
		h, err := start(ctx, cfg, Listening{Addr: ln.Addr(), Logger: logger, Stdout: stdout})
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while waiting for the issuer
			}
			return err
		}
		return Serve(ctx, ln, h, logger)
	}
}

// Env is where a demo command's flags take their defaults from: os.Getenv,
// or a map in tests.
type Env func(string) string

// Or is the value of the variable name, or def when it is unset or empty.
func (e Env) Or(name, def string) string {
	if v := e(name); v != "" {
		return v
	}
	return def
}

// Duration is the duration in the variable name, or def when it is unset
// or empty.
func (e Env) Duration(name string, def time.Duration) (time.Duration, error) {
	v := e(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration like %s", name, v, def)
	}
	return d, nil
}

// Flags is a demo command's flag set with the flags that mean the same in
// every one already defined: --issuer (AUTHZ_ISSUER), --credentials
// (DEMO_CREDENTIALS) and --issuer-addr (DEMO_ISSUER_ADDR). The command
// defines its own flags on it, calls Parse, and then resolves the shared
// ones with ClientSecret and HTTPClient, in the order its checks want.
type Flags struct {
	*flag.FlagSet
	// Issuer is the --issuer URL, without a final slash once parsed.
	Issuer      string
	credentials string
	issuerAddr  string
}

// NewFlags is the flag set of the command name, which reports errors and
// usage to stderr.
func NewFlags(name string, env Env, stderr io.Writer) *Flags {
	f := &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.SetOutput(stderr)
	f.StringVar(&f.Issuer, "issuer", env.Or("AUTHZ_ISSUER", "http://localhost:8080"), "the authorization server's issuer URL (env AUTHZ_ISSUER)")
	f.StringVar(&f.credentials, "credentials", env("DEMO_CREDENTIALS"), "read the client secret from this `file` that authz dev writes, e.g. .data/demo.json (env DEMO_CREDENTIALS)")
	f.StringVar(&f.issuerAddr, "issuer-addr", env("DEMO_ISSUER_ADDR"), "host:port to connect to for the issuer, when its host name means another machine here, as localhost in a container (env DEMO_ISSUER_ADDR)")
	return f
}

// Parse parses args, which must all be flags, and trims the issuer's final
// slash.
func (f *Flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(f.Args(), " "))
	}
	f.Issuer = strings.TrimSuffix(f.Issuer, "/")
	return nil
}

// ClientSecret is the secret given (by flag or variable) or, when there is
// none, client id's secret in the --credentials file, if one was named.
func (f *Flags) ClientSecret(given, id string) (string, error) {
	if given != "" || f.credentials == "" {
		return given, nil
	}
	return ClientSecret(f.credentials, id)
}

// HTTPClient is the client that connects to --issuer-addr for the issuer
// (see the function HTTPClient), or nil without one: the app's default.
func (f *Flags) HTTPClient() (*http.Client, error) {
	if f.issuerAddr == "" {
		return nil, nil
	}
	return HTTPClient(f.Issuer, f.issuerAddr)
}
