package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPasswordOnTerminal: with stdin a terminal, --password-stdin asks for
// the password on stderr, twice, and the terminal does not echo what is
// typed; two entries that differ change nothing.
func TestPasswordOnTerminal(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)

	tty := openPTY(t)
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(t.Context(), []string{"users", "create", "--username", "carol", "--password-stdin"}, e.get,
			tty.slave, &lockedBuffer{}, stderr)
	}()
	tty.typeHidden(t, stderr, "Password: ", "correct horse\n")
	tty.typeHidden(t, stderr, "Repeat password: ", "correct horse\n")
	if err := wait(t, done); err != nil {
		t.Fatalf("users create: %v\nstderr: %s", err, stderr)
	}
	if screen := tty.screen(t); strings.Contains(screen, "correct horse") {
		t.Errorf("the terminal echoed the password: %q", screen)
	}
	if _, err := store.Authenticate(t.Context(), "carol", "correct horse"); err != nil {
		t.Errorf("authenticate with the password typed: %v", err)
	}

	stderr = &lockedBuffer{}
	go func() {
		done <- run(t.Context(), []string{"users", "set-password", "carol", "--password-stdin"}, e.get,
			tty.slave, &lockedBuffer{}, stderr)
	}()
	tty.typeHidden(t, stderr, "Password: ", "battery staple\n")
	tty.typeHidden(t, stderr, "Repeat password: ", "battery stable\n")
	if err := wait(t, done); err == nil || err.Error() != "the two passwords typed differ" {
		t.Errorf("set-password with two entries that differ: %v", err)
	}
	if _, err := store.Authenticate(t.Context(), "carol", "correct horse"); err != nil {
		t.Errorf("the password changed though the entries differed: %v", err)
	}
}

// TestPasswordFlag: --password is refused, without repeating the password,
// and its help and error point to --password-stdin.
func TestPasswordFlag(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"users", "create", "--username", "u1", "--password", "hunter22"},
		{"users", "set-password", "u1", "--password", "hunter22"},
	} {
		err := wantError(t, env{}, "", "--password is not accepted: a password in a command line stays in shell history; use --password-stdin", true, args...)
		if strings.Contains(fmt.Sprint(err), "hunter22") {
			t.Errorf("authz %s: the error repeats the password: %v", strings.Join(args, " "), err)
		}
	}
	help := mustRun(t, env{}, "", "users", "create", "-h")
	if !strings.Contains(help, "-password string\n    \tnot accepted: a password in a command line stays in shell history and shows in ps; use --password-stdin") {
		t.Errorf("users create -h does not point --password to --password-stdin:\n%s", help)
	}
}

// TestScopeList: --scope takes a list separated by commas or spaces, and
// is repeatable; "openid,profile" is two scopes, never one.
func TestScopeList(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	for i, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scope", "openid,profile"}, "openid profile"},
		{[]string{"--scope", "openid, profile  email"}, "openid profile email"},
		{[]string{"--scope", "openid", "--scope", "profile,offline_access"}, "openid profile offline_access"},
	} {
		args := append([]string{"clients", "create", "--name", "App", "--id", fmt.Sprint("app", i),
			"--redirect-uri", "https://app.example.com/cb"}, tc.args...)
		if m := parseClient(t, mustRun(t, e, "", args...)); m.Scope != tc.want {
			t.Errorf("%v: scope %q, want %q", tc.args, m.Scope, tc.want)
		}
	}
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the command did not return within a minute")
		return nil
	}
}

// pty is a pseudo-terminal: the command reads the slave side, as its
// stdin; the test types on the master side and reads what the terminal
// shows there.
type pty struct {
	master, slave *os.File
}

func openPTY(t *testing.T) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx (a pseudo-terminal is needed: mount devpts on /dev/pts): %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open the pseudo-terminal's slave: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return &pty{master: master, slave: slave}
}

// typeHidden waits for prompt (the count of it on stderr grows) and for
// the terminal to stop echoing, then types line.
func (p *pty) typeHidden(t *testing.T, stderr *lockedBuffer, prompt, line string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.HasSuffix(stderr.String(), prompt) || p.echoes(t) {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt %q with echo off within a minute; stderr %q", prompt, stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := p.master.WriteString(line); err != nil {
		t.Fatal(err)
	}
}

func (p *pty) echoes(t *testing.T) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

// screen returns what the terminal has shown so far: everything echoed,
// up to an end mark written now.
func (p *pty) screen(t *testing.T) string {
	t.Helper()
	const end = "--end of screen--"
	if _, err := p.slave.WriteString(end + "\n"); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		r := bufio.NewReader(p.master)
		for !strings.Contains(b.String(), end) {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(time.Minute):
		t.Fatal("the terminal showed no end mark within a minute")
		return ""
	}
}
