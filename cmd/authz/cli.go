package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/authz/authz/internal/devserver"
)

const usageText = `authz is an OAuth 2.0 and OpenID Connect authorization server.

Usage:
  authz [--database-url URL] <command> [arguments]

Commands:
  serve                     run the server (--migrate applies pending migrations first)
  dev                       run a development server with a demo user and demo clients, on a
                            private PostgreSQL kept in ./.data unless a database is configured;
                            --demo also runs the demo web app (:3000) and contacts API (:4000)
  migrate                   apply pending database migrations
  migrate status            list migrations and whether each is applied
  clients create            register a client; prints it as JSON, with its secret (shown once)
  clients list              list clients (a table; --format json for a JSON array)
  clients get ID            print one client as JSON
  clients delete ID         delete a client and everything issued to it
  clients rotate-secret ID  give a client a new secret (shown once); the previous one keeps
                            working for --grace (default 24h, $AUTHZ_CLIENT_SECRET_GRACE)
  users create              add a user; --password-stdin asks for the password on a terminal, or
                            reads the first line of a pipe (never a flag: it would stay in history)
  users list                list users (a table; --format json for a JSON array)
  users disable USERNAME    stop a user from logging in and end their sessions
  users enable USERNAME     let a disabled user log in again
  users set-password USERNAME --password-stdin
                            set a user's password, read from stdin
  users unlock USERNAME     let a user locked out by failed sign-ins sign in again now
  keys rotate               make a new signing key current (--alg RS256 or ES256); the previous
                            one stays published until the tokens it signed have expired
  keys list                 list signing keys (a table; --format json for a JSON array)
  scopes list               list the scope catalogue (--format json for a JSON array)
  scopes set NAME           describe a scope: --description shown on the consent page,
                            --show-on-consent, --discoverable (listed in discovery)
  scopes delete NAME        remove a scope from the catalogue
  janitor                   delete expired rows (codes, tokens, sessions, retired keys) once
  version                   print the version (also: authz --version)
  help                      show this help

Run "authz <command> -h" for a command's flags.

Environment:
  AUTHZ_DATABASE_URL        PostgreSQL URL, e.g. postgres://user:pass@localhost:5432/authz
                            (DATABASE_URL is used when it is unset; --database-url wins over both;
                            with none, commands other than serve use the database of authz dev
                            run in this folder, starting its PostgreSQL for the command if needed)
  AUTHZ_DATABASE_POOLER     none (default), or transaction when the URL is a pooler in transaction
                            mode (PgBouncer): no session settings, no prepared statements
  AUTHZ_MIGRATE_DATABASE_URL
                            optional PostgreSQL URL for migrations (migrate, serve --migrate, dev
                            on a configured database); behind a pooler also the client cache's LISTEN
  AUTHZ_ISSUER              public base URL of the server (default http://localhost:8080)
  AUTHZ_LISTEN              address to listen on (default :8080; authz dev: 127.0.0.1:8080)
  AUTHZ_SECRETS             system secrets, comma-separated, 32+ bytes each; the first signs
                            (generate one with: openssl rand -base64 48)
  AUTHZ_CODE_LIFESPAN, AUTHZ_ACCESS_TOKEN_LIFESPAN, AUTHZ_REFRESH_TOKEN_LIFESPAN,
  AUTHZ_ID_TOKEN_LIFESPAN, AUTHZ_LOGIN_SESSION_LIFESPAN, AUTHZ_CONSENT_LIFESPAN
                            lifespans as Go durations (10m, 1h, 720h)
  AUTHZ_REQUEST_TIMEOUT     bound on each request's database work; a stalled database then gives
                            503 temporarily_unavailable (default 5s, at most 25s)
  AUTHZ_REFRESH_REUSE_WINDOW
                            how long after a rotation a reused refresh token spares its family
                            (default 2s; 0: every reuse revokes the family)
  AUTHZ_CLIENT_SECRET_GRACE
                            how long a client's previous secret keeps working after a rotation
                            (default 24h)
  AUTHZ_ADMIN_LISTEN        address of the admin API (default 127.0.0.1:8081; off disables it)
  AUTHZ_ADMIN_TOKEN         bearer token the admin API requires, 32+ bytes
                            (generate one with: openssl rand -base64 48)
  AUTHZ_METRICS_LISTEN      address of Prometheus /metrics, served without a token (default: the
                            admin API's listener; another address gets its own; off disables it)
  AUTHZ_PPROF               serve net/http/pprof under /debug/pprof/ on the admin API, behind its
                            token (default false)
  AUTHZ_REGISTRATION        dynamic client registration: off (default), token or open
  AUTHZ_REGISTRATION_TOKENS initial access tokens for AUTHZ_REGISTRATION=token, comma-separated
  AUTHZ_REGISTRATION_SCOPES scopes clients may register for themselves
                            (default openid profile email offline_access)
  AUTHZ_JWKS_PRIVATE_NETWORKS
                            let clients' jwks_uri be on loopback or private addresses (default false)
  AUTHZ_TRUSTED_PROXIES     reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names
                            the client address that sign-in throttling counts (default none)
  AUTHZ_ALLOW_PLAIN_PKCE    accept the plain PKCE method (default false: S256 only)
  AUTHZ_TEMPLATES_DIR       directory of page templates replacing the built-in ones
  AUTHZ_BRAND_NAME          product name on every page (default authz)
  AUTHZ_BRAND_LOGO_URL      logo in every page's header: an https URL or a path under /static/
  AUTHZ_SUPPORT_URL         "Help and support" link in every page's footer: https or mailto:
  AUTHZ_DEBUG               send error details to clients (default false; never in production)
  AUTHZ_JANITOR_INTERVAL    how often serve deletes expired rows (default 10m; 0 disables)
  AUTHZ_LOG_LEVEL           debug, info, warn or error (default info)
  AUTHZ_LOG_FORMAT          json or text (default json)
`

