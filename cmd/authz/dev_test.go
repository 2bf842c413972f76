package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/net/html"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/demotest"
	"github.com/authz/authz/storage"
)

// lockedBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// devRun is one running "authz dev".
type devRun struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	stdout *lockedBuffer
	logs   *logSink
	issuer string

	// What the banner printed.
	password, bffSecret, apiSecret, authorizeURL string
}

// startDev runs "authz dev" on a free port with dataDir and more flags,
// and waits until it answers and has printed its banner.
func startDev(t *testing.T, e env, dataDir string, flags ...string) *devRun {
	t.Helper()
	e = maps.Clone(e)
	e["AUTHZ_LOG_FORMAT"] = "json" // logSink reads JSON
	ctx, cancel := context.WithCancel(t.Context())
	d := &devRun{t: t, cancel: cancel, done: make(chan error, 1), stdout: &lockedBuffer{},
		logs: &logSink{listening: make(chan string, 1)}}
	t.Cleanup(func() { d.stop() })
	go func() {
		d.done <- run(ctx, append([]string{"dev", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dataDir}, flags...),
			e.get, strings.NewReader(""), d.stdout, d.logs)
	}()
	var addr string
	select {
	case addr = <-d.logs.listening:
	case err := <-d.done:
		d.done <- err // for stop
		t.Fatalf("dev returned before listening: %v\nstdout:\n%s\nlog:\n%s", err, d.stdout, d.logs)
	case <-time.After(time.Minute):
		t.Fatalf("dev not listening after a minute\nstdout:\n%s\nlog:\n%s", d.stdout, d.logs)
	}
	d.issuer = "http://" + addr
	waitHealthy(t, d.issuer)

	// With --demo, the banner comes once the demo apps serve.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.stdout.String(), "Ctrl-C stops") {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("dev returned before its banner: %v\nstdout:\n%s\nlog:\n%s", err, d.stdout, d.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 30s\nstdout:\n%s\nlog:\n%s", d.stdout, d.logs)
		}
	}
	banner := d.stdout.String()
	for _, f := range []struct {
		dst *string
		re  string
	}{
		{&d.password, `user\s+alice, (password \S+|who existed already)`},
		{&d.bffSecret, `demo-bff\s+secret (\S+)`},
		{&d.apiSecret, `demo-api\s+secret (\S+)`},
		{&d.authorizeURL, `(http://\S+/oauth2/authorize\?\S+)`},
	} {
		m := regexp.MustCompile(f.re).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("banner does not match %s:\n%s", f.re, banner)
		}
		*f.dst = strings.TrimPrefix(m[1], "password ")
	}
	return d
}

// waitHealthy polls /healthz until it answers 200, for at most 10 seconds.
func waitHealthy(t *testing.T, issuer string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(issuer + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/healthz: %v", issuer, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the run (Ctrl-C) and checks that it ends cleanly. Only the
// first call checks.
func (d *devRun) stop() {
	d.t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("dev after Ctrl-C: %v\nlog:\n%s", err, d.logs)
		}
	case <-time.After(time.Minute):
		d.t.Errorf("dev still running a minute after Ctrl-C\nlog:\n%s", d.logs)
	}
}

