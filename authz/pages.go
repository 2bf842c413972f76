package authz

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/templates"
)

// hiddenField is one form value carried through a page unchanged.
type hiddenField struct{ Name, Value string }

// loginPage is the data of login.html.
type loginPage struct {
	Action     string        // form action URL (e.g. "/oauth2/authorize")
	CSRFToken  string        // goes in a hidden input named "csrf_token"
	Hidden     []hiddenField // original authorize parameters, as hidden inputs
	ClientName string        // which app asks ("Sign in to continue to <ClientName>")
	Username   string        // prefilled username (login_hint or the last attempt)
	Error      string        // e.g. "Incorrect username or password.", shown with role="alert"
}

// scopeView is one requested scope as the consent page lists it.
type scopeView struct{ Name, Description string }

// consentPage is the data of consent.html.
type consentPage struct {
	Action       string
	CSRFToken    string
	Hidden       []hiddenField
	ClientName   string
	ClientURI    string // optional; linked only when it is an https URL
	LogoURI      string // optional; shown only when it is an https URL
	TOSURI       string // optional terms of service; linked only when https
	PolicyURI    string // optional privacy policy; linked only when https
	RedirectHost string // "You will be sent back to <host>"
	Username     string // "Signed in as <username>"
	Scopes       []scopeView
	// IdentifiedBy is the client_id URL of a client this server's
	// operator did not register (authz/cimd.go), said plainly; "" else.
	IdentifiedBy string
}

// errorPage is the data of error.html.
type errorPage struct {
	Title   string // e.g. "This request can't be completed"
	Message string // plain language
	Code    string // the OAuth error code if any (e.g. "invalid_client"), shown small for support
	// Reason is the precise cause, for the developer: shown in dev mode
	// only, since it can echo what the request said.
	Reason string
	// RequestID finds the request's log line, which has the reason.
	RequestID string
}

// logoutPage is the data of logout.html, the "sign out?" confirmation.
type logoutPage struct {
	Action     string
	CSRFToken  string
	Hidden     []hiddenField
	ClientName string // optional: which app asks to sign you out
}

// loggedOutPage is the data of loggedout.html. ContinueURL, when set, is
// a registered post_logout_redirect_uri offered as a link rather than
// followed; it was checked against the client's registration (absolute,
// no script schemes), so it may be a native app's private-use scheme.
type loggedOutPage struct {
	ContinueURL  template.URL
	ContinueName string // the client's name
	// StillSignedIn: the person chose "Stay signed in"; nothing changed.
	StillSignedIn bool
}

// Template file names. Every page is parsed together with pageLayoutFile,
// which defines "layout" (executed) and "formstate"; a page defines "title"
// and "content".
const (
	pageLayoutFile    = "layout.html"
	pageLoginFile     = "login.html"
	pageConsentFile   = "consent.html"
	pageErrorFile     = "error.html"
	pageLogoutFile    = "logout.html"
	pageLoggedOutFile = "loggedout.html"
	pageHomeFile      = "home.html"
	pageStaticDir     = "static"
)

// pageFiles lists every page with sample data that loadPages renders once,
// so a re-branded template that names a field the page does not have fails
// at start-up rather than in front of a user.
var pageFiles = []struct {
	name   string
	sample any
}{
	{pageLoginFile, loginPage{
		Action: "/", CSRFToken: "t", Hidden: []hiddenField{{"k", "v"}},
		ClientName: "App", Username: "user", Error: "error",
	}},
	{pageConsentFile, consentPage{
		Action: "/", CSRFToken: "t", Hidden: []hiddenField{{"k", "v"}},
		ClientName: "App", ClientURI: "https://app.example", LogoURI: "https://app.example/logo.png",
		TOSURI: "https://app.example/tos", PolicyURI: "https://app.example/privacy",
		RedirectHost: "app.example", Username: "user", Scopes: []scopeView{{"openid", "d"}},
		IdentifiedBy: "https://app.example/client.json",
	}},
	{pageErrorFile, errorPage{Title: "t", Message: "m", Code: "c", Reason: "r", RequestID: "i"}},
	{pageLogoutFile, logoutPage{Action: "/", CSRFToken: "t", Hidden: []hiddenField{{"k", "v"}}, ClientName: "App"}},
	{pageLoggedOutFile, loggedOutPage{ContinueURL: "https://app.example/bye", ContinueName: "App", StillSignedIn: true}},
	{pageDeviceFile, devicePage{
		Action: "/", CSRFToken: "t", Hidden: []hiddenField{{"k", "v"}}, Step: "confirm", UserCode: "BDWP-HQPK", Error: "e",
		ClientName: "App", ClientURI: "https://app.example", LogoURI: "https://app.example/logo.png",
		Username: "user", Scopes: []scopeView{{"openid", "d"}},
	}},
	{pageDeviceDoneFile, deviceDonePage{Approved: true}},
	{pageHomeFile, homePage{Issuer: "https://id.example", DiscoveryURL: "https://id.example/d", JWKSURL: "https://id.example/j",
		Dev: &homeDev{Username: "alice", Password: "p", SignInURL: "https://id.example/a",
			Clients: []homeClient{{ID: "c", Secret: "s", Kind: "k", RedirectURIs: []string{"https://app.example/cb"}}}}}},
}

