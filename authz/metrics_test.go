package authz_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// scrape is one reading of /metrics: each series ("name{labels}", labels
// as exposed, sorted by name) and its value.
type scrape map[string]float64

// scrapeMetrics GETs /metrics at base, with no token, and parses the text
// format's sample lines.
func scrapeMetrics(t *testing.T, base string) (scrape, string) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics without a token: %d, want 200\n%s", resp.StatusCode, body)
	}
	out := scrape{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, string(body)
}

// has fails unless series is in s.
func (s scrape) has(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := s[series]
	if !ok {
		t.Fatalf("no series %s in the scrape", series)
	}
	return v
}

// waitMoved scrapes base until every series in want has moved from
// before by its amount, or reports those that have not within a deadline.
// (A client may read an answer before the server has counted it.)
func waitMoved(t *testing.T, base string, before scrape, want map[string]float64) (scrape, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, body := scrapeMetrics(t, base)
		var wrong []string
		for series, w := range want {
			got, ok := after[series]
			if !ok {
				wrong = append(wrong, "no series "+series)
			} else if got-before[series] != w {
				wrong = append(wrong, fmt.Sprintf("%s moved by %v, want %v", series, got-before[series], w))
			}
		}
		if len(wrong) == 0 {
			return after, body
		}
		if time.Now().After(deadline) {
			slices.Sort(wrong)
			t.Fatalf("after %s:\n%s", 10*time.Second, strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond) // polling
	}
}

