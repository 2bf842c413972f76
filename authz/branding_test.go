package authz_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// TestBrandingOnPages: AUTHZ_BRAND_NAME, AUTHZ_BRAND_LOGO_URL and
// AUTHZ_SUPPORT_URL show on every page, the embedded templates unchanged:
// in the title, the header, the footer and where a page names the service.
// Without them the pages say authz and have no footer.
func TestBrandingOnPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) {
		c.BrandName = `Example <ID>`
		c.BrandLogoURL = "/static/favicon.svg"
		c.SupportURL = "https://help.example.com/sign-in?from=authz"
	})
	client := e.confidential(t, "client_secret_basic")
	b := newBrowser(t)
	pages := map[string]*page{
		"login": b.get(authorizeURL(e.issuer, map[string]string{
			"response_type": "code", "client_id": client.ClientID, "scope": "openid",
			"redirect_uri": "https://app.example.com/callback", "state": "state-123456",
		})),
		"not found": b.get(e.url("/no-such-page")),
		"logout":    b.get(e.url("/oauth2/logout")),
	}
	if !isLoginPage(pages["login"]) {
		t.Fatalf("want the login page, got %d:\n%s", pages["login"].status, pages["login"].body)
	}
	for name, p := range pages {
		t.Run(name, func(t *testing.T) {
			wantInBody(t, p.body,
				` · Example &lt;ID&gt;</title>`,
				`<img class="brand-logo" src="/static/favicon.svg" alt=""`,
				`<span class="brand-name">Example &lt;ID&gt;</span>`,
				`<footer class="footer"><a href="https://help.example.com/sign-in?from=authz" rel="noopener noreferrer">Help and support</a></footer>`,
			)
			wantNotInBody(t, p.body, "<ID>", `class="brand-mark"`, "· authz<", ">authz<")
		})
	}
	wantInBody(t, pages["login"].body, "<title>Sign in · Example &lt;ID&gt;</title>")
	wantInBody(t, pages["logout"].body, "signed out of Example &lt;ID&gt;.")

	// Signed in, logout asks first, naming the brand.
	e.createUser(t, "alice")
	if p := b.login(pages["login"], "alice", testPassword); !isConsentPage(p) {
		t.Fatalf("after signing in: %d\n%s", p.status, p.body)
	}
	wantInBody(t, b.get(e.url("/oauth2/logout")).body, "You are about to sign out of Example &lt;ID&gt;.")

	// The defaults.
	d := newEnv(t)
	p := d.getBody(t, "/no-such-page")
	wantInBody(t, p, "· authz</title>", `<span class="brand-mark" aria-hidden="true"></span>`, `<span class="brand-name">authz</span>`)
	wantNotInBody(t, p, "<footer", "brand-logo")
}