// pageOptional are pages added after operators began to re-brand: a
// templates directory made before them lacks them, and gets the embedded
// page inside its own layout instead of failing at start-up.
var pageOptional = map[string]bool{pageHomeFile: true, pageDeviceFile: true, pageDeviceDoneFile: true}

// pageFormReserved are the form field names the pages set themselves; a
// carried-through hidden field with one of these names is dropped so it can
// never shadow the CSRF token or the submitted action.
var pageFormReserved = map[string]bool{
	"csrf_token": true, "action": true, "username": true, "password": true,
}

// pageFuncs are the functions the templates may call.
var pageFuncs = template.FuncMap{
	// msg is the text of a key of pageText, with arguments (strings.go).
	"msg": pageMsg,
	// strong is a msg argument shown in bold: {{msg "k" (strong .Name)}}.
	"strong": pageStrong,
	// initial is the upper-cased first letter of s, for the placeholder
	// shown when a client has no logo.
	"initial": func(s string) string {
		for _, r := range strings.TrimSpace(s) {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return string(unicode.ToUpper(r))
			}
		}
		return "?"
	},
}

// pages holds the parsed templates.
type pages struct {
	byName map[string]*template.Template // page file name → layout + page
	static fs.FS                         // rooted at the static directory

	// logger, when set, receives template execution errors. They can only
	// come from a re-branded template, and the user sees a plain 500.
	logger *slog.Logger

	base  string    // the issuer's path, under which the static files are served
	brand pageBrand // set once, before serving (setBrand)
}

// loadPages parses every page from dir when dir != "" (operators re-brand
// by pointing AUTHZ_TEMPLATES_DIR at their copy of templates/), else from the
// embedded templates.FS. It fails, naming the file, if the layout, a page or
// the static directory is missing, or if a template does not parse or does
// not render its page's data. Static files come from the same source:
// dir/static when dir != "". base is the issuer's path, under which the
// static files are served; templates link them with {{static "style.css"}}.
func loadPages(dir, base string) (*pages, error) {
	p := &pages{byName: make(map[string]*template.Template, len(pageFiles)), base: base}
	funcs := template.FuncMap{"static": func(name string) string { return base + "/static/" + name }, "brand": p.currentBrand}
	for k, v := range pageFuncs {
		funcs[k] = v
	}
	var fsys fs.FS = templates.FS
	source := "embedded templates"
	if dir != "" {
		fsys = os.DirFS(dir)
		source = dir
	}

	if _, err := fs.Stat(fsys, pageLayoutFile); err != nil {
		return nil, fmt.Errorf("loading pages from %s: %s: %w", source, pageLayoutFile, err)
	}
	for _, f := range pageFiles {
		pageFS := fsys
		if _, err := fs.Stat(fsys, f.name); err != nil {
			if !pageOptional[f.name] || !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("loading pages from %s: %s: %w", source, f.name, err)
			}
			pageFS = templates.FS
		}
		t, err := template.New(f.name).Funcs(funcs).ParseFS(fsys, pageLayoutFile)
		if err == nil {
			t, err = t.ParseFS(pageFS, f.name)
		}
		if err != nil {
			return nil, fmt.Errorf("loading pages from %s: %s: %w", source, f.name, err)
		}
		for _, name := range []string{"layout", "title", "content"} {
			if t.Lookup(name) == nil {
				return nil, fmt.Errorf("loading pages from %s: %s: no %q template defined", source, f.name, name)
			}
		}
		if err := checkPageText(t); err != nil {
			return nil, fmt.Errorf("loading pages from %s: %s: %w", source, f.name, err)
		}
		if err := t.ExecuteTemplate(io.Discard, "layout", f.sample); err != nil {
			return nil, fmt.Errorf("loading pages from %s: %s: %w", source, f.name, err)
		}
		p.byName[f.name] = t
	}

	st, err := fs.Stat(fsys, pageStaticDir)
	if err == nil && !st.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("loading pages from %s: %s: %w", source, pageStaticDir, err)
	}
	if dir != "" {
		p.static = os.DirFS(filepath.Join(dir, pageStaticDir))
	} else if p.static, err = fs.Sub(fsys, pageStaticDir); err != nil {
		return nil, fmt.Errorf("loading pages from %s: %s: %w", source, pageStaticDir, err)
	}
	return p, nil
}

func (p *pages) renderLogin(w http.ResponseWriter, status int, d loginPage) {
	d.Hidden = pageHidden(d.Hidden)
	p.render(w, status, pageLoginFile, d)
}

func (p *pages) renderConsent(w http.ResponseWriter, status int, d consentPage) {
	d.Hidden = pageHidden(d.Hidden)
	d.ClientURI = pageHTTPSURL(d.ClientURI)
	d.LogoURI = pageHTTPSURL(d.LogoURI)
	d.TOSURI = pageHTTPSURL(d.TOSURI)
	d.PolicyURI = pageHTTPSURL(d.PolicyURI)
	if d.ClientName == "" {
		d.ClientName = pageMessage("consent.unnamed_app")
	}
	p.render(w, status, pageConsentFile, d)
}

