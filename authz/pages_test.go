package authz

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/authz/authz/templates"
)

func mustLoadPages(t *testing.T, dir string) *pages {
	t.Helper()
	p, err := loadPages(dir, "")
	if err != nil {
		t.Fatalf("loadPages(%q): %v", dir, err)
	}
	return p
}

// pageBody checks the response basics every page shares and returns the body.
func pageBody(t *testing.T, rec *httptest.ResponseRecorder, wantStatus int) string {
	t.Helper()
	if rec.Code != wantStatus {
		t.Fatalf("status = %d, want %d; body:\n%s", rec.Code, wantStatus, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q, want text/html; charset=utf-8", ct)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`<html lang="en">`,
		`<meta name="viewport"`,
		`<meta name="referrer" content="no-referrer">`,
		`<link rel="stylesheet" href="/static/style.css">`,
		`<title>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s; body:\n%s", want, body)
		}
	}
	// The pages run under a CSP without 'unsafe-inline' and with no script-src.
	for _, bad := range []string{"<script", "<style", " style=", "javascript:"} {
		if strings.Contains(strings.ToLower(body), bad) {
			t.Errorf("page contains %q; body:\n%s", bad, body)
		}
	}
	return body
}

func wantContains(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s; body:\n%s", want, body)
		}
	}
}

func wantNotContains(t *testing.T, body string, bads ...string) {
	t.Helper()
	for _, bad := range bads {
		if strings.Contains(body, bad) {
			t.Errorf("body contains %s; body:\n%s", bad, body)
		}
	}
}

const pageXSS = `<script>alert(1)</script>`
const pageXSSEscaped = `&lt;script&gt;alert(1)&lt;/script&gt;`

func TestPagesLoadEmbedded(t *testing.T) {
	p := mustLoadPages(t, "")
	for _, f := range pageFiles {
		if p.byName[f.name] == nil {
			t.Errorf("page %s not loaded", f.name)
		}
	}
}

func TestPageLogin(t *testing.T) {
	p := mustLoadPages(t, "")
	rec := httptest.NewRecorder()
	p.renderLogin(rec, http.StatusUnauthorized, loginPage{
		Action:    "/oauth2/authorize",
		CSRFToken: "tok&en",
		Hidden: []hiddenField{
			{"client_id", "my-app"},
			{"redirect_uri", "https://app.example/cb?a=1&b=2"},
			{"state", `"><x>`},
			{"csrf_token", "attacker"}, // must not shadow the real token
			{"action", "allow"},        // must not pick the button
		},
		ClientName: pageXSS,
		Username:   `al"ice`,
		Error:      "Incorrect username or password.",
	})
	body := pageBody(t, rec, http.StatusUnauthorized)
	wantContains(t, body,
		`<form method="post" action="/oauth2/authorize"`,
		`<input type="hidden" name="csrf_token" value="tok&amp;en">`,
		`<input type="hidden" name="client_id" value="my-app">`,
		`<input type="hidden" name="redirect_uri" value="https://app.example/cb?a=1&amp;b=2">`,
		`<input type="hidden" name="state" value="&#34;&gt;&lt;x&gt;">`,
		pageXSSEscaped,
		`role="alert">Incorrect username or password.</div>`,
		`name="username" type="text" value="al&#34;ice" autocomplete="username"`,
		`name="password" type="password" autocomplete="current-password" required autofocus>`,
		`<label for="username">`, `id="username"`,
		`<label for="password">`, `id="password"`,
		`<button type="submit" name="action" value="login"`,
	)
	wantNotContains(t, body, pageXSS, `value="attacker"`, `name="action" value="allow"`)
	if n := strings.Count(body, `name="csrf_token"`); n != 1 {
		t.Errorf("csrf_token inputs = %d, want 1", n)
	}

	// Without a username or error: autofocus on the username, no alert.
	rec = httptest.NewRecorder()
	p.renderLogin(rec, http.StatusOK, loginPage{Action: "/login", CSRFToken: "t"})
	body = pageBody(t, rec, http.StatusOK)
	wantContains(t, body, `autocomplete="username" autocapitalize="none" autocorrect="off" spellcheck="false" required autofocus>`)
	wantNotContains(t, body, `role="alert"`, `autocomplete="current-password" required autofocus`)
}

