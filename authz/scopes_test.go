package authz_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// setScope writes a catalogue entry as the CLI and the admin API do.
func (e *env) setScope(t *testing.T, name, description string, showOnConsent, discoverable bool) {
	t.Helper()
	if _, _, err := authz.SetScope(context.Background(), e.store, name, authz.ScopeChange{
		Description: &description, ShowOnConsent: &showOnConsent, Discoverable: &discoverable,
	}); err != nil {
		t.Fatalf("set scope %s: %v", name, err)
	}
}

// consentPageFor signs alice in and returns the consent page for scope.
func consentPageFor(t *testing.T, e *env, b *browser, clientID, scope string) *page {
	t.Helper()
	p := b.get(authorizeURL(e.issuer, map[string]string{
		"response_type": "code", "client_id": clientID, "scope": scope,
		"redirect_uri": "https://app.example.com/callback", "state": "state-123456",
	}))
	if isLoginPage(p) {
		p = b.login(p, "alice", testPassword)
	}
	if !isConsentPage(p) {
		t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	return p
}

// TestConsentShowsScopeCatalogue: the consent page shows the catalogue's
// description of a custom scope instead of the raw name, an override of a
// built-in scope's, the built-in text of one the catalogue does not
// describe, and not a scope kept off the consent page. A change reaches
// the page within scopeCacheTTL (30 s), not before.
func TestConsentShowsScopeCatalogue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	client := e.createClient(t, authz.ClientMetadata{
		ClientName:   "Contacts BFF",
		RedirectURIs: []string{"https://app.example.com/callback"},
		Scope:        "openid profile contacts internal:sync",
	})
	e.setScope(t, "contacts", "Read and change your contacts", true, true)
	e.setScope(t, "openid", "Prove to the app that it's you", true, true)
	e.setScope(t, "internal:sync", "Keep the app's cache in sync", false, true)
	e.setScope(t, "calendar", "See your calendar", true, true) // not requested

	b := newBrowser(t)
	p := consentPageFor(t, e, b, client.ClientID, "openid profile contacts internal:sync")
	wantInBody(t, p.body,
		`<span class="scope-text">Read and change your contacts</span>`,
		`<span class="scope-text">Prove to the app that it&#39;s you</span>`,
		`<span class="scope-text">See your name and username</span>`,
	)
	wantNotInBody(t, p.body, `Access &#34;contacts&#34;`, "Confirm your identity", `Access &#34;internal:sync`, "Keep the app", "See your calendar")
	if n := strings.Count(p.body, `class="scope-text"`); n != 3 {
		t.Errorf("%d scopes listed, want 3:\n%s", n, p.body)
	}

	// Deleted from the catalogue, and a new description: the page keeps
	// its copy for scopeCacheTTL, then shows the change.
	if err := e.store.DeleteScope(context.Background(), "openid"); err != nil {
		t.Fatal(err)
	}
	e.setScope(t, "contacts", "Read your contacts", true, true)
	e.clock.Advance(20 * time.Second)
	p = consentPageFor(t, e, b, client.ClientID, "openid contacts")
	wantInBody(t, p.body, "Read and change your contacts", "Prove to the app")
	e.clock.Advance(11 * time.Second)
	p = consentPageFor(t, e, b, client.ClientID, "openid contacts")
	wantInBody(t, p.body, `<span class="scope-text">Read your contacts</span>`, "Confirm your identity")
	wantNotInBody(t, p.body, "Read and change", "Prove to the app")

	// Allowing still works, for the scopes asked: the catalogue only describes.
	loc := b.consent(p, "allow")
	if loc.Query().Get("code") == "" {
		t.Fatalf("allow on the consent page: redirected to %s, want a code", loc)
	}
}

