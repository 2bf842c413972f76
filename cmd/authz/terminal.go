package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/authz/authz/authz"
)

// readPassword reads a password or secret for --password-stdin or
// --secret-stdin (readSecret) and checks it with the password rules users
// and the admin API share. what names it in the prompt: "Password".
func (c *cli) readPassword(ctx context.Context, what string) (string, error) {
	password, err := c.readSecret(ctx, what)
	if err != nil {
		return "", err
	}
	if password == "" {
		return "", errors.New("empty password on stdin")
	}
	if err := authz.ValidatePassword(password); err != nil {
		return "", err
	}
	return password, nil
}

// readSecret reads a secret from stdin. On a terminal it prompts on stderr
// and reads without echo, twice, since a typo there goes unseen; from a
// pipe or a file it reads the first line, without its line ending.
func (c *cli) readSecret(ctx context.Context, what string) (string, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return readLine(c.stdin)
	}
	fd := int(f.Fd())
	first, err := c.promptHidden(ctx, fd, what+": ")
	if err != nil || first == "" {
		return first, err
	}
	again, err := c.promptHidden(ctx, fd, "Repeat "+strings.ToLower(what)+": ")
	if err != nil {
		return "", err
	}
	if again != first {
		return "", fmt.Errorf("the two %ss typed differ", strings.ToLower(what))
	}
	return first, nil
}

// promptHidden prints prompt on stderr and reads a line from the terminal
// fd with echo off. Interrupted (Ctrl-C), it turns echo back on before it
// returns, so the shell is not left blind.
func (c *cli) promptHidden(ctx context.Context, fd int, prompt string) (string, error) {
	saved, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("read from the terminal: %w", err)
	}
	fmt.Fprint(c.stderr, prompt)
	type result struct {
		line []byte
		err  error
	}
	read := make(chan result, 1)
	go func() {
		line, err := term.ReadPassword(fd)
		read <- result{line, err}
	}()
	select {
	case r := <-read:
		fmt.Fprintln(c.stderr) // the Enter was not echoed either
		if r.err != nil {
			return "", fmt.Errorf("read from the terminal: %w", r.err)
		}
		return string(r.line), nil
	case <-ctx.Done():
		// The read stays blocked until the process exits, which is now.
		_ = term.Restore(fd, saved)
		fmt.Fprintln(c.stderr)
		return "", ctx.Err()
	}
}

// readLine reads the first line of r, without its line ending.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
