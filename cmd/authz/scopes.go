package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// scopes dispatches "authz scopes <list|set|delete>": the scope catalogue,
// which the consent page and discovery read.
func (c *cli) scopes(ctx context.Context, args []string) error {
	subs := []string{"list", "set", "delete"}
	if len(args) == 0 {
		return usagef("scopes: missing subcommand (one of: %s)", strings.Join(subs, ", "))
	}
	switch args[0] {
	case "list":
		return c.scopesList(ctx, args[1:])
	case "set":
		return c.scopesSet(ctx, args[1:])
	case "delete":
		return c.scopesDelete(ctx, args[1:])
	case "-h", "--help", "help":
		_, err := fmt.Fprintf(c.stdout, "Usage: authz scopes <%s> [flags]\n\n"+
			"Describe your own scopes once: the consent page shows the description, and discovery's\n"+
			"scopes_supported lists the name. Running servers see a change within 30 seconds.\n\n"+
			"Run \"authz scopes <subcommand> -h\" for its flags.\n", strings.Join(subs, "|"))
		return err
	}
	return usagef("scopes: unknown subcommand %q (one of: %s)", args[0], strings.Join(subs, ", "))
}

func (c *cli) scopesList(ctx context.Context, args []string) error {
	store, format, closeStore, err := c.openForList(ctx, "scopes list", args)
	if err != nil {
		return err
	}
	defer closeStore()
	all := []*storage.Scope{}
	for after := ""; ; {
		page, err := store.ListScopes(ctx, after, pageSize)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].Name
	}
	if *format == "json" {
		return writeJSON(c.stdout, all)
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(c.stderr, `no scopes described yet; describe one with: authz scopes set NAME --description "What it allows"`)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tON CONSENT\tDISCOVERABLE\tDESCRIPTION")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, yesNo(s.ShowOnConsent), yesNo(s.Discoverable), s.Description)
	}
	return tw.Flush()
}

// scopesSet creates a scope or changes the fields whose flags are given.
func (c *cli) scopesSet(ctx context.Context, args []string) error {
	fs := newFlags("scopes set")
	dbURL := dbFlag(fs)
	description := fs.String("description", "", "what the consent page says the scope allows, e.g. \"Read your contacts\" (required for a new scope; at most 200 characters)")
	showOnConsent := fs.Bool("show-on-consent", true, "list the scope on the consent page; false for one that tells the person nothing")
	discoverable := fs.Bool("discoverable", true, "list the scope in discovery's scopes_supported")
	pos, err := c.parse(fs, "NAME [--description TEXT] [--show-on-consent=false] [--discoverable=false] [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("scopes set: expected one scope name (usage: authz scopes set NAME --description TEXT)")
	}
	name := pos[0]
	var ch authz.ScopeChange
	if isSet(fs, "description") {
		ch.Description = description
	}
	if isSet(fs, "show-on-consent") {
		ch.ShowOnConsent = showOnConsent
	}
	if isSet(fs, "discoverable") {
		ch.Discoverable = discoverable
	}
	if ch == (authz.ScopeChange{}) {
		return usagef("scopes set: nothing to set: give --description, --show-on-consent or --discoverable")
	}
	// Catch bad input before touching the database; SetScope checks again.
	if err := ch.Validate(name); err != nil {
		return err
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	sc, created, err := authz.SetScope(ctx, store, name, ch)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("scope %q is not in the catalogue yet: give --description to create it", name)
	}
	if err != nil {
		return err
	}
	event, verb := authz.EventScopeUpdated, "updated"
	if created {
		event, verb = authz.EventScopeCreated, "created"
	}
	c.audit(ctx, authz.AuditEvent{Event: event, Outcome: authz.OutcomeSuccess,
		Attrs: []slog.Attr{slog.String("source", "cli"), slog.String("scope", name)}})
	_, err = fmt.Fprintf(c.stdout, "%s scope %s: %q (on consent: %s, discoverable: %s)\n",
		verb, sc.Name, sc.Description, yesNo(sc.ShowOnConsent), yesNo(sc.Discoverable))
	return err
}

func (c *cli) scopesDelete(ctx context.Context, args []string) error {
	fs := newFlags("scopes delete")
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "NAME [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("scopes delete: expected one scope name (usage: authz scopes delete NAME)")
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	err = store.DeleteScope(ctx, pos[0])
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("scope %q is not in the catalogue", pos[0])
	}
	if err != nil {
		return err
	}
	c.audit(ctx, authz.AuditEvent{Event: authz.EventScopeDeleted, Outcome: authz.OutcomeSuccess,
		Attrs: []slog.Attr{slog.String("source", "cli"), slog.String("scope", pos[0])}})
	_, err = fmt.Fprintf(c.stdout, "deleted scope %s from the catalogue; clients may still request it\n", pos[0])
	return err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