// metricsAdmin serves e's admin API, with the metrics, under cfg.
func metricsAdmin(t *testing.T, e *env, cfg authz.Config) *httptest.Server {
	t.Helper()
	h, err := authz.NewAdmin(cfg, e.store, slog.New(slog.DiscardHandler), authz.WithMetrics(e.h.Metrics()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestMetricsMove: the metrics exist on the admin listener without a
// token, and each kind of request moves its own by exactly its count,
// under route templates, never raw paths or client ids.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	var clock *stoppedClock
	e := newEnv(t, stopClock(&clock))
	cfg := e.cfg
	cfg.AdminToken = adminToken
	admin := metricsAdmin(t, e, cfg)
	machine := e.machine(t, authz.ClientMetadata{TokenEndpointAuthMethod: "client_secret_basic"})
	rs := e.resourceServer(t)
	app := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")

	before, _ := scrapeMetrics(t, admin.URL)
	keyAge := before.has(t, `authz_signing_key_age_seconds`)

	tok := e.clientCredentials(t, machine.ClientID, machine.ClientSecret)
	if tok.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %+v", tok.status, tok)
	}
	if got := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret); got["active"] != true {
		t.Fatalf("introspect the new token: %v", got)
	}
	if got := e.introspect(t, "no-such-token", rs.ClientID, rs.ClientSecret); got["active"] != false {
		t.Fatalf("introspect an unknown token: %v", got)
	}
	// An unauthenticated introspection is no introspection.
	if resp, _ := postForm(t, e.url("/oauth2/introspect"), url.Values{"token": {tok.AccessToken}}, rs.ClientID, "wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("introspect with a wrong secret: %d", resp.StatusCode)
	}
	// Five failed sign-ins are free; the sixth, at once, is throttled.
	target := authorizeURL(e.issuer, codeParams(app, "contacts"))
	for i := range 6 {
		want := incorrect
		if i == 5 {
			want = throttled(1, "1 second")
		}
		b := newBrowser(t)
		p := b.get(target)
		if !isLoginPage(p) {
			t.Fatalf("want the login page, got %d\n%s", p.status, p.body)
		}
		got := signInOutcomeOf(b.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": "wrong password"}))
		if got != want {
			t.Fatalf("sign-in %d: %v, want %v", i+1, got, want)
		}
	}
	// Paths no route serves: one names a client, which must not become a
	// label.
	for _, p := range []string{"/no/such/page", "/oauth2/register/" + machine.ClientID} {
		resp, err := http.Get(e.url(p))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	// The admin API counts in the same metrics.
	a := &adminEnv{env: e, admin: admin}
	if r := a.adminRequest(t, http.MethodGet, "/admin/clients/"+url.PathEscape(machine.ClientID), "", nil); r.status != http.StatusOK {
		t.Fatalf("admin get client: %d %s", r.status, r.body)
	}
	// A client that went away before its answer is counted apart.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, e.url("/oauth2/token"), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(machine.ClientID, machine.ClientSecret)
	e.h.ServeHTTP(httptest.NewRecorder(), req)
	clock.Advance(time.Hour)

	after, body := waitMoved(t, admin.URL, before, map[string]float64{
		`authz_tokens_issued_total{grant_type="client_credentials"}`:       1,
		`authz_tokens_issued_total{grant_type="authorization_code"}`:       0,
		`authz_introspections_total{result="active"}`:                      1,
		`authz_introspections_total{result="inactive"}`:                    1,
		`authz_introspections_total{result="error"}`:                       0,
		`authz_sign_ins_total{outcome="invalid_credentials"}`:              5,
		`authz_sign_ins_total{outcome="throttled"}`:                        1,
		`authz_sign_ins_total{outcome="success"}`:                          0,
		`authz_throttled_requests_total{throttle="account"}`:               1,
		`authz_throttled_requests_total{throttle="client"}`:                0,
		`authz_http_requests_total{code="2xx",route="/oauth2/token"}`:      1,
		`authz_http_requests_total{code="2xx",route="/oauth2/introspect"}`: 2,
		`authz_http_requests_total{code="4xx",route="/oauth2/introspect"}`: 1,
		`authz_http_request_duration_seconds_count{route="/oauth2/token"}`: 1,
		`authz_http_requests_abandoned_total{route="/oauth2/token"}`:       1,
		// 6 login pages shown, 5 answered 200, 1 answered 429
		`authz_http_requests_total{code="2xx",route="/oauth2/authorize"}`:   11,
		`authz_http_requests_total{code="4xx",route="/oauth2/authorize"}`:   1,
		`authz_http_requests_total{code="4xx",route="other"}`:               2,
		`authz_http_requests_total{code="2xx",route="/admin/clients/{id}"}`: 1,
		`authz_signing_key_age_seconds`:                                     3600,
	})
	if after.has(t, `authz_http_requests_total{code="2xx",route="/metrics"}`) < 1 {
		t.Errorf("the first scrape was not counted")
	}
	if keyAge < 0 {
		t.Errorf("authz_signing_key_age_seconds = %v", keyAge)
	}
	for _, series := range []string{`authz_db_statements_total`, `authz_db_pool_acquires_total`} {
		if after.has(t, series) <= before.has(t, series) {
			t.Errorf("%s did not grow: %v then %v", series, before[series], after[series])
		}
	}
	for _, series := range []string{`authz_db_pool_max_connections`, `authz_db_pool_total_connections`} {
		if after.has(t, series) < 1 {
			t.Errorf("%s = %v, want at least 1", series, after[series])
		}
	}
	for _, series := range []string{`authz_db_pool_idle_connections`, `authz_db_pool_acquired_connections`,
		`authz_db_pool_empty_acquires_total`, `authz_db_pool_canceled_acquires_total`, `authz_database_unavailable_total`, `go_goroutines`} {
		after.has(t, series)
	}
	if strings.Contains(body, machine.ClientID) || strings.Contains(body, "/no/such/page") {
		t.Errorf("a raw path or client id became a label:\n%s", body)
	}
}

// TestMetricsDatabaseUnavailable: a request the database failed is
// counted as such, and the introspection it was as an error.
func TestMetricsDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	// A second server on the same database whose every request runs out
	// of time before its first query.
	broken := newEnvOnPool(t, e.pool, func(c *authz.Config) { c.RequestTimeout = time.Nanosecond })
	cfg := broken.cfg
	cfg.AdminToken = adminToken
	admin := metricsAdmin(t, broken, cfg)
	before, _ := scrapeMetrics(t, admin.URL)
	resp, body := postForm(t, broken.url("/oauth2/introspect"), url.Values{"token": {"whatever"}}, rs.ClientID, rs.ClientSecret)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("introspect with no time for the database: %d, want 503\n%s", resp.StatusCode, body)
	}
	waitMoved(t, admin.URL, before, map[string]float64{
		`authz_database_unavailable_total`:                                 1,
		`authz_introspections_total{result="error"}`:                       1,
		`authz_introspections_total{result="inactive"}`:                    0,
		`authz_http_requests_total{code="5xx",route="/oauth2/introspect"}`: 1,
	})
}