func TestPageConsent(t *testing.T) {
	p := mustLoadPages(t, "")
	d := consentPage{
		Action:       "/oauth2/authorize",
		CSRFToken:    "csrf-123",
		Hidden:       []hiddenField{{"client_id", "my-app"}, {"scope", "openid profile"}},
		ClientName:   pageXSS,
		ClientURI:    "https://app.example/about",
		LogoURI:      "https://app.example/logo.png",
		RedirectHost: "app.example",
		Username:     "alice",
		Scopes:       describeScopes([]string{"openid", "contacts"}),
	}
	rec := httptest.NewRecorder()
	p.renderConsent(rec, http.StatusOK, d)
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body,
		pageXSSEscaped,
		`<input type="hidden" name="csrf_token" value="csrf-123">`,
		`<input type="hidden" name="client_id" value="my-app">`,
		`<input type="hidden" name="scope" value="openid profile">`,
		`<img class="app-logo" src="https://app.example/logo.png"`,
		`<a href="https://app.example/about"`,
		`Signed in as <strong>alice</strong>`,
		`sent back to <strong>app.example</strong>`,
		`Confirm your identity`,
		`Access &#34;contacts&#34;`,
		`name="action" value="allow" class="button button-primary"`,
		`name="action" value="deny" class="button button-secondary"`,
	)
	wantNotContains(t, body, pageXSS)

	for _, bad := range []string{
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"http://app.example/logo.png",
		"data:image/png;base64,AAAA",
		"//app.example/logo.png",
		"https:/no-host",
		"https://",
	} {
		d.LogoURI, d.ClientURI = bad, bad
		rec := httptest.NewRecorder()
		p.renderConsent(rec, http.StatusOK, d)
		body := pageBody(t, rec, http.StatusOK)
		wantNotContains(t, body, "<img", "<a href")
		wantContains(t, body, `class="app-logo app-initial"`)
	}
}

func TestPageError(t *testing.T) {
	p := mustLoadPages(t, "")
	rec := httptest.NewRecorder()
	p.renderError(rec, http.StatusBadRequest, errorPage{
		Title:   "This request can't be completed",
		Message: "The app sent you here with a return address it has not registered. " + pageXSS,
		Code:    "invalid_request",
	})
	body := pageBody(t, rec, http.StatusBadRequest)
	wantContains(t, body,
		`This request can&#39;t be completed</h1>`,
		`<title>This request can&#39;t be completed · authz</title>`,
		pageXSSEscaped,
		`<code>invalid_request</code>`,
	)
	wantNotContains(t, body, pageXSS)

	rec = httptest.NewRecorder()
	p.renderError(rec, http.StatusNotFound, errorPage{})
	body = pageBody(t, rec, http.StatusNotFound)
	wantContains(t, body, "Something went wrong")
	wantNotContains(t, body, "Error code")
}

func TestPageLogout(t *testing.T) {
	p := mustLoadPages(t, "")
	rec := httptest.NewRecorder()
	p.renderLogout(rec, http.StatusOK, logoutPage{
		Action:     "/oauth2/logout",
		CSRFToken:  "csrf-9",
		Hidden:     []hiddenField{{"post_logout_redirect_uri", "https://app.example/bye"}},
		ClientName: pageXSS,
	})
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body,
		`<form method="post" action="/oauth2/logout"`,
		`<input type="hidden" name="csrf_token" value="csrf-9">`,
		`<input type="hidden" name="post_logout_redirect_uri" value="https://app.example/bye">`,
		`name="action" value="logout"`,
		`name="action" value="cancel"`,
		`Stay signed in`,
		pageXSSEscaped,
	)
	wantNotContains(t, body, pageXSS)
}

func TestPageLoggedOut(t *testing.T) {
	p := mustLoadPages(t, "")
	rec := httptest.NewRecorder()
	p.renderLoggedOut(rec, http.StatusOK, loggedOutPage{})
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body, "signed out")
	wantNotContains(t, body, "<form")
}