// usageError is a command line that could not be understood. It makes the
// process exit with status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelpShown ends a command after it printed its help on request.
var errHelpShown = errors.New("help shown")

// cli is what every command gets: the process's environment and streams.
type cli struct {
	getenv         func(string) string
	stdin          io.Reader
	stdout, stderr io.Writer
	databaseURL    string // the global --database-url, if given
	ownCluster     bool   // the URL is dev's own PostgreSQL: direct, whatever AUTHZ_DATABASE_POOLER says
	// devFallback: with no database configured, the command uses the
	// database of authz dev run in this folder (devDB, once found).
	devFallback bool
	devDB       *devserver.Database
}

// run runs the command line args (without the program name).
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("authz", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.databaseURL, "database-url", "", "PostgreSQL URL")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := io.WriteString(stdout, usageText)
			return err
		}
		return usagef("%v (run \"authz help\" for usage)", err)
	}
	args = fs.Args()
	if *showVersion {
		return c.dispatch(ctx, "version", nil)
	}
	if len(args) == 0 {
		// No command is a mistake, not a request for help: say so.
		_, _ = io.WriteString(stderr, usageText)
		return usagef("no command given (run \"authz help\" for usage)")
	}
	err := c.dispatch(ctx, args[0], args[1:])
	if errors.Is(err, errHelpShown) {
		err = nil
	}
	return errors.Join(err, c.closeDev())
}

