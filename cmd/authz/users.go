package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

func (c *cli) usersCreate(ctx context.Context, args []string) error {
	fs := newFlags("users create")
	dbURL := dbFlag(fs)
	var in authz.NewUser
	fs.StringVar(&in.Username, "username", "", "the `username` the user logs in with (required)")
	passwordStdin := fs.Bool("password-stdin", false, "read the password from standard input: asked for on a terminal (not echoed), else its first line (required)")
	passwordFlag(fs)
	fs.StringVar(&in.Email, "email", "", "the user's email `address`")
	fs.StringVar(&in.Name, "name", "", "the user's full `name`")
	fs.BoolVar(&in.EmailVerified, "email-verified", false, "mark the email address as verified")
	pos, err := c.parse(fs, "--username USERNAME --password-stdin [flags] < password-file", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("users create: unexpected argument %q (run \"authz users create -h\" for usage)", pos[0])
	}
	if err := checkPasswordFlag(fs, "users create"); err != nil {
		return err
	}
	if in.Username == "" {
		return usagef("users create: --username is required")
	}
	if !*passwordStdin {
		return usagef("users create: --password-stdin is required: the password is read from standard input, never from a flag")
	}
	if in.Password, err = c.readPassword(ctx, "Password"); err != nil {
		return err
	}
	// Catch bad details before touching the database. CreateUser checks
	// them again: the admin API goes through it too.
	if err := in.Validate(); err != nil {
		return err
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	u, err := authz.CreateUser(ctx, store, in)
	if errors.Is(err, authz.ErrUsernameTaken) {
		return fmt.Errorf("username %q is taken", in.Username)
	}
	if err != nil {
		return err
	}
	return writeJSON(c.stdout, u)
}

func (c *cli) usersList(ctx context.Context, args []string) error {
	store, format, closeStore, err := c.openForList(ctx, "users list", args)
	if err != nil {
		return err
	}
	defer closeStore()
	all := []*storage.User{}
	for after := ""; ; {
		page, err := store.ListUsers(ctx, after, pageSize)
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].Username
	}
	if *format == "json" {
		return writeJSON(c.stdout, all)
	}
	if len(all) == 0 {
		_, err := fmt.Fprintln(c.stderr, "no users yet; add one with: authz users create --username NAME --password-stdin")
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tID\tEMAIL\tNAME\tSTATUS\tCREATED")
	for _, u := range all {
		status := "active"
		if u.Disabled {
			status = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Username, u.ID, orDash(u.Email), orDash(u.Name), status,
			u.CreatedAt.UTC().Format("2006-01-02 15:04:05Z"))
	}
	return tw.Flush()
}

func (c *cli) usersDisable(ctx context.Context, args []string) error {
	return c.setDisabled(ctx, "users disable", true, args)
}

func (c *cli) usersEnable(ctx context.Context, args []string) error {
	return c.setDisabled(ctx, "users enable", false, args)
}

func (c *cli) setDisabled(ctx context.Context, cmd string, disabled bool, args []string) error {
	fs := newFlags(cmd)
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "USERNAME [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: expected one username (usage: authz %s USERNAME)", cmd, cmd)
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	u, err := userByName(ctx, store, pos[0])
	if err != nil {
		return err
	}
	if _, err := authz.UpdateUser(ctx, store, u.ID, authz.UserChange{Disabled: &disabled}); err != nil {
		return err
	}
	verb := "enabled"
	if disabled {
		verb = "disabled"
	}
	_, err = fmt.Fprintf(c.stdout, "%s user %s\n", verb, u.Username)
	return err
}

func (c *cli) usersSetPassword(ctx context.Context, args []string) error {
	fs := newFlags("users set-password")
	dbURL := dbFlag(fs)
	passwordStdin := fs.Bool("password-stdin", false, "read the new password from standard input: asked for on a terminal (not echoed), else its first line (required)")
	passwordFlag(fs)
	pos, err := c.parse(fs, "USERNAME --password-stdin [flags] < password-file", args)
	if err != nil {
		return err
	}
	if err := checkPasswordFlag(fs, "users set-password"); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("users set-password: expected one username (usage: authz users set-password USERNAME --password-stdin)")
	}
	if !*passwordStdin {
		return usagef("users set-password: --password-stdin is required: the password is read from standard input, never from a flag")
	}
	password, err := c.readPassword(ctx, "Password")
	if err != nil {
		return err
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	u, err := userByName(ctx, store, pos[0])
	if err != nil {
		return err
	}
	// UpdateUser also ends the user's login sessions and revokes their
	// tokens: whoever knew the old password must not stay in with it.
	if _, err := authz.UpdateUser(ctx, store, u.ID, authz.UserChange{Password: &password}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "changed the password of user %s; their sessions and tokens are revoked\n", u.Username)
	return err
}

func userByName(ctx context.Context, store *storage.Store, username string) (*storage.User, error) {
	u, err := store.UserByUsername(ctx, username)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("user %q not found", username)
	}
	return u, err
}

// passwordFlag adds --password, which is refused: it is there so that
// help and the error point to --password-stdin.
func passwordFlag(fs *flag.FlagSet) *string {
	return fs.String("password", "", "not accepted: a password in a command line stays in shell history and shows in ps; use --password-stdin")
}

// checkPasswordFlag refuses --password, pointing to --password-stdin. The
// value given is not repeated.
func checkPasswordFlag(fs *flag.FlagSet, cmd string) error {
	if isSet(fs, "password") {
		return usagef("%s: --password is not accepted: a password in a command line stays in shell history; "+
			"use --password-stdin, which asks for it on a terminal or reads the first line of a pipe", cmd)
	}
	return nil
}

// usersUnlock lets a user whom failed sign-ins have delayed or locked out
// sign in again at once.
func (c *cli) usersUnlock(ctx context.Context, args []string) error {
	fs := newFlags("users unlock")
	dbURL := dbFlag(fs)
	pos, err := c.parse(fs, "USERNAME [flags]", args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("users unlock: expected one username (usage: authz users unlock USERNAME)")
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer closeStore()
	u, err := userByName(ctx, store, pos[0])
	if err != nil {
		return err
	}
	locked, err := store.UnlockUser(ctx, u.Username)
	if err != nil {
		return err
	}
	if !locked {
		_, err = fmt.Fprintf(c.stdout, "user %s was not locked; their count of failed sign-ins is reset\n", u.Username)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "unlocked user %s\n", u.Username)
	return err
}