func TestDev(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	dataDir := filepath.Join(t.TempDir(), ".data")

	first := startDev(t, e, dataDir)
	wantAuthorize := first.issuer + "/oauth2/authorize?response_type=code&client_id=demo-bff" +
		"&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcallback&scope=openid%20profile%20contacts&state=demo"
	if first.authorizeURL != wantAuthorize {
		t.Errorf("authorize URL in the banner:\n%s\nwant\n%s", first.authorizeURL, wantAuthorize)
	}
	banner := first.stdout.String()
	for _, want := range []string{
		"authz dev is running at " + first.issuer + "\n",
		first.issuer + "/.well-known/openid-configuration",
		"curl -s -u demo-bff:" + first.bffSecret + " " + first.issuer + "/oauth2/token -d grant_type=authorization_code" +
			" -d redirect_uri=http://localhost:3000/callback -d code=CODE",
		"curl -s -u demo-api:" + first.apiSecret + " " + first.issuer + "/oauth2/introspect -d token=ACCESS_TOKEN",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner does not contain %q:\n%s", want, banner)
		}
	}
	if n := strings.Count(banner, "\n"); n > 26 {
		t.Errorf("banner has %d lines, want at most 26:\n%s", n, banner)
	}
	store := openStore(t, e)
	checkDemoData(t, store)
	checkStaticNotLogged(t, first)
	checkDevPages(t, first)
	for _, name := range []string{"secret", "demo.json"} {
		if fi, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	// A database was configured: no cluster of our own, and nothing for
	// the CLI to find (it has the URL already).
	for _, name := range []string{"pg", "state.json"} {
		if _, err := os.Lstat(filepath.Join(dataDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s/%s exists (%v), though a database was configured", dataDir, name, err)
		}
	}
	if strings.Contains(banner, "AUTHZ_DATABASE_URL") {
		t.Errorf("the banner shows a configured database's URL (it may hold a password):\n%s", banner)
	}

	// The newcomer's flow, with what the banner printed.
	tok := authorizeAndExchange(t, first, true)
	if got := introspect(t, first.issuer, tok.AccessToken, first.apiSecret); got["active"] != true || got["username"] != "alice" {
		t.Errorf("introspect the new access token: %v", got)
	}

	// The admin API answers on loopback without a token, to this machine's
	// names only.
	m := regexp.MustCompile(`admin API\s+(http://\S+/admin/clients)\s+\(no token in dev mode\)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not show the admin API:\n%s", banner)
	}
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"client_id":"demo-bff"`) {
		t.Errorf("GET %s without a token in dev mode: %d %s", m[1], resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, m[1], nil)
	req.Host = "attacker.example"
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin API in dev mode with Host attacker.example (DNS rebinding): %d, want 403", resp.StatusCode)
	}
	first.stop()

	// A restart changes nothing, shows the same credentials, and the token
	// issued before it is still good (the system secret was kept).
	second := startDev(t, e, dataDir)
	if second.password != first.password || second.bffSecret != first.bffSecret || second.apiSecret != first.apiSecret {
		t.Errorf("credentials changed on restart: password %q→%q, bff %q→%q, api %q→%q", first.password, second.password,
			first.bffSecret, second.bffSecret, first.apiSecret, second.apiSecret)
	}
	checkDemoData(t, store)
	if got := introspect(t, second.issuer, tok.AccessToken, second.apiSecret); got["active"] != true {
		t.Errorf("access token from before the restart: %v", got)
	}
	if log := second.logs.String(); strings.Contains(log, "created") || strings.Contains(log, `"level":"WARN"`) {
		t.Errorf("second start created or reset something:\n%s", log)
	}
	second.stop()

	// Without the credentials file (deleted, or the database seeded from
	// another data directory), the demo clients get new secrets, so that the
	// ones printed work. An alice with another password is left alone: she
	// may be someone's own.
	if err := os.Remove(filepath.Join(dataDir, "demo.json")); err != nil {
		t.Fatal(err)
	}
	third := startDev(t, e, dataDir)
	if third.bffSecret == first.bffSecret || third.apiSecret == first.apiSecret {
		t.Errorf("client secrets not replaced: %q, %q", third.bffSecret, third.apiSecret)
	}
	if want := "user       alice, who existed already (her password was not set by authz dev)"; !strings.Contains(third.stdout.String(), want) {
		t.Errorf("banner does not say %q:\n%s", want, third.stdout)
	}
	checkDemoData(t, store)
	log := third.logs.String()
	for _, want := range []string{"gave a demo client a new secret", "exists already with a password not in"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not say %q:\n%s", want, log)
		}
	}
	// The new secrets work (any confidential client may introspect), and
	// alice's token was not touched.
	if got := introspect(t, third.issuer, tok.AccessToken, third.apiSecret); got["active"] != true {
		t.Errorf("introspect with demo-api's new secret: %v", got)
	}
	status, body := postBasic(t, third.issuer+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "demo-bff", third.bffSecret)
	if status != http.StatusOK || !strings.Contains(string(body), `"active":true`) {
		t.Errorf("introspect with demo-bff's new secret: %d %s", status, body)
	}
	third.stop()
}

