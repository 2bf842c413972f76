package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

const cimdCallback = "http://127.0.0.1:7777/callback"

// docServer serves client metadata documents over TLS, by path, and
// counts the requests for each.
type docServer struct {
	srv *httptest.Server

	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]int
}

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	d := &docServer{handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.hits[r.URL.Path]++
		h := d.handlers[r.URL.Path]
		d.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// serve answers GET path with doc as JSON and a Cache-Control max-age.
func (d *docServer) serve(t *testing.T, path string, doc any, maxAge int) string {
	t.Helper()
	body, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d.handle(path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if maxAge > 0 {
			w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(maxAge))
		}
		_, _ = w.Write(body)
	})
	return d.srv.URL + path
}

func (d *docServer) handle(path string, h http.HandlerFunc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handlers[path] = h
}

func (d *docServer) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hits[path]
}

// withDocuments turns metadata documents on and fetches from d's TLS
// server (on loopback, which the test's HTTP client may reach).
func withDocuments(d *docServer) envOption {
	return func(c *authz.Config) {
		c.ClientIDMetadata = true
		c.HTTPClient = d.srv.Client()
	}
}

// notesDocument is a public client's metadata document for id.
func notesDocument(id string) map[string]any {
	return map[string]any{
		"client_id":                  id,
		"client_name":                "Notes CLI",
		"client_uri":                 "https://notes.example/about",
		"redirect_uris":              []string{cimdCallback},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "openid profile offline_access",
		"token_endpoint_auth_method": "none",
	}
}

// cimdAuthorize is a PKCE authorization request of client id.
func cimdAuthorize(e *env, id, redirect, challenge string) string {
	return authorizeURL(e.issuer, map[string]string{
		"response_type": "code", "client_id": id, "scope": "openid profile", "state": "st-cimd",
		"redirect_uri": redirect, "code_challenge": challenge, "code_challenge_method": "S256",
	})
}

// TestMetadataDocumentClientFlow: a client identified by a URL completes
// the PKCE code flow; the consent page names it and says no operator
// registered it; its tokens introspect with the URL as client_id; its
// document is fetched again only once its max-age has passed.
func TestMetadataDocumentClientFlow(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	e.createUser(t, "alice")
	rs := e.resourceServer(t)
	id := d.serve(t, "/notes/client.json", notesDocument(d.srv.URL+"/notes/client.json"), 600)

	// Discovery says so.
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&disc); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if disc["client_id_metadata_document_supported"] != true {
		t.Errorf("discovery: client_id_metadata_document_supported = %v, want true", disc["client_id_metadata_document_supported"])
	}

	verifier, challenge := pkcePair()
	b := newBrowser(t)
	consent := b.login(b.get(cimdAuthorize(e, id, cimdCallback, challenge)), "alice", testPassword)
	if !isConsentPage(consent) {
		t.Fatalf("want the consent page, got %d:\n%s", consent.status, consent.body)
	}
	text := html.UnescapeString(consent.body)
	for _, want := range []string{"Notes CLI", "https://notes.example/about", "This app is identified by", id, "it was not registered with"} {
		if !strings.Contains(text, want) {
			t.Errorf("the consent page lacks %q:\n%s", want, consent.body)
		}
	}
	loc := b.consent(consent, "allow")
	if loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), cimdCallback) {
		t.Fatalf("no code: %s", loc)
	}
	tok := e.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {id},
		"redirect_uri": {cimdCallback}, "code_verifier": {verifier},
	}, "", "")
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("exchange: %d %+v", tok.status, tok)
	}
	info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	if info["active"] != true || info["client_id"] != id {
		t.Fatalf("introspection: %v; want active with client_id %s", info, id)
	}
	if n := d.count("/notes/client.json"); n != 1 {
		t.Fatalf("the document was fetched %d times in one flow, want 1", n)
	}
	// The admin API and the CLI show the row kept of it as such.
	if stored, err := e.store.Client(t.Context(), id); err != nil || !authz.ClientMetadataOf(stored).MetadataDocument {
		t.Errorf("the client kept of the document is not marked as one: %+v, %v", stored, err)
	}

	// Within max-age, a second flow (signed in, consent remembered) uses
	// the cached document.
	e.clock.Advance(5 * time.Minute)
	loc = b.get(cimdAuthorize(e, id, cimdCallback, challenge)).location(t)
	if loc.Query().Get("code") == "" {
		t.Fatalf("second flow: no code: %s", loc)
	}
	if n := d.count("/notes/client.json"); n != 1 {
		t.Fatalf("within max-age the document was fetched %d times, want 1", n)
	}
	// Past it, the document is fetched again.
	e.clock.Advance(6 * time.Minute)
	if p := b.get(cimdAuthorize(e, id, cimdCallback, challenge)); p.status != http.StatusSeeOther && p.status != http.StatusFound {
		t.Fatalf("third flow: %d\n%s", p.status, p.body)
	}
	if n := d.count("/notes/client.json"); n != 2 {
		t.Fatalf("past max-age the document was fetched %d times in all, want 2", n)
	}
}