// copyPageTemplates copies the embedded templates (pages and static files)
// into a fresh directory, as an operator re-branding them would.
func copyPageTemplates(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(templates.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(templates.FS, name)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPagesLoadDirMissingPage(t *testing.T) {
	for _, name := range []string{"layout.html", "login.html", "consent.html", "error.html", "logout.html", "loggedout.html"} {
		t.Run(name, func(t *testing.T) {
			dir := copyPageTemplates(t)
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			_, err := loadPages(dir, "")
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("loadPages without %s: err = %v, want an error naming %s", name, err, name)
			}
		})
	}
}

func TestPagesLoadDirBroken(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
	}{
		{"parse error", "consent.html", `{{define "content"}}{{if}}{{end}}`},
		{"unknown field", "login.html", `{{define "title"}}x{{end}}{{define "content"}}{{.NoSuchField}}{{end}}`},
		{"no content", "error.html", `{{define "title"}}x{{end}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyPageTemplates(t)
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := loadPages(dir, "")
			if err == nil || !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("err = %v, want an error naming %s", err, tc.file)
			}
		})
	}

	dir := copyPageTemplates(t)
	if err := os.RemoveAll(filepath.Join(dir, "static")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPages(dir, ""); err == nil || !strings.Contains(err.Error(), "static") {
		t.Fatalf("loadPages without static/: err = %v, want an error naming static", err)
	}
}

func TestPagesLoadDirRebrand(t *testing.T) {
	dir := copyPageTemplates(t)
	login := filepath.Join(dir, "login.html")
	b, err := os.ReadFile(login)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `<h1>{{msg "login.heading"}}</h1>`, "<h1>Welcome to Example Corp</h1>", 1)
	if changed == string(b) {
		t.Fatal(`login.html has no <h1>{{msg "login.heading"}}</h1> to change`)
	}
	if err := os.WriteFile(login, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	css := "body { background: rebeccapurple; }\n"
	if err := os.WriteFile(filepath.Join(dir, "static", "style.css"), []byte(css), 0o644); err != nil {
		t.Fatal(err)
	}

	p := mustLoadPages(t, dir)
	rec := httptest.NewRecorder()
	p.renderLogin(rec, http.StatusOK, loginPage{Action: "/login", CSRFToken: "t", ClientName: "App"})
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body, "<h1>Welcome to Example Corp</h1>")

	rec = httptest.NewRecorder()
	p.staticHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/static/style.css", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != css {
		t.Errorf("re-branded style.css: status %d, body %q; want 200, %q", rec.Code, rec.Body, css)
	}
}

func TestPageTemplateErrorIs500(t *testing.T) {
	p := mustLoadPages(t, "")
	// An execution error half-way through the page must not leak a partial page.
	rec := httptest.NewRecorder()
	p.render(rec, http.StatusOK, pageLoginFile, errorPage{Title: "wrong data"})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	if strings.Contains(rec.Body.String(), "<html") {
		t.Errorf("partial page sent: %s", rec.Body)
	}
}

func TestStaticHandler(t *testing.T) {
	p := mustLoadPages(t, "")
	h := p.staticHandler()
	want, err := fs.ReadFile(templates.FS, "static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/static/style.css", "/style.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", target, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/css") {
			t.Errorf("GET %s: Content-Type = %q, want text/css", target, ct)
		}
		if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
			t.Errorf("GET %s: Cache-Control = %q, want a max-age", target, cc)
		}
		if rec.Body.String() != string(want) {
			t.Errorf("GET %s: body differs from the embedded style.css", target)
		}
	}

	for _, tc := range []struct {
		method, target string
		want           int
	}{
		{http.MethodGet, "/static/", http.StatusNotFound},
		{http.MethodGet, "/static/missing.css", http.StatusNotFound},
		{http.MethodGet, "/static/../login.html", http.StatusNotFound},
		{http.MethodGet, "/static/%2e%2e/login.html", http.StatusNotFound},
		{http.MethodPost, "/static/style.css", http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.target, rec.Code, tc.want)
		}
	}
}

func TestDescribeScopes(t *testing.T) {
	got := describeScopes([]string{"openid", "profile", "email", "offline_access", "contacts", "", "email"})
	want := []scopeView{
		{"openid", "Confirm your identity"},
		{"profile", "See your name and username"},
		{"email", "See your email address"},
		{"offline_access", "Stay connected when you're not using the app"},
		{"contacts", `Access "contacts"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("describeScopes = %#v\nwant %#v", got, want)
	}
	if got := describeScopes(nil); len(got) != 0 {
		t.Errorf("describeScopes(nil) = %#v, want empty", got)
	}
}