// discoveryScopes fetches discovery's scopes_supported.
func discoveryScopes(t *testing.T, e *env) []string {
	t.Helper()
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Scopes []string `json:"scopes_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery: %d, %v", resp.StatusCode, err)
	}
	return doc.Scopes
}

// TestDiscoveryListsScopeCatalogue: scopes_supported is the built-in
// scopes, then the catalogue's discoverable ones in name order, each
// once; a new scope appears within scopeCacheTTL.
func TestDiscoveryListsScopeCatalogue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	builtIn := []string{"openid", "profile", "email", "offline_access"}
	if got := discoveryScopes(t, e); !slices.Equal(got, builtIn) {
		t.Fatalf("scopes_supported with an empty catalogue = %v, want %v", got, builtIn)
	}
	e.setScope(t, "contacts:write", "Change your contacts", true, true)
	e.setScope(t, "contacts:read", "Read your contacts", true, true)
	e.setScope(t, "ops:debug", "Debug", true, false) // not advertised
	e.setScope(t, "email", "See the address you sign in with", true, true)

	if got := discoveryScopes(t, e); !slices.Equal(got, builtIn) {
		t.Errorf("scopes_supported within scopeCacheTTL of the first read = %v, want the copy in memory, %v", got, builtIn)
	}
	e.clock.Advance(30 * time.Second)
	want := append(slices.Clone(builtIn), "contacts:read", "contacts:write")
	if got := discoveryScopes(t, e); !slices.Equal(got, want) {
		t.Errorf("scopes_supported = %v, want %v", got, want)
	}
	// RFC 8414 metadata says the same.
	resp, err := http.Get(e.url("/.well-known/oauth-authorization-server"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(doc["scopes_supported"]); !strings.Contains(string(got), `"contacts:read","contacts:write"`) {
		t.Errorf("oauth-authorization-server scopes_supported = %s, want the catalogue's", got)
	}
}

// TestAdminScopes: the admin API's catalogue CRUD, with its audit events.
func TestAdminScopes(t *testing.T) {
	t.Parallel()
	a := newAuditEnv(t)
	const path = "/admin/scopes/api%2Fcontacts.read" // a scope name may hold a slash

	var sc storage.Scope
	r := a.adminRequest(t, http.MethodPut, path, "", map[string]any{"description": "  Read your contacts  "})
	r.want(t, http.StatusCreated, &sc)
	if sc.Name != "api/contacts.read" || sc.Description != "Read your contacts" || !sc.ShowOnConsent || !sc.Discoverable || sc.CreatedAt.IsZero() {
		t.Errorf("created %+v", sc)
	}
	if loc := r.header.Get("Location"); loc != path {
		t.Errorf("Location = %q, want %q", loc, path)
	}
	a.get(t, path).want(t, http.StatusOK, &sc)
	if sc.Name != "api/contacts.read" {
		t.Errorf("GET = %+v", sc)
	}

	// PUT replaces: flags left out go back to true.
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{
		"name": "api/contacts.read", "description": "Read all your contacts", "show_on_consent": false, "discoverable": false,
	}).want(t, http.StatusOK, &sc)
	if sc.Description != "Read all your contacts" || sc.ShowOnConsent || sc.Discoverable {
		t.Errorf("replaced: %+v", sc)
	}
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{"description": "Read all your contacts"}).want(t, http.StatusOK, &sc)
	if !sc.ShowOnConsent || !sc.Discoverable {
		t.Errorf("PUT without the flags: %+v, want them back to true", sc)
	}

	for _, name := range []string{"b", "a", "c"} {
		a.adminRequest(t, http.MethodPut, "/admin/scopes/"+name, "", map[string]any{"description": name}).want(t, http.StatusCreated, nil)
	}
	var names []string
	for next := "/admin/scopes?limit=2"; next != ""; {
		var list struct {
			Items      []storage.Scope `json:"items"`
			NextCursor string          `json:"next_cursor"`
		}
		a.get(t, next).want(t, http.StatusOK, &list)
		for _, s := range list.Items {
			names = append(names, s.Name)
		}
		next = ""
		if list.NextCursor != "" {
			next = "/admin/scopes?limit=2&cursor=" + url.QueryEscape(list.NextCursor)
		}
	}
	if got := strings.Join(names, " "); got != "a api/contacts.read b c" {
		t.Errorf("listed in pages of 2: %s", got)
	}

	a.adminRequest(t, http.MethodDelete, path, "", nil).want(t, http.StatusNoContent, nil)
	a.adminRequest(t, http.MethodDelete, path, "", nil).wantError(t, http.StatusNotFound, "not_found", `"api/contacts.read"`)
	a.get(t, path).wantError(t, http.StatusNotFound, "not_found", "no scope")

	events := a.events(t)
	for _, ev := range []string{authz.EventScopeCreated, authz.EventScopeDeleted} {
		wantEvent(t, events, map[string]string{"event": ev, "outcome": "success", "scope": "api/contacts.read", "source": "admin"})
	}
	n := 0
	for _, ev := range events {
		if ev["event"] == authz.EventScopeUpdated && ev["scope"] == "api/contacts.read" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d scope.updated events, want 2", n)
	}
}

// TestAdminScopeBadInput: what the catalogue refuses, with 400 and a
// message saying why; nothing is stored.
func TestAdminScopeBadInput(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	good := `{"description": "Read your contacts"}`
	tests := []struct {
		name, path, contentType, body string
		status                        int
		mention                       string
	}{
		{"space in the name", "/admin/scopes/two%20words", "application/json", good, 400, "RFC 6749"},
		{"double quote in the name", "/admin/scopes/a%22b", "application/json", good, 400, "double quote"},
		{"backslash in the name", "/admin/scopes/a%5Cb", "application/json", good, 400, "backslash"},
		{"non-ASCII name", "/admin/scopes/caf%C3%A9", "application/json", good, 400, "printable ASCII"},
		{"name too long", "/admin/scopes/" + strings.Repeat("a", 129), "application/json", good, 400, "at most 128"},
		{"no description", "/admin/scopes/contacts", "application/json", `{"show_on_consent": true}`, 400, "description is required"},
		{"blank description", "/admin/scopes/contacts", "application/json", `{"description": "   "}`, 400, "description is required"},
		{"description too long", "/admin/scopes/contacts", "application/json", `{"description": "` + strings.Repeat("é", 201) + `"}`, 400, "201 characters long; at most 200"},
		{"line break in the description", "/admin/scopes/contacts", "application/json", `{"description": "Read\nyour contacts"}`, 400, "control characters"},
		{"another name in the body", "/admin/scopes/contacts", "application/json", `{"name": "calendar", "description": "d"}`, 400, "differs"},
		{"unknown field", "/admin/scopes/contacts", "application/json", `{"description": "d", "public": true}`, 400, `unknown field "public"`},
		{"flag a string", "/admin/scopes/contacts", "application/json", `{"description": "d", "discoverable": "no"}`, 400, `"discoverable" must be true or false`},
		{"invalid JSON", "/admin/scopes/contacts", "application/json", `{"description": `, 400, "not valid JSON"},
		{"no Content-Type", "/admin/scopes/contacts", "", good, 415, "Content-Type: application/json"},
		{"a query", "/admin/scopes/contacts?force=1", "application/json", good, 400, `unknown query parameter "force"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := a.adminRequest(t, http.MethodPut, tc.path, "", tc.body, "Content-Type", tc.contentType)
			r.wantError(t, tc.status, "invalid_request", tc.mention)
		})
	}
	t.Run("bad list query", func(t *testing.T) {
		t.Parallel()
		a.get(t, "/admin/scopes?limit=0").wantError(t, http.StatusBadRequest, "invalid_request", "limit")
	})
	t.Run("POST", func(t *testing.T) {
		t.Parallel()
		r := a.adminRequest(t, http.MethodPost, "/admin/scopes", "", map[string]any{"description": "d"})
		r.wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
		if allow := r.header.Get("Allow"); allow != "GET" {
			t.Errorf("Allow = %q, want GET", allow)
		}
	})
	t.Cleanup(func() {
		scs, err := a.store.ListScopes(context.Background(), "", 10)
		if err != nil || len(scs) != 0 {
			t.Errorf("bad requests stored %d scopes (%v)", len(scs), err)
		}
	})
}