// TestMetadataDocumentRefusals: a client_id URL whose document cannot be
// trusted is an unknown client, on our error page, never redirected to.
func TestMetadataDocumentRefusals(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	_, challenge := pkcePair()
	base := d.srv.URL

	with := func(path string, change func(doc map[string]any)) string {
		doc := notesDocument(base + path)
		change(doc)
		return d.serve(t, path, doc, 600)
	}
	d.handle("/redirects.json", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/target.json", http.StatusFound)
	})
	d.serve(t, "/target.json", notesDocument(base+"/redirects.json"), 600)
	d.handle("/big.json", func(w http.ResponseWriter, _ *http.Request) {
		doc := notesDocument(base + "/big.json")
		doc["contacts"] = []string{strings.Repeat("x", 40<<10)}
		_ = json.NewEncoder(w).Encode(doc)
	})
	d.serve(t, "/plain.json", notesDocument(strings.Replace(base, "https:", "http:", 1)+"/plain.json"), 600)
	d.serve(t, "/query.json", notesDocument(base+"/query.json?a=b"), 600)
	d.serve(t, "/fragment.json", notesDocument(base+"/fragment.json#x"), 600)

	cases := []struct {
		name, id, redirect, code string
		fetched                  string // the path that must not have been asked for, if any
	}{
		{"http URL", strings.Replace(base, "https:", "http:", 1) + "/plain.json", cimdCallback, "invalid_client", "/plain.json"},
		{"URL with a query", base + "/query.json?a=b", cimdCallback, "invalid_client", "/query.json"},
		{"URL with a fragment", base + "/fragment.json#x", cimdCallback, "invalid_client", "/fragment.json"},
		{"URL without a path", base, cimdCallback, "invalid_client", "/"},
		{"another client_id", with("/other.json", func(doc map[string]any) { doc["client_id"] = base + "/notes.json" }), cimdCallback, "invalid_client", ""},
		{"redirect_uri not in the document", with("/redirect.json", func(map[string]any) {}), "http://127.0.0.1:7777/elsewhere", "invalid_request", ""},
		{"document too big", base + "/big.json", cimdCallback, "invalid_client", ""},
		{"redirect from the document URL", base + "/redirects.json", cimdCallback, "invalid_client", "/target.json"},
		{"private_key_jwt without keys", with("/nokeys.json", func(doc map[string]any) { doc["token_endpoint_auth_method"] = "private_key_jwt" }), cimdCallback, "invalid_client", ""},
		{"client_secret_basic", with("/secretmethod.json", func(doc map[string]any) { doc["token_endpoint_auth_method"] = "client_secret_basic" }), cimdCallback, "invalid_client", ""},
		{"client_secret in the document", with("/secret.json", func(doc map[string]any) { doc["client_secret"] = "s3cret" }), cimdCallback, "invalid_client", ""},
		{"skip_consent in the document", with("/skip.json", func(doc map[string]any) { doc["skip_consent"] = true }), cimdCallback, "invalid_client", ""},
		{"client_credentials grant", with("/machine.json", func(doc map[string]any) {
			doc["grant_types"] = []string{"authorization_code", "client_credentials"}
		}), cimdCallback, "invalid_client", ""},
		{"scope beyond the registration policy", with("/scope.json", func(doc map[string]any) { doc["scope"] = "openid admin" }), cimdCallback, "invalid_client", ""},
		{"redirect_uri with a fragment", with("/badredirect.json", func(doc map[string]any) {
			doc["redirect_uris"] = []string{cimdCallback + "#f"}
		}), cimdCallback + "#f", "invalid_client", ""},
		{"pairwise subjects", with("/pairwise.json", func(doc map[string]any) { doc["subject_type"] = "pairwise" }), cimdCallback, "invalid_client", ""},
		{"request objects", with("/requesturis.json", func(doc map[string]any) { doc["request_uris"] = []string{"https://notes.example/r"} }), cimdCallback, "invalid_client", ""},
		{"a software statement", with("/statement.json", func(doc map[string]any) { doc["software_statement"] = "e30.e30.sig" }), cimdCallback, "invalid_client", ""},
		{"a native app's https redirect", with("/claimed.json", func(doc map[string]any) {
			doc["application_type"] = "native"
			doc["redirect_uris"] = []string{"https://notes.example/cb"}
		}), "https://notes.example/cb", "invalid_client", ""},
		{"not a JSON object", d.serveRaw(t, "/array.json", "[1,2]"), cimdCallback, "invalid_client", ""},
		{"not found", base + "/missing.json", cimdCallback, "invalid_client", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newBrowser(t).get(cimdAuthorize(e, tc.id, tc.redirect, challenge))
			if p.status != http.StatusBadRequest || p.header.Get("Location") != "" || !strings.Contains(p.body, tc.code) {
				t.Fatalf("want our error page (400, %s), got %d Location=%q:\n%s", tc.code, p.status, p.header.Get("Location"), p.body)
			}
			if tc.fetched != "" && d.count(tc.fetched) != 0 {
				t.Errorf("%s was fetched %d times", tc.fetched, d.count(tc.fetched))
			}
		})
	}

	// The token endpoint refuses such a client as unknown too: 401.
	tok := e.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {base + "/secret.json"},
		"redirect_uri": {cimdCallback}, "code_verifier": {"v"},
	}, "", "")
	if tok.status != http.StatusUnauthorized || tok.Error != "invalid_client" {
		t.Errorf("token endpoint: %d %+v, want 401 invalid_client", tok.status, tok)
	}
}

