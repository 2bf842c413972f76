package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/devserver"
)

// keys dispatches "authz keys <rotate|list>".
func (c *cli) keys(ctx context.Context, args []string) error {
	subs := []string{"rotate", "list"}
	if len(args) == 0 {
		return usagef("keys: missing subcommand (one of: %s)", strings.Join(subs, ", "))
	}
	switch args[0] {
	case "rotate":
		return c.keysRotate(ctx, args[1:])
	case "list":
		return c.keysList(ctx, args[1:])
	case "-h", "--help", "help":
		_, err := fmt.Fprintf(c.stdout, "Usage: authz keys <%s> [flags]\n\nRun \"authz keys <subcommand> -h\" for its flags.\n",
			strings.Join(subs, "|"))
		return err
	}
	return usagef("keys: unknown subcommand %q (one of: %s)", args[0], strings.Join(subs, ", "))
}

// keysRotate adds a new signing key for every algorithm, or for the one
// --alg names (each algorithm has its own key). Running servers publish
// it within 30 seconds and sign with it from its activation time, a few
// minutes later; the old key of its algorithm signs until then and stays
// published until the tokens it signed have expired.
func (c *cli) keysRotate(ctx context.Context, args []string) error {
	fs := newFlags("keys rotate")
	dbURL := dbFlag(fs)
	alg := fs.String("alg", "", "rotate only the key of this signing `algorithm` ("+strings.Join(authz.SigningAlgorithms(), ", ")+"); default: every algorithm's")
	pos, err := c.parse(fs, "[--alg "+strings.Join(authz.SigningAlgorithms(), "|")+"] [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("keys rotate: unexpected argument %q", pos[0])
	}
	algs := authz.SigningAlgorithms()
	if *alg != "" {
		algs = []string{*alg}
	}
	if *alg != "" && !slices.Contains(authz.SigningAlgorithms(), *alg) {
		return usagef("keys rotate: --alg must be one of %s, not %q", strings.Join(authz.SigningAlgorithms(), ", "), *alg)
	}
	// The new key is sealed with the first system secret, and the lifespans
	// say how long the old key stays published: the server's configuration.
	cfg, err := authz.ConfigFromEnv(c.getenv)
	if err != nil {
		return err
	}
	if len(cfg.Secrets) == 0 && c.configuredURL(*dbURL) == "" {
		// On the database of authz dev, dev's server must open the key:
		// seal it with dev's secret.
		if secret, err := devserver.ReadSecret(devserver.DefaultDataDir); err == nil {
			cfg.Secrets = [][]byte{secret}
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	// Replicas decide which key signs by their own clocks, kept within 30
	// seconds of each other (the activation delay allows for that). This
	// machine's may be far behind theirs (an operator's laptop), which
	// would activate the key too early: the database's clock then stands
	// in for the replicas'.
	dbNow, err := store.DatabaseTime(ctx)
	if err != nil {
		return err
	}
	if skew := dbNow.Sub(time.Now()); skew > 30*time.Second {
		cfg.Now = func() time.Time { return time.Now().Add(skew) }
	}
	rs, err := authz.RotateSigningKeys(ctx, store, cfg, algs)
	for _, r := range rs {
		if err := c.reportRotation(ctx, r); err != nil {
			return err
		}
	}
	return err
}

// reportRotation audits one key's rotation and says what it did.
func (c *cli) reportRotation(ctx context.Context, r authz.KeyRotation) error {
	attrs := []slog.Attr{slog.String("source", "cli"), slog.String("kid", r.Key.KID), slog.String("alg", r.Key.Algorithm)}
	if r.Previous != nil {
		attrs = append(attrs, slog.String("previous_kid", r.Previous.KID))
	}
	c.audit(ctx, authz.AuditEvent{Event: authz.EventKeyRotated, Outcome: authz.OutcomeSuccess, Attrs: attrs})
	if r.Previous == nil {
		_, err := fmt.Fprintf(c.stdout, "created first %s key %s, signing now\n", r.Key.Algorithm, r.Key.KID)
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "rotated %s: new key %s is published now and signs from %s; "+
		"previous key %s signs until then and stays published until %s\n",
		r.Key.Algorithm, r.Key.KID, r.Key.ActivatesAt.UTC().Format(time.RFC3339),
		r.Previous.KID, timeOrDash(r.Previous.ExpiresAt))
	return err
}

func (c *cli) keysList(ctx context.Context, args []string) error {
	store, format, closeStore, err := c.openForList(ctx, "keys list", args)
	if err != nil {
		return err
	}
	defer closeStore()
	keys, err := authz.SigningKeys(ctx, store)
	if err != nil {
		return err
	}
	if *format == "json" {
		return writeJSON(c.stdout, keys)
	}
	if len(keys) == 0 {
		_, err := fmt.Fprintln(c.stderr, "no signing keys yet; the server creates the first when it starts, or create it with: authz keys rotate")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tCREATED\tSIGNS FROM\tSIGNS UNTIL\tPUBLISHED UNTIL")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.KID, k.Algorithm, k.State,
			k.CreatedAt.UTC().Format(time.RFC3339), k.ActivatesAt.UTC().Format(time.RFC3339),
			timeOrDash(k.RotatedAt), timeOrDash(k.ExpiresAt))
	}
	return tw.Flush()
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// audit emits an audit event of the CLI's, as a JSON line on stderr.
func (c *cli) audit(ctx context.Context, e authz.AuditEvent) {
	authz.NewAuditor(slog.New(slog.NewJSONHandler(c.stderr, nil))).Emit(ctx, e, "", netip.Addr{})
}