func (c *cli) dispatch(ctx context.Context, name string, args []string) error {
	// Management commands may use dev's database; a server never takes it
	// unasked, and dev runs its own.
	c.devFallback = name != "serve" && name != "dev"
	switch name {
	case "help":
		_, err := io.WriteString(c.stdout, usageText)
		return err
	case "version":
		if len(args) > 0 {
			return usagef("version: unexpected argument %q", args[0])
		}
		_, err := io.WriteString(c.stdout, "authz "+version()+"\n")
		return err
	case "serve":
		return c.serve(ctx, args)
	case "dev":
		return c.dev(ctx, args)
	case "migrate":
		return c.migrate(ctx, args)
	case "clients":
		return c.subcommand(ctx, "clients", args, map[string]func(context.Context, []string) error{
			"create":        c.clientsCreate,
			"list":          c.clientsList,
			"get":           c.clientsGet,
			"delete":        c.clientsDelete,
			"rotate-secret": c.clientsRotateSecret,
		})
	case "users":
		return c.subcommand(ctx, "users", args, map[string]func(context.Context, []string) error{
			"create":       c.usersCreate,
			"list":         c.usersList,
			"disable":      c.usersDisable,
			"enable":       c.usersEnable,
			"set-password": c.usersSetPassword,
			"unlock":       c.usersUnlock,
		})
	case "keys":
		return c.keys(ctx, args)
	case "scopes":
		return c.scopes(ctx, args)
	case "janitor":
		return c.janitor(ctx, args)
	}
	return usagef("unknown command %q (run \"authz help\" for usage)", name)
}

// subcommand dispatches "authz <group> <sub> ...".
func (c *cli) subcommand(ctx context.Context, group string, args []string, subs map[string]func(context.Context, []string) error) error {
	names := make([]string, 0, len(subs))
	for _, n := range []string{"create", "list", "get", "delete", "rotate-secret", "disable", "enable", "set-password", "unlock"} {
		if subs[n] != nil {
			names = append(names, n)
		}
	}
	if len(args) == 0 {
		return usagef("%s: missing subcommand (one of: %s)", group, strings.Join(names, ", "))
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		_, err := fmt.Fprintf(c.stdout, "Usage: authz %s <%s> [flags]\n\nRun \"authz %s <subcommand> -h\" for its flags.\n",
			group, strings.Join(names, "|"), group)
		return err
	}
	fn, ok := subs[args[0]]
	if !ok {
		return usagef("%s: unknown subcommand %q (one of: %s)", group, args[0], strings.Join(names, ", "))
	}
	return fn(ctx, args[1:])
}

// newFlags returns a flag set for the command name ("clients create") that
// reports errors instead of printing them.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args with fs, allowing flags after positional arguments
// ("users disable alice --database-url ..."), and returns the positional
// arguments. -h prints synopsis and the flags to stdout and returns
// errHelpShown.
func (c *cli) parse(fs *flag.FlagSet, synopsis string, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(c.stdout, "Usage: authz %s %s\n", fs.Name(), synopsis)
				hasFlags := false
				fs.VisitAll(func(*flag.Flag) { hasFlags = true })
				if hasFlags {
					fmt.Fprintln(c.stdout, "\nFlags:")
					fs.SetOutput(c.stdout)
					fs.PrintDefaults()
					fs.SetOutput(io.Discard)
				}
				return nil, errHelpShown
			}
			return nil, usagef("%s: %v (run \"authz %s -h\" for usage)", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable flag. With sep set, each value is also a
// list, split at any of sep's characters.
type stringList struct {
	values []string
	sep    string
}

// Separators of list flags: grant and response types by commas (a
// response type may hold a space: "code id_token"), scopes by commas or
// spaces, so that "openid,profile" is two scopes, never one.
const (
	commas         = ","
	commasOrSpaces = ", \t\n"
)

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *stringList) Set(v string) error {
	if l.sep == "" {
		l.values = append(l.values, v)
		return nil
	}
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(l.sep, r) }) {
		if p = strings.TrimSpace(p); p != "" {
			l.values = append(l.values, p)
		}
	}
	return nil
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// formatFlag adds --format to a list command.
func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("format", "table", "output `format`: table or json (a JSON array)")
}

func checkFormat(cmd, format string) error {
	if format != "table" && format != "json" {
		return usagef("%s: --format must be table or json, not %q", cmd, format)
	}
	return nil
}