// checkDevPages checks that dev runs the server in dev mode: the home page
// shows the demo credentials (to this machine), and an error page names
// the precise reason, here a redirect_uri that is not registered.
func checkDevPages(t *testing.T, d *devRun) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	home := fetch(t, c, http.MethodGet, d.issuer+"/", nil)
	if home.status != http.StatusOK || !strings.Contains(home.body, d.password) || !strings.Contains(home.body, d.bffSecret) {
		t.Errorf("GET / under dev: %d, want the home page with the demo password and secrets:\n%s", home.status, home.body)
	}
	wrong := d.issuer + "/oauth2/authorize?" + url.Values{"response_type": {"code"}, "client_id": {"demo-bff"},
		"redirect_uri": {"http://localhost:3000/callbak"}, "scope": {"openid"}, "state": {"x"}}.Encode()
	page := fetch(t, c, http.MethodGet, wrong, nil)
	if page.status != http.StatusBadRequest || !strings.Contains(page.body, "http://localhost:3000/callbak is not registered") {
		t.Errorf("a wrong redirect_uri under dev: %d, want 400 naming the mismatch:\n%s", page.status, page.body)
	}
}

// checkStaticNotLogged fetches a page asset and checks that it is not
// logged at info, as every other request is: a page's assets would scroll
// the banner away.
func checkStaticNotLogged(t *testing.T, d *devRun) {
	t.Helper()
	for _, r := range []struct {
		path string
		want int
	}{{"/static/style.css", http.StatusOK}, {"/after-the-asset", http.StatusNotFound}} {
		resp, err := http.Get(d.issuer + r.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Fatalf("GET %s: %s, want %d", r.path, resp.Status, r.want)
		}
	}
	// The other request is logged at info: once its line is there, so
	// would the asset's be.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.logs.String(), `"path":"/after-the-asset"`) {
		if time.Now().After(deadline) {
			t.Fatalf("GET /after-the-asset not logged:\n%s", d.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(d.logs.String(), `"path":"/static/style.css"`) {
		t.Errorf("a static file was logged at info:\n%s", d.logs)
	}
}

// checkDemoData checks the demo user and clients, and that there is one of
// each.
func checkDemoData(t *testing.T, store *storage.Store) {
	t.Helper()
	ctx := t.Context()
	users, err := store.ListUsers(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 {
		t.Errorf("%d users, want 1 (alice)", len(users))
	}
	u, err := store.UserByUsername(ctx, "alice")
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	if u.Name != "Alice Example" || u.Email != "alice@example.com" || !u.EmailVerified || u.Disabled {
		t.Errorf("alice = %+v", u)
	}
	clients, err := store.ListClients(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range clients {
		ids = append(ids, c.ID)
	}
	if want := []string{"demo-api", "demo-bff", "demo-cli", "demo-spa"}; !slices.Equal(ids, want) {
		t.Errorf("clients %v, want %v", ids, want)
	}
	want := map[string]string{
		"demo-bff": "client_secret_basic [authorization_code refresh_token] [http://localhost:3000/callback] " +
			"[openid profile email offline_access contacts] [http://localhost:3000/]",
		"demo-spa": "none [authorization_code refresh_token] [http://localhost:5173/callback] [openid profile email] []",
		"demo-api": "client_secret_basic [client_credentials] [] [] []",
		"demo-cli": "none [urn:ietf:params:oauth:grant-type:device_code refresh_token] [] [openid profile email] []",
	}
	for _, c := range clients {
		got := fmt.Sprintf("%s %v %v %v %v", c.TokenEndpointAuthMethod, c.GrantTypes, c.RedirectURIs, c.Scopes, c.PostLogoutRedirectURIs)
		if got != want[c.ID] {
			t.Errorf("%s: %s, want %s", c.ID, got, want[c.ID])
		}
		if c.Public != (c.ID == "demo-spa" || c.ID == "demo-cli") {
			t.Errorf("%s: public = %v", c.ID, c.Public)
		}
	}
}

type devToken struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
}

// authorizeAndExchange does what the banner tells a newcomer: open the
// authorize URL, sign in as alice, allow (unless alice did already), and
// exchange the code.
func authorizeAndExchange(t *testing.T, d *devRun, wantConsent bool) devToken {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	login := fetch(t, browser, http.MethodGet, d.authorizeURL, nil)
	if login.status != http.StatusOK || !strings.Contains(login.body, `name="password"`) {
		t.Fatalf("GET the authorize URL: want the login page, got %d:\n%s", login.status, login.body)
	}
	back := login.submit(t, browser, url.Values{"username": {"alice"}, "password": {d.password}, "action": {"login"}})
	back = followLocal(t, browser, d.issuer, back)
	if wantConsent {
		if back.status != http.StatusOK || !strings.Contains(back.body, `value="allow"`) {
			t.Fatalf("sign in: want the consent page, got %d:\n%s", back.status, back.body)
		}
		back = followLocal(t, browser, d.issuer, back.submit(t, browser, url.Values{"action": {"allow"}}))
	}
	loc, err := url.Parse(back.header.Get("Location"))
	if err != nil || back.status/100 != 3 {
		t.Fatalf("allow: want a redirect, got %d %v:\n%s", back.status, err, back.body)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "http://localhost:3000/callback" || loc.Query().Get("state") != "demo" {
		t.Fatalf("redirected to %s, want http://localhost:3000/callback with state=demo", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}

	// The banner's curl: -u demo-bff:SECRET -d grant_type=... -d redirect_uri=... -d code=...
	form := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {"http://localhost:3000/callback"}, "code": {code}}
	status, body := postBasic(t, d.issuer+"/oauth2/token", form, "demo-bff", d.bffSecret)
	var tok devToken
	if err := json.Unmarshal(body, &tok); err != nil || status != http.StatusOK || tok.AccessToken == "" || tok.IDToken == "" {
		t.Fatalf("exchange the code: %d %v\n%s", status, err, body)
	}
	if tok.Scope != "openid profile contacts" {
		t.Errorf("granted scope %q, want openid profile contacts", tok.Scope)
	}
	return tok
}

func introspect(t *testing.T, issuer, token, apiSecret string) map[string]any {
	t.Helper()
	status, body := postBasic(t, issuer+"/oauth2/introspect", url.Values{"token": {token}}, "demo-api", apiSecret)
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil || status != http.StatusOK {
		t.Fatalf("introspect: %d %v\n%s", status, err, body)
	}
	return out
}

func postBasic(t *testing.T, endpoint string, form url.Values, id, secret string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret) // generated ids and secrets need no encoding
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// followLocal follows redirects that stay on the server, as a browser
// would, and returns the first page that is not one (or a redirect away).
func followLocal(t *testing.T, c *http.Client, issuer string, p *devPage) *devPage {
	t.Helper()
	for range 10 {
		if p.status/100 != 3 {
			return p
		}
		loc, err := p.url.Parse(p.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(loc.String(), issuer+"/") {
			return p
		}
		p = fetch(t, c, http.MethodGet, loc.String(), nil)
	}
	t.Fatalf("too many redirects, last to %s", p.url)
	return nil
}

// devPage is a fetched page.
type devPage struct {
	url    *url.URL
	status int
	header http.Header
	body   string
}

func fetch(t *testing.T, c *http.Client, method, rawURL string, form url.Values) *devPage {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = c.Get(rawURL)
	} else {
		resp, err = c.PostForm(rawURL, form)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &devPage{url: resp.Request.URL, status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// submit posts the page's form: its hidden fields (CSRF token, the
// request) with set on top, to its action.
func (p *devPage) submit(t *testing.T, c *http.Client, set url.Values) *devPage {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	action, values := "", url.Values{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
			}
			switch {
			case n.Data == "form":
				action = attrs["action"]
			case n.Data == "input" && attrs["type"] == "hidden":
				values.Add(attrs["name"], attrs["value"])
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for k, v := range set {
		values[k] = v
	}
	target, err := p.url.Parse(action)
	if err != nil {
		t.Fatal(err)
	}
	return fetch(t, c, http.MethodPost, target.String(), values)
}

// TestDevOwnCluster runs dev without a database: it starts, keeps and
// stops its own cluster. As root, with a data directory the 'postgres' user
// cannot enter (t.TempDir is 0700), the cluster lives under devStateRoot
// and the data directory links to it.
func TestDevOwnCluster(t *testing.T) {
	// Not parallel: it sets devStateRoot.
	state, err := os.MkdirTemp("", "authz-dev-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	if err := os.Chmod(state, 0o755); err != nil {
		t.Fatal(err)
	}
	saved := devStateRoot
	devStateRoot = filepath.Join(state, "authz-dev")
	t.Cleanup(func() { devStateRoot = saved })

	dataDir := filepath.Join(t.TempDir(), ".data")
	e := env{} // no database: dev starts its own
	t0 := time.Now()
	first := startDev(t, e, dataDir)
	t.Logf("first start (initdb): %v", time.Since(t0).Round(time.Millisecond))
	tok := clientCredentials(t, first)
	// CLI commands run in the same folder use dev's database.
	t.Chdir(filepath.Dir(dataDir))
	checkCLIWhileDevRuns(t, first, dataDir)

	link := filepath.Join(dataDir, "pg")
	pgData := link
	if os.Geteuid() == 0 {
		target, err := os.Readlink(link)
		if err != nil {
			t.Fatalf("running as root with a data directory closed to postgres: %s is not a link: %v", link, err)
		}
		if filepath.Dir(filepath.Dir(target)) != devStateRoot || filepath.Base(target) != "pg" {
			t.Errorf("%s links to %s, want %s/<hash>/pg", link, target, devStateRoot)
		}
		if !strings.Contains(first.stdout.String(), target) {
			t.Errorf("banner does not say the data is in %s:\n%s", target, first.stdout)
		}
		pgData = target
	}
	if _, err := os.Stat(filepath.Join(pgData, "postmaster.pid")); err != nil {
		t.Errorf("no running cluster in %s: %v", pgData, err)
	}
	first.stop()
	// A clean shutdown removes postmaster.pid.
	if _, err := os.Stat(filepath.Join(pgData, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid still there after Ctrl-C (%v): the cluster was not stopped", err)
	}
	if !strings.Contains(first.logs.String(), `"msg":"stopped PostgreSQL"`) {
		t.Errorf("log does not say PostgreSQL stopped:\n%s", first.logs)
	}
	checkCLIAfterDev(t, dataDir, pgData)

	t0 = time.Now()
	second := startDev(t, e, dataDir)
	t.Logf("restart: %v", time.Since(t0).Round(time.Millisecond))
	if second.apiSecret != first.apiSecret || second.password != first.password {
		t.Errorf("credentials changed on restart")
	}
	if got := introspect(t, second.issuer, tok, second.apiSecret); got["active"] != true {
		t.Errorf("token from before the restart: %v", got)
	}
	// Without the state file, the CLI cannot find this dev, nor start its
	// cluster (dev has it): one line says what to do.
	if err := os.Remove(filepath.Join(dataDir, "state.json")); err != nil {
		t.Fatal(err)
	}
	wantError(t, env{}, "", "did not start (", false, "users", "list")
	err = wantError(t, env{}, "", "run `make run` (authz dev) first, or set AUTHZ_DATABASE_URL", false, "users", "list")
	t.Logf("users list with dev's cluster taken: %v", err)
	if got := introspect(t, second.issuer, tok, second.apiSecret); got["active"] != true {
		t.Errorf("dev after a CLI command failed to start its cluster: %v", got)
	}
	second.stop()

	// A folder where dev ran on a configured database only: nothing to
	// start.
	other := t.TempDir()
	if err := os.Mkdir(filepath.Join(other, ".data"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)
	wantError(t, env{}, "", noDevDatabase, false, "users", "list")
}

// checkCLIWhileDevRuns runs CLI commands with no database configured in
// the folder of dev's data directory while dev runs: they use dev's
// database, and say so in one line. The banner's export line reaches it
// too, for other tools.
func checkCLIWhileDevRuns(t *testing.T, d *devRun, dataDir string) {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(dataDir, "state.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v; want mode 0600", fi, err)
	}
	stdout, stderr, err := runCLI(t, env{}, "", "users", "list")
	if err != nil || !regexp.MustCompile(`(?m)^alice\s`).MatchString(stdout) {
		t.Fatalf("users list with dev running: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if want := "authz: AUTHZ_DATABASE_URL is unset: using the database of authz dev running in this folder (.data)\n"; stderr != want {
		t.Errorf("users list said on stderr %q, want %q", stderr, want)
	}
	mustRun(t, env{}, "a good password\n", "users", "create", "--username", "bob", "--password-stdin")
	// keys rotate seals the key with dev's system secret, from the data
	// directory too.
	mustRun(t, env{}, "", "keys", "rotate")

	m := regexp.MustCompile(`\n\s+export AUTHZ_DATABASE_URL='([^']+)'\n`).FindStringSubmatch(d.stdout.String())
	if m == nil {
		t.Fatalf("banner has no export AUTHZ_DATABASE_URL line:\n%s", d.stdout)
	}
	conn, err := pgx.Connect(t.Context(), m[1])
	if err != nil {
		t.Fatalf("connect with the banner's URL: %v", err)
	}
	defer conn.Close(context.Background())
	var users int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&users); err != nil || users != 2 {
		t.Errorf("users through the banner's URL: %d, %v; want 2 (alice and bob)", users, err)
	}
}

// checkCLIAfterDev runs a CLI command with no database configured after
// dev stopped: it starts dev's cluster for the command, says so, and stops
// it again.
func checkCLIAfterDev(t *testing.T, dataDir, pgData string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file still there after dev stopped: %v", err)
	}
	stdout, stderr, err := runCLI(t, env{}, "", "users", "list")
	if err != nil || !regexp.MustCompile(`(?m)^alice\s`).MatchString(stdout) || !regexp.MustCompile(`(?m)^bob\s`).MatchString(stdout) {
		t.Fatalf("users list after dev stopped: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if want := "authz: AUTHZ_DATABASE_URL is unset and authz dev is not running: started its PostgreSQL (.data) for this command\n"; stderr != want {
		t.Errorf("users list said on stderr %q, want %q", stderr, want)
	}
	if _, err := os.Stat(filepath.Join(pgData, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid there after the command (%v): the cluster it started was not stopped", err)
	}
}

// clientCredentials gets an access token for demo-api.
func clientCredentials(t *testing.T, d *devRun) string {
	t.Helper()
	status, body := postBasic(t, d.issuer+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "demo-api", d.apiSecret)
	var tok devToken
	if err := json.Unmarshal(body, &tok); err != nil || status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("client_credentials: %d %v\n%s", status, err, body)
	}
	return tok.AccessToken
}

func TestDevErrors(t *testing.T) {
	t.Parallel()
	if usage := mustRun(t, env{}, "", "help"); !strings.Contains(usage, "\n  dev  ") {
		t.Errorf("usage does not list dev:\n%s", usage)
	}
	e := env{"AUTHZ_DATABASE_URL": "postgres://u@127.0.0.1:1/db?connect_timeout=2"}
	dir := t.TempDir()
	wantError(t, e, "", `dev: unexpected argument "now"`, true, "dev", "--data-dir", dir, "now")
	short := env{"AUTHZ_DATABASE_URL": e["AUTHZ_DATABASE_URL"], "AUTHZ_SECRETS": "short"}
	wantError(t, short, "", "AUTHZ_SECRETS: secret 1 is 5 bytes", false,
		"dev", "--data-dir", dir, "--listen", "127.0.0.1:0")
	wantError(t, e, "", "cannot reach the database at postgres://u@127.0.0.1:1/db", false,
		"dev", "--data-dir", dir, "--listen", "127.0.0.1:0")

	// A port in use fails before anything else starts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The hint names a port that is free (internal/devserver tests that it
	// skips a busy one), on the same host.
	busy := ln.Addr().String()
	for _, tc := range []struct {
		hint string
		args []string
	}{
		{"AUTHZ_LISTEN=", []string{"--listen", busy}},
		{"--demo-bff-listen ", []string{"--listen", "127.0.0.1:0", "--demo", "--demo-bff-listen", busy}},
		{"--demo-api-listen ", []string{"--listen", "127.0.0.1:0", "--demo", "--demo-bff-listen", "127.0.0.1:0", "--demo-api-listen", busy}},
	} {
		err := wantError(t, env{}, "", "address already in use: another program has the port; stop it, or choose another port with "+tc.hint+"127.0.0.1:", false,
			append([]string{"dev", "--data-dir", dir}, tc.args...)...)
		if _, free, _ := strings.Cut(fmt.Sprint(err), tc.hint); free == busy || free == "" {
			t.Errorf("the hint in %q names the busy port", err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a cluster was made (%v) though the port was taken", err)
	}

	wantError(t, e, "", `dev: the admin API without AUTHZ_ADMIN_TOKEN must listen on a loopback address, not "0.0.0.0:0"`, false,
		"dev", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0")
	wantError(t, e, "", "dev: --demo and --seed-only do not go together", true, "dev", "--data-dir", dir, "--demo", "--seed-only")
	wantError(t, e, "", `dev: --demo-bff-listen "127.0.0.1:0": want host:port, with a port other than 0 unless with --demo`, true,
		"dev", "--data-dir", dir, "--seed-only", "--demo-bff-listen", "127.0.0.1:0")
	wantError(t, e, "", `dev: --demo-bff-listen "3000": want host:port`, true, "dev", "--data-dir", dir, "--demo", "--demo-bff-listen", "3000")
	wantError(t, e, "", `dev: --demo-api-listen "4000": want host:port`, true, "dev", "--data-dir", dir, "--demo", "--demo-api-listen", "4000")
}

// TestDevDemo runs dev --demo on free ports: the demo API and BFF start
// once the provider listens, configured for the demo clients; a person
// opens the BFF, clicks Get contacts, signs in, allows, and sees alice's
// contacts. Ctrl-C stops all three, the demo apps first.
func TestDevDemo(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	dataDir := filepath.Join(t.TempDir(), ".data")
	d := startDev(t, e, dataDir, "--demo", "--demo-bff-listen", "127.0.0.1:0", "--demo-api-listen", "127.0.0.1:0")

	banner := d.stdout.String()
	m := regexp.MustCompile(`\nDemo: open (http://localhost:\d+) and click Get contacts\n\s+\(the BFF calls the contacts API at (http://127\.0\.0\.1:\d+); sign in as alice\)\n`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not say where the demo is:\n%s", banner)
	}
	bffURL, apiURL := m[1], m[2]
	if bffURL == "http://localhost:3000" || !strings.Contains(banner, "(confidential BFF; redirect "+bffURL+"/callback)") {
		t.Errorf("the banner's BFF redirect does not follow the BFF's port %s:\n%s", bffURL, banner)
	}
	if n := strings.Count(banner, "\n"); n > 29 {
		t.Errorf("banner has %d lines, want at most 29:\n%s", n, banner)
	}
	// The demo-bff client follows the BFF's port too.
	store := openStore(t, e)
	c, err := store.Client(t.Context(), "demo-bff")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.RedirectURIs, []string{bffURL + "/callback"}) || !slices.Equal(c.PostLogoutRedirectURIs, []string{bffURL + "/"}) {
		t.Errorf("demo-bff redirect URIs %v, post-logout %v; want the BFF's %s", c.RedirectURIs, c.PostLogoutRedirectURIs, bffURL)
	}

	b := demotest.NewBrowser(t)
	home := b.Get(bffURL + "/")
	if text, _ := home.Text(t, "get-contacts"); home.Status != http.StatusOK || text != "Get contacts" {
		t.Fatalf("the BFF's home page: %d, get-contacts %q:\n%s", home.Status, text, home.Body)
	}
	p, trail := b.Through(b.Submit(home, "get-contacts", nil), "alice", d.password, "allow")
	var sawLogin, sawConsent bool
	for _, step := range trail {
		onAuthz := strings.HasPrefix(step.URL.String(), d.issuer+"/oauth2/authorize")
		sawLogin = sawLogin || onAuthz && step.IsLogin()
		sawConsent = sawConsent || onAuthz && step.IsConsent()
	}
	if !sawLogin || !sawConsent {
		t.Errorf("want the provider's login and consent pages on the way (login %v, consent %v)", sawLogin, sawConsent)
	}
	if p.Status != http.StatusOK || p.URL.String() != bffURL+"/contacts" {
		t.Fatalf("ended at %s with %d:\n%s", p.URL, p.Status, p.Body)
	}
	if who, _ := p.Text(t, "who"); who != "Alice Example" {
		t.Errorf("signed in as %q, want Alice Example", who)
	}
	table, _ := p.Text(t, "contacts")
	if !strings.HasPrefix(table, "Contacts of alice") || strings.Count(table, "@example.com") != 3 || strings.Count(p.Body, "<tr>") != 4 {
		t.Errorf("contacts table: %q", table)
	}
	// The API is there for a curl too, and wants a token.
	resp, err := http.Get(apiURL + "/contacts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("GET %s/contacts without a token: %s %q", apiURL, resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	d.stop()
	for _, u := range []string{d.issuer, bffURL, apiURL} {
		if resp, err := http.Get(u + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after Ctrl-C", u)
		}
	}
	log := d.logs.String()
	bffDown := strings.Index(log, `"msg":"shutting down","app":"demo-bff"`)
	apiDown := strings.Index(log, `"msg":"shutting down","app":"demo-api"`)
	providerDown := strings.Index(log, `"msg":"shutting down","timeout"`)
	if bffDown < 0 || apiDown < 0 || providerDown < bffDown || providerDown < apiDown {
		t.Errorf("want the demo apps to shut down, then the provider:\n%s", log)
	}
	if strings.Contains(log, d.bffSecret) || strings.Contains(log, d.apiSecret) {
		t.Error("a client secret was logged")
	}

	// Without --demo, dev puts the demo-bff client back at port 3000.
	plain := startDev(t, e, dataDir)
	checkDemoData(t, store)
	if log := plain.logs.String(); !strings.Contains(log, `"msg":"set a demo client's redirect URIs","client_id":"demo-bff"`) {
		t.Errorf("log does not say the redirect URIs were set:\n%s", log)
	}
	plain.stop()
}

// TestDevSeedOnly seeds the demo data, as docker compose's demo-seed
// service does, and prints the credentials as JSON; again, it changes
// nothing.
func TestDevSeedOnly(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	dir := filepath.Join(t.TempDir(), "demo")
	out := mustRun(t, e, "", "dev", "--seed-only", "--data-dir", dir)
	var creds struct {
		Username      string            `json:"username"`
		Password      string            `json:"alice_password"`
		ClientSecrets map[string]string `json:"client_secrets"`
	}
	if err := json.Unmarshal([]byte(out), &creds); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if creds.Username != "alice" || creds.Password == "" || len(creds.ClientSecrets) != 2 {
		t.Fatalf("credentials %+v", creds)
	}
	store := openStore(t, e)
	checkDemoData(t, store)
	ctx := t.Context()
	for id, secret := range creds.ClientSecrets {
		c, err := store.Client(ctx, id)
		if err != nil || storage.CompareSecret(c.SecretHash, secret) != nil {
			t.Errorf("%s: the printed secret does not match (%v)", id, err)
		}
		// The demo commands read it from the data directory.
		if got, err := demo.ClientSecret(filepath.Join(dir, "demo.json"), id); got != secret || err != nil {
			t.Errorf("demo.ClientSecret(%s) = %q, %v", id, got, err)
		}
	}
	u, err := store.UserByUsername(ctx, "alice")
	if err != nil || storage.CompareSecret(u.PasswordHash, creds.Password) != nil {
		t.Errorf("alice's printed password does not work (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("seeding made a system secret (%v)", err)
	}

	if again := mustRun(t, e, "", "dev", "--seed-only", "--data-dir", dir); again != out {
		t.Errorf("a second seeding printed\n%s\nnot\n%s", again, out)
	}
	// A BFF published on another port gets its redirect URIs.
	mustRun(t, e, "", "dev", "--seed-only", "--data-dir", dir, "--demo-bff-listen", ":3001")
	c, err := store.Client(ctx, "demo-bff")
	if err != nil || !slices.Equal(c.RedirectURIs, []string{"http://localhost:3001/callback"}) || !slices.Equal(c.PostLogoutRedirectURIs, []string{"http://localhost:3001/"}) {
		t.Errorf("demo-bff after --demo-bff-listen :3001: %v, %v (%v)", c.RedirectURIs, c.PostLogoutRedirectURIs, err)
	}
}