// serveRaw answers GET path with body as it is.
func (d *docServer) serveRaw(t *testing.T, path, body string) string {
	t.Helper()
	d.handle(path, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(body)) })
	return d.srv.URL + path
}

// TestMetadataDocumentOff: without AUTHZ_CLIENT_ID_METADATA a URL is just
// an unknown client id, and nothing is fetched.
func TestMetadataDocumentOff(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, func(c *authz.Config) { c.HTTPClient = d.srv.Client() })
	id := d.serve(t, "/client.json", notesDocument(d.srv.URL+"/client.json"), 600)
	_, challenge := pkcePair()
	p := newBrowser(t).get(cimdAuthorize(e, id, cimdCallback, challenge))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "invalid_client") {
		t.Fatalf("want the unknown-client page, got %d:\n%s", p.status, p.body)
	}
	if n := d.count("/client.json"); n != 0 {
		t.Fatalf("the document was fetched %d times with the feature off", n)
	}
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var disc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&disc); err != nil {
		t.Fatal(err)
	}
	if _, ok := disc["client_id_metadata_document_supported"]; ok {
		t.Errorf("discovery offers metadata documents while they are off")
	}
}

// TestMetadataDocumentPrivateAddress: the server does not connect to a
// client_id URL on a loopback address (SSRF) unless
// AUTHZ_JWKS_PRIVATE_NETWORKS allows it.
func TestMetadataDocumentPrivateAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	id := "https://" + ln.Addr().String() + "/client.json"
	_, challenge := pkcePair()

	e := newEnv(t, func(c *authz.Config) { c.ClientIDMetadata = true })
	p := newBrowser(t).get(cimdAuthorize(e, id, cimdCallback, challenge))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "invalid_client") {
		t.Fatalf("want the unknown-client page, got %d:\n%s", p.status, p.body)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the server connected %d times to a client_id URL on a loopback address", n)
	}

	// An operator who wants that allows it (the fetch then fails on the
	// listener that hangs up, still an unknown client).
	e = newEnv(t, func(c *authz.Config) { c.ClientIDMetadata, c.JWKSPrivateNetworks = true, true })
	p = newBrowser(t).get(cimdAuthorize(e, id, cimdCallback, challenge))
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "invalid_client") {
		t.Fatalf("want the unknown-client page, got %d:\n%s", p.status, p.body)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("with AUTHZ_JWKS_PRIVATE_NETWORKS the server connected %d times, want 1", n)
	}
}