func (p *pages) renderError(w http.ResponseWriter, status int, d errorPage) {
	p.render(w, status, pageErrorFile, d)
}

func (p *pages) renderLogout(w http.ResponseWriter, status int, d logoutPage) {
	d.Hidden = pageHidden(d.Hidden)
	p.render(w, status, pageLogoutFile, d)
}

func (p *pages) renderLoggedOut(w http.ResponseWriter, status int, d loggedOutPage) {
	p.render(w, status, pageLoggedOutFile, d)
}

func (p *pages) renderHome(w http.ResponseWriter, status int, d homePage) {
	p.render(w, status, pageHomeFile, d)
}

// render executes the page into a buffer first, so a template error never
// sends half a page: the user gets a plain 500 instead.
func (p *pages) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	err := errors.New("page not loaded")
	if t := p.byName[name]; t != nil {
		err = t.ExecuteTemplate(&buf, "layout", data)
	}
	h := w.Header()
	// Pages carry CSRF tokens and who is signed in: never cache them.
	h.Set("Cache-Control", "no-store")
	if err != nil {
		if p.logger != nil {
			p.logger.Error("rendering page", "page", name, "err", err)
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "Internal server error: the page could not be displayed.\n")
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// staticHandler serves the static files (style.css) with a one-hour public
// Cache-Control and a content type from the file extension. It accepts the
// request path with or without the "/static/" prefix it is mounted at, and
// never lists directories.
func (p *pages) staticHandler() http.Handler {
	files := http.FileServerFS(p.static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/"+pageStaticDir+"/")
		name = strings.TrimPrefix(path.Clean("/"+name), "/")
		if name == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		if st, err := fs.Stat(p.static, name); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		r2.URL.RawPath = ""
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r2)
	})
}

// describeScopes gives plain-language descriptions for the requested
// scopes, in order, without blanks or repeats, from the built-in texts
// only; an unknown scope such as "contacts" becomes `Access "contacts"`.
func describeScopes(scopes []string) []scopeView {
	return describeScopesIn(nil, scopes)
}

// describeScopesIn is describeScopes with the operator's scope catalogue
// first: its description wins over the built-in one (an OpenID Connect
// scope's included), and a scope it keeps off the consent page is left
// out.
func describeScopesIn(catalogue map[string]*storage.Scope, scopes []string) []scopeView {
	out := make([]scopeView, 0, len(scopes))
	seen := make(map[string]bool, len(scopes))
	for _, s := range scopes {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		if c, ok := catalogue[s]; ok {
			if c.ShowOnConsent {
				out = append(out, scopeView{Name: s, Description: c.Description})
			}
			continue
		}
		d, ok := pageText["scope."+s]
		if !ok || s == "unknown" {
			d = pageMessage("scope.unknown", s)
		}
		out = append(out, scopeView{Name: s, Description: d})
	}
	return out
}

// pageHidden drops carried-through fields that have no name or that would
// shadow a field the page sets itself.
func pageHidden(in []hiddenField) []hiddenField {
	out := make([]hiddenField, 0, len(in))
	for _, f := range in {
		if f.Name == "" || pageFormReserved[f.Name] {
			continue
		}
		out = append(out, f)
	}
	return out
}

// pageHTTPSURL returns u when it is an absolute https URL with a host, and
// "" otherwise, so a client's javascript:, data: or plain http URL is never
// linked or loaded.
func pageHTTPSURL(u string) string {
	if !strings.HasPrefix(strings.ToLower(u), "https://") {
		return ""
	}
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme != "https" || parsed.Host == "" {
		return ""
	}
	return u
}

// pageBrand is the operator's product as every page shows it: in the
// title, the header and the footer (layout.html), and wherever a page
// names the service ("Sign out of <Name>"). Templates read it with
// {{brand.Name}}.
type pageBrand struct {
	Name       string // AUTHZ_BRAND_NAME; never empty
	LogoURL    string // an https URL, or the path the static file is served at; "" shows the built-in mark
	SupportURL string // linked from the footer; "" shows no footer
}

// currentBrand is the templates' brand function.
func (p *pages) currentBrand() pageBrand {
	b := p.brand
	if b.Name == "" {
		b.Name = DefaultBrandName
	}
	return b
}

// setBrand makes the pages show the brand of cfg, which Validate
// checked. A logo under /static/ must be a file of the static directory
// in use, so a typo fails at start-up rather than as a broken image.
func (p *pages) setBrand(cfg *Config) error {
	b := pageBrand{Name: cfg.BrandName, LogoURL: cfg.BrandLogoURL, SupportURL: cfg.SupportURL}
	if name, ok := strings.CutPrefix(b.LogoURL, "/"+pageStaticDir+"/"); ok {
		if st, err := fs.Stat(p.static, name); err != nil || st.IsDir() {
			return fmt.Errorf("AUTHZ_BRAND_LOGO_URL %s: there is no file %s in the static directory of the templates", b.LogoURL, name)
		}
		b.LogoURL = p.base + b.LogoURL
	}
	p.brand = b
	return nil
}
