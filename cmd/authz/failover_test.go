package main

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/internal/pgcluster/pgclustertest"
)

// failoverDeadline bounds how long the server may take to answer again
// once the standby is promoted. It is no performance figure (the log of a
// run shows how long it took): only the bound past which following the
// new primary counts as not happening.
const failoverDeadline = 30 * time.Second

// TestServeFollowsFailover runs `authz serve` on a multi-host URL over a
// primary and its synchronous standby (target_session_attrs=read-write).
// While the standby stalls, a token cannot be committed, and the server
// answers 503 rather than hand out a token the standby lacks. Then the
// primary crashes (immediate shutdown): until the standby is promoted the
// server answers 503, never a token and never a client error; once it is,
// the same server process, not restarted, issues tokens again within
// failoverDeadline, and every token it issued before the crash is still
// active, because each was committed on the standby too.
func TestServeFollowsFailover(t *testing.T) {
	t.Parallel()
	primary, standby := pgclustertest.Replicated(t)
	db := pgclustertest.CreateDatabase(t, primary, "authz")
	e := env{
		"AUTHZ_DATABASE_URL":    pgcluster.FailoverURL(db, primary, standby),
		"AUTHZ_SECRETS":         testSecret,
		"AUTHZ_REQUEST_TIMEOUT": "1s", // how long a request waits for the stalled standby
	}
	mustRun(t, e, "", "migrate")
	client := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Reports",
		"--grant-type", "client_credentials", "--scope", "reports"))
	srv := startServe(t, e)
	id, secret := client.ClientID, client.ClientSecret

	const issued = 20
	var tokens []string
	for range issued {
		tok, err := srv.token(id, secret)
		if err != nil {
			t.Fatalf("before the failover: %v", err)
		}
		tokens = append(tokens, tok)
	}

	// The standby stalls (SIGSTOP): a commit waits for it until the
	// request's deadline. A token answered now must survive the failover
	// like the others; with asynchronous replication it would not.
	if err := standby.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = standby.Thaw() }) // before its Stop, should the test end here
	for range 3 {
		status, out, err := srv.post("/oauth2/token", tokenForm, id, secret)
		if err != nil {
			t.Fatalf("token request with the standby stalled: %v", err)
		}
		switch tok, _ := out["access_token"].(string); {
		case status == http.StatusOK && tok != "":
			tokens = append(tokens, tok)
		case status != http.StatusServiceUnavailable:
			t.Fatalf("token request with the standby stalled: %d %v, want 503 (or a token it has)", status, out)
		}
	}

	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Thaw(); err != nil {
		t.Fatal(err)
	}
	// Primary gone, standby read-only: nothing can be written, and the
	// server says so (503) rather than failing the client.
	for range 3 {
		status, out, err := srv.post("/oauth2/token", tokenForm, id, secret)
		if err != nil {
			t.Fatalf("token request during the outage: %v", err)
		}
		if status != http.StatusServiceUnavailable || out["error"] != "temporarily_unavailable" {
			t.Fatalf("token request with no primary: %d %v, want 503 temporarily_unavailable", status, out)
		}
	}

	if err := standby.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	deadline := time.After(failoverDeadline)
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	var last error
	for {
		tok, err := srv.token(id, secret)
		if err == nil {
			tokens = append(tokens, tok)
			break
		}
		var he *httpError
		if errors.As(err, &he) && he.status != http.StatusServiceUnavailable {
			t.Fatalf("after promotion: %v, want a token or 503 while the pool reconnects", err)
		}
		last = err
		select {
		case <-deadline:
			t.Fatalf("the server did not follow the promoted standby within %v: %v\nlog:\n%s", failoverDeadline, last, srv.logs)
		case <-retry.C: // a client's retry interval
		}
	}
	t.Logf("first token from the promoted standby %v after promotion", time.Since(promoted).Round(time.Millisecond))

	select {
	case err := <-srv.done:
		t.Fatalf("serve exited during the failover: %v", err)
	default:
	}
	var lost []string
	for i, tok := range tokens {
		if err := srv.wantActive(tok, id, secret); err != nil {
			lost = append(lost, fmt.Sprintf("token %d: %v", i, err))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d tokens issued before the failover are not active on the new primary: %v", len(lost), len(tokens), lost)
	}
}

var tokenForm = map[string][]string{"grant_type": {"client_credentials"}, "scope": {"reports"}}