// TestMetadataDocumentOperatorClientWins: a client the operator created
// with a URL id is used as registered; its URL is never fetched.
func TestMetadataDocumentOperatorClientWins(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	e.createUser(t, "alice")
	id := d.srv.URL + "/operator.json"
	doc := notesDocument(id)
	doc["redirect_uris"] = []string{"http://127.0.0.1:9999/other"}
	d.serve(t, "/operator.json", doc, 600)
	m := authzPublicClient()
	m.ClientID = id
	m.RedirectURIs = []string{cimdCallback}
	e.createClient(t, m)

	_, challenge := pkcePair()
	p := newBrowser(t).get(cimdAuthorize(e, id, cimdCallback, challenge))
	if !isLoginPage(p) {
		t.Fatalf("want the login page for the operator's client, got %d:\n%s", p.status, p.body)
	}
	if n := d.count("/operator.json"); n != 0 {
		t.Fatalf("the operator's client's URL was fetched %d times", n)
	}
	stored, err := e.store.Client(context.Background(), id)
	if err != nil || stored.MetadataDocument {
		t.Fatalf("stored client: %+v, %v", stored, err)
	}
	// Nor can a fetched document overwrite it, should one race with its
	// creation.
	_, err = e.store.UpsertMetadataDocumentClient(context.Background(), &storage.Client{
		ID: id, Name: "Impostor", RedirectURIs: []string{"https://evil.example/cb"}, TokenEndpointAuthMethod: "none", Public: true,
	})
	if !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("upserting over the operator's client: %v, want ErrAlreadyExists", err)
	}
	if after, err := e.store.Client(context.Background(), id); err != nil || after.Name != stored.Name || after.MetadataDocument {
		t.Fatalf("the operator's client changed: %+v, %v", after, err)
	}
}