// TestMetricsAccess: /metrics needs no admin token while the admin API
// still does; in dev mode without a token it still needs a loopback Host;
// where AUTHZ_METRICS_LISTEN puts the metrics elsewhere the admin
// listener does not serve them; and the profiles are there only when
// AUTHZ_PPROF asks, behind the token.
func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	get := func(base, path, host, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	withToken := e.cfg
	withToken.AdminToken = adminToken
	withPprof := withToken
	withPprof.Pprof = true
	devMode := e.cfg
	devMode.AdminWithoutToken = true
	elsewhere := withToken
	elsewhere.MetricsListen = "127.0.0.1:0"
	off := withToken
	off.MetricsListen = "off"

	plain, pprofOn, dev, moved, none := metricsAdmin(t, e, withToken), metricsAdmin(t, e, withPprof),
		metricsAdmin(t, e, devMode), metricsAdmin(t, e, elsewhere), metricsAdmin(t, e, off)
	for _, c := range []struct {
		name              string
		srv               *httptest.Server
		path, host, token string
		want              int
	}{
		{"metrics without a token", plain, "/metrics", "", "", http.StatusOK},
		{"admin API without a token", plain, "/admin/clients", "", "", http.StatusUnauthorized},
		{"admin API with the token", plain, "/admin/clients", "", adminToken, http.StatusOK},
		{"metrics, not a prefix", plain, "/metrics/x", "", "", http.StatusUnauthorized},
		{"pprof off, with the token", plain, "/debug/pprof/", "", adminToken, http.StatusNotFound},
		{"pprof on, without a token", pprofOn, "/debug/pprof/", "", "", http.StatusUnauthorized},
		{"pprof on, with a wrong token", pprofOn, "/debug/pprof/", "", strings.Repeat("x", 40), http.StatusUnauthorized},
		{"pprof on, with the token", pprofOn, "/debug/pprof/", "", adminToken, http.StatusOK},
		{"pprof heap, with the token", pprofOn, "/debug/pprof/heap", "", adminToken, http.StatusOK},
		{"dev mode, loopback Host", dev, "/metrics", "", "", http.StatusOK},
		{"dev mode, another Host", dev, "/metrics", "attacker.example", "", http.StatusForbidden},
		{"metrics on their own listener", moved, "/metrics", "", "", http.StatusUnauthorized},
		{"metrics on their own listener, with the token", moved, "/metrics", "", adminToken, http.StatusNotFound},
		{"metrics off", none, "/metrics", "", adminToken, http.StatusNotFound},
	} {
		if got := get(c.srv.URL, c.path, c.host, c.token); got != c.want {
			t.Errorf("%s: GET %s: %d, want %d", c.name, c.path, got, c.want)
		}
	}

	// The listener of their own serves them, and nothing else.
	own := httptest.NewServer(authz.MetricsHandler(e.h.Metrics()))
	t.Cleanup(own.Close)
	scrapeMetrics(t, own.URL)
	if got := get(own.URL, "/admin/clients", "", adminToken); got != http.StatusNotFound {
		t.Errorf("metrics listener: GET /admin/clients: %d, want 404", got)
	}
}

// TestMetricsRegistryPerServer: two servers in one process keep their
// counts apart.
func TestMetricsRegistryPerServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newEnvOnPool(t, e.pool)
	machine := e.machine(t, authz.ClientMetadata{TokenEndpointAuthMethod: "client_secret_basic"})
	if tok := e.clientCredentials(t, machine.ClientID, machine.ClientSecret); tok.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %+v", tok.status, tok)
	}
	series := `authz_tokens_issued_total{grant_type="client_credentials"}`
	mine := httptest.NewServer(authz.MetricsHandler(e.h.Metrics()))
	t.Cleanup(mine.Close)
	theirs := httptest.NewServer(authz.MetricsHandler(other.h.Metrics()))
	t.Cleanup(theirs.Close)
	a, _ := scrapeMetrics(t, mine.URL)
	b, _ := scrapeMetrics(t, theirs.URL)
	if a.has(t, series) != 1 || b.has(t, series) != 0 {
		t.Errorf("%s: %v on the server that issued, %v on the other; want 1 and 0", series, a[series], b[series])
	}
}