func (e *env) getBody(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get(e.url(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBrandingLogoUnderIssuerPath: a logo under /static/ is served where
// the static files are, under the issuer's path; an https logo is used as
// it is.
func TestBrandingLogoUnderIssuerPath(t *testing.T) {
	t.Parallel()
	pool, err := storage.NewPool(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for logo, want := range map[string]string{
		"/static/favicon.svg":                  "/auth/static/favicon.svg",
		"https://cdn.example.com/logo.png?v=2": "https://cdn.example.com/logo.png?v=2",
	} {
		cfg := brandConfig(t)
		cfg.Issuer = "https://id.example.com/auth"
		cfg.BrandLogoURL = logo
		h, err := authz.New(cfg, storage.New(pool), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, "https://id.example.com/auth/nothing-here", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		wantInBody(t, rec.Body.String(), `<img class="brand-logo" src="`+strings.ReplaceAll(want, "&", "&amp;")+`"`)
	}
}

// TestBrandingRefusedAtStartUp: bad branding settings stop the server
// from starting, with a message naming the setting; so does a logo path
// that names no file of the templates in use.
func TestBrandingRefusedAtStartUp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, env, value, want string
	}{
		{"blank name", "AUTHZ_BRAND_NAME", "   ", "AUTHZ_BRAND_NAME is blank"},
		{"long name", "AUTHZ_BRAND_NAME", strings.Repeat("x", 61), "at most 60 characters"},
		{"control character in the name", "AUTHZ_BRAND_NAME", "Example\tID", "control characters"},
		{"http logo", "AUTHZ_BRAND_LOGO_URL", "http://cdn.example.com/logo.png", "AUTHZ_BRAND_LOGO_URL"},
		{"data logo", "AUTHZ_BRAND_LOGO_URL", "data:image/svg+xml,<svg/>", "AUTHZ_BRAND_LOGO_URL"},
		{"scheme-relative logo", "AUTHZ_BRAND_LOGO_URL", "//cdn.example.com/logo.png", "AUTHZ_BRAND_LOGO_URL"},
		{"logo outside static", "AUTHZ_BRAND_LOGO_URL", "/logo.png", "a path under /static/"},
		{"logo climbing out of static", "AUTHZ_BRAND_LOGO_URL", "/static/../secrets", "a path under /static/"},
		{"logo with a query", "AUTHZ_BRAND_LOGO_URL", "/static/logo.svg?v=1", "a path under /static/"},
		{"logo with credentials", "AUTHZ_BRAND_LOGO_URL", "https://user:pw@cdn.example.com/logo.png", "AUTHZ_BRAND_LOGO_URL"},
		{"http support", "AUTHZ_SUPPORT_URL", "http://help.example.com", "AUTHZ_SUPPORT_URL"},
		{"script support", "AUTHZ_SUPPORT_URL", "javascript:alert(1)", "AUTHZ_SUPPORT_URL"},
		{"mailto with headers", "AUTHZ_SUPPORT_URL", "mailto:help@example.com?bcc=all@example.com", "AUTHZ_SUPPORT_URL"},
		{"relative support", "AUTHZ_SUPPORT_URL", "/help", "an absolute https URL or a mailto: address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := authz.ConfigFromEnv(func(k string) string {
				if k == tc.env {
					return tc.value
				}
				return ""
			})
			if err == nil {
				cfg.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef-one")}
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.env) {
				t.Fatalf("%s=%q: err = %v, want one naming %s and saying %q", tc.env, tc.value, err, tc.env, tc.want)
			}
		})
	}

	// Good values pass.
	for env, value := range map[string]string{
		"AUTHZ_BRAND_NAME":     "  Exämple ID  ",
		"AUTHZ_BRAND_LOGO_URL": "/static/brand/logo.svg",
		"AUTHZ_SUPPORT_URL":    "mailto:help@example.com",
	} {
		cfg, err := authz.ConfigFromEnv(func(k string) string {
			if k == env {
				return value
			}
			return ""
		})
		cfg.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef-one")}
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s=%q: %v, want it accepted", env, value, err)
		}
		if env == "AUTHZ_BRAND_NAME" && cfg.BrandName != "Exämple ID" {
			t.Errorf("BrandName = %q, want it trimmed", cfg.BrandName)
		}
	}
	if cfg, err := authz.ConfigFromEnv(func(string) string { return "" }); err != nil || cfg.BrandName != authz.DefaultBrandName {
		t.Errorf("unset AUTHZ_BRAND_NAME: %q, %v; want %q", cfg.BrandName, err, authz.DefaultBrandName)
	}

	// A logo path that passes Validate but names no static file: New fails.
	pool, err := storage.NewPool(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := brandConfig(t)
	cfg.BrandLogoURL = "/static/logo.svg"
	if _, err := authz.New(cfg, storage.New(pool), nil); err == nil || !strings.Contains(err.Error(), "AUTHZ_BRAND_LOGO_URL /static/logo.svg") {
		t.Fatalf("New with a logo missing from static/: %v, want an error naming the setting", err)
	}
	// In a re-branded templates directory that has it, it is found.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "templates"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "static", "logo.svg"), []byte("<svg xmlns='http://www.w3.org/2000/svg'/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.TemplatesDir = dir
	if _, err := authz.New(cfg, storage.New(pool), nil); err != nil {
		t.Fatalf("New with the logo in the templates directory: %v", err)
	}
}

func brandConfig(t *testing.T) authz.Config {
	t.Helper()
	cfg, err := authz.ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "https://id.example.com"
	cfg.Secrets = [][]byte{[]byte("test-secret-test-secret-test-secret-0123")}
	return cfg
}

// wantInBody fails unless body contains each of wants.
func wantInBody(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s; body:\n%s", want, body)
		}
	}
}

// wantNotInBody fails if body contains any of bads.
func wantNotInBody(t *testing.T, body string, bads ...string) {
	t.Helper()
	for _, bad := range bads {
		if strings.Contains(body, bad) {
			t.Errorf("body contains %s; body:\n%s", bad, body)
		}
	}
}