// TestMetadataDocumentFetchHoldsNoConnection: the token endpoint fetches
// a document before it opens its transaction, so a slow document server
// cannot tie up the database pool.
func TestMetadataDocumentFetchHoldsNoConnection(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	e.createUser(t, "alice")
	id := d.serve(t, "/slow.json", notesDocument(d.srv.URL+"/slow.json"), 0) // cached for the least, 5 min
	verifier, challenge := pkcePair()
	b := newBrowser(t)
	loc := b.consent(b.login(b.get(cimdAuthorize(e, id, cimdCallback, challenge)), "alice", testPassword), "allow")
	tok := e.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {id},
		"redirect_uri": {cimdCallback}, "code_verifier": {verifier},
	}, "", "")
	if tok.status != http.StatusOK || tok.RefreshToken == "" {
		t.Fatalf("exchange: %d %+v", tok.status, tok)
	}

	body, _ := json.Marshal(notesDocument(id))
	release := make(chan struct{})
	d.handle("/slow.json", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body)
	})
	e.clock.Advance(6 * time.Minute)
	done := make(chan tokenResponse, 1)
	go func() {
		done <- e.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {id}}, "", "")
	}()
	for deadline := time.Now().Add(10 * time.Second); d.count("/slow.json") < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the document was not fetched again within 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling for the fetch to start
	}
	if n := e.pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d database connections held while the document is fetched, want 0", n)
	}
	close(release)
	if got := <-done; got.status != http.StatusOK || got.AccessToken == "" {
		t.Fatalf("refresh: %d %+v", got.status, got)
	}
}

// TestMetadataDocumentPrivateKeyJWT: a document with private_key_jwt and
// its public keys makes a confidential client, which redeems its code by
// signing an assertion with its key, and with nothing else.
func TestMetadataDocumentPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	e.createUser(t, "alice")
	key := newECKey(t, "notes-1")
	id := d.srv.URL + "/backend.json"
	doc := notesDocument(id)
	doc["token_endpoint_auth_method"] = "private_key_jwt"
	doc["jwks"] = json.RawMessage(publicJWKS(t, key))
	doc["token_endpoint_auth_signing_alg"] = string(key.alg)
	d.serve(t, "/backend.json", doc, 600)

	verifier, challenge := pkcePair()
	b := newBrowser(t)
	loc := b.consent(b.login(b.get(cimdAuthorize(e, id, cimdCallback, challenge)), "alice", testPassword), "allow")
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", loc)
	}
	exchange := func(auth url.Values) tokenResponse {
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "client_id": {id},
			"redirect_uri": {cimdCallback}, "code_verifier": {verifier},
		}
		for k, v := range auth {
			form[k] = v
		}
		return e.token(t, form, "", "")
	}
	// Without an assertion the confidential client is not authenticated.
	if tok := exchange(nil); tok.status != http.StatusUnauthorized || tok.Error != "invalid_client" {
		t.Fatalf("exchange without an assertion: %d %+v, want 401 invalid_client", tok.status, tok)
	}
	tok := exchange(url.Values{
		"client_assertion_type": {jwtBearer},
		"client_assertion":      {key.sign(t, assertionClaims(id, e.url("/oauth2/token")))},
	})
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("exchange with an assertion: %d %+v", tok.status, tok)
	}
}

// TestMetadataDocumentVocabulary: what a document says of itself beyond
// the basics (its application type, terms and policy, software, sign-in
// defaults) is kept with its client, and a change to it is seen.
func TestMetadataDocumentVocabulary(t *testing.T) {
	t.Parallel()
	d := newDocServer(t)
	e := newEnv(t, withDocuments(d))
	_, challenge := pkcePair()
	path := "/vocab.json"
	id := d.srv.URL + path
	doc := notesDocument(id)
	doc["application_type"] = "native"
	doc["redirect_uris"] = []string{"com.example.notes:/cb"}
	doc["tos_uri"] = "https://notes.example/tos"
	doc["policy_uri"] = "https://notes.example/privacy"
	doc["software_id"] = "notes-cli"
	doc["software_version"] = "1.2"
	doc["default_max_age"] = 3600
	d.serve(t, path, doc, 0)
	newBrowser(t).get(cimdAuthorize(e, id, "com.example.notes:/cb", challenge))
	c, err := e.store.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if c.ApplicationType != "native" || c.TOSURI != "https://notes.example/tos" || c.PolicyURI != "https://notes.example/privacy" ||
		c.SoftwareID != "notes-cli" || c.SoftwareVersion != "1.2" || c.DefaultMaxAge != 3600 || c.SubjectType != "public" {
		t.Fatalf("stored document client: %+v", c)
	}
}
