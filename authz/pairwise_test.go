package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// pairwiseClient registers a confidential client whose redirect URI is
// redirect, with the given subject type and access token format.
func pairwiseClient(t *testing.T, e *env, name, redirect, subjectType, strategy string) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:              name,
		RedirectURIs:            []string{redirect},
		Scope:                   "openid profile contacts",
		TokenEndpointAuthMethod: "client_secret_basic",
		AccessTokenStrategy:     strategy,
		SubjectType:             subjectType,
	})
}

// subsOf reads every sub a token response shows (the ID token's,
// userinfo's, introspection's and, for a JWT access token, its own) and
// wants them to agree.
func subsOf(t *testing.T, e *env, rs authz.ClientMetadata, tok tokenResponse, raw map[string]any) string {
	t.Helper()
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %+v", tok.status, tok)
	}
	idToken, _ := raw["id_token"].(string)
	_, idClaims := verifyWithJWKS(t, e, idToken)
	idSub, _ := idClaims["sub"].(string)

	r := userinfoCall(t, e, http.MethodGet, tok.AccessToken, false)
	var info map[string]any
	if r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil {
		t.Fatalf("userinfo: %s", r)
	}
	userinfoSub, _ := info["sub"].(string)
	introspectSub, _ := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)["sub"].(string)
	jwtSub := idSub
	if strings.Count(tok.AccessToken, ".") == 2 {
		_, at := verifyWithJWKS(t, e, tok.AccessToken)
		jwtSub, _ = at["sub"].(string)
	}
	if idSub == "" || userinfoSub != idSub || introspectSub != idSub || jwtSub != idSub {
		t.Fatalf("the subs of one issuance disagree: ID token %q, userinfo %q, introspection %q, JWT access token %q",
			idSub, userinfoSub, introspectSub, jwtSub)
	}
	return idSub
}

// signInSub runs a code flow for alice with c at redirect in b and
// returns the agreed sub and the token response.
func signInSub(t *testing.T, e *env, b *browser, rs, c authz.ClientMetadata, redirect string) (string, tokenResponse) {
	t.Helper()
	loc := signInFor(t, e, b, c, "alice", url.Values{"redirect_uri": {redirect}})
	tok, raw := exchangeCode(t, e, c, loc, url.Values{"redirect_uri": {redirect}})
	return subsOf(t, e, rs, tok, raw), tok
}

// TestPairwiseSubjects: a pairwise client's sub is the same for one user
// every time (and after refresh) and in every place it appears; another
// sector gets another; a client of the same sector the same one; a public
// client the user id.
func TestPairwiseSubjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")
	const (
		appCB    = "https://app.example.com/callback"
		app2CB   = "https://app.example.com/second"
		photosCB = "https://photos.example.net/callback"
	)
	app := pairwiseClient(t, e, "App", appCB, "pairwise", "jwt")
	sameSector := pairwiseClient(t, e, "App, second", app2CB, "pairwise", "opaque")
	photos := pairwiseClient(t, e, "Photos", photosCB, "pairwise", "opaque")
	public := pairwiseClient(t, e, "Public", appCB, "public", "jwt")

	b := newBrowser(t)
	subApp, tok := signInSub(t, e, b, rs, app, appCB)
	if subApp == alice.ID || strings.Contains(subApp, alice.ID) {
		t.Errorf("the pairwise sub %q shows the user id %q", subApp, alice.ID)
	}
	if again, _ := signInSub(t, e, b, rs, app, appCB); again != subApp {
		t.Errorf("second sign-in: sub %q, first %q", again, subApp)
	}
	if other, _ := signInSub(t, e, newBrowser(t), rs, app, appCB); other != subApp {
		t.Errorf("sign-in in another browser: sub %q, first %q", other, subApp)
	}
	refreshed, raw := tokenWithBody(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, app)
	if sub := subsOf(t, e, rs, refreshed, raw); sub != subApp {
		t.Errorf("after refresh: sub %q, before %q", sub, subApp)
	}

	if sub, _ := signInSub(t, e, b, rs, sameSector, app2CB); sub != subApp {
		t.Errorf("a client of the same sector: sub %q, want %q", sub, subApp)
	}
	if sub, _ := signInSub(t, e, b, rs, photos, photosCB); sub == subApp || sub == alice.ID {
		t.Errorf("another sector's sub %q (first sector %q, user id %q)", sub, subApp, alice.ID)
	}
	publicSub, publicTok := signInSub(t, e, b, rs, public, appCB)
	if publicSub != alice.ID {
		t.Errorf("a public client's sub %q, want the user id %q", publicSub, alice.ID)
	}
	// A username is the same for every client: introspection tells it
	// about a public client's token, not about a pairwise one's, where it
	// would join what the pairwise sub keeps apart.
	if info := e.introspect(t, refreshed.AccessToken, rs.ClientID, rs.ClientSecret); info["active"] != true || info["username"] != nil {
		t.Errorf("introspection of a pairwise client's token: %v, want it active without a username", info)
	}
	if name := e.introspect(t, publicTok.AccessToken, rs.ClientID, rs.ClientSecret)["username"]; name != "alice" {
		t.Errorf("introspection of a public client's token: username %v, want alice", name)
	}

	// Inside, the token is still alice's: withdrawing her consents (as the
	// admin API does, by user id) finds the pairwise client's.
	n, err := e.store.WithdrawConsents(context.Background(), alice.ID, app.ClientID)
	if err != nil || n == 0 {
		t.Errorf("withdraw alice's consent to the pairwise client: %d, %v", n, err)
	}
}

// TestPairwiseHints: an id_token_hint carrying a pairwise sub is
// recognised at authorize (prompt=none) and at logout.
func TestPairwiseHints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	const cb = "https://app.example.com/callback"
	app := pairwiseClient(t, e, "App", cb, "pairwise", "opaque")
	b := newBrowser(t)
	loc := signInFor(t, e, b, app, "alice", nil)
	_, raw := exchangeCode(t, e, app, loc, nil)
	idToken, _ := raw["id_token"].(string)

	loc = signInFor(t, e, b, app, "alice", url.Values{"prompt": {"none"}, "id_token_hint": {idToken}})
	if loc.Query().Get("code") == "" {
		t.Fatalf("prompt=none with the pairwise id_token_hint: %s", loc)
	}

	p := b.get(e.url("/oauth2/logout?" + url.Values{"id_token_hint": {idToken}}.Encode()))
	if p.status != http.StatusOK || !strings.Contains(p.body, "signed out") || strings.Contains(p.body, `value="logout"`) {
		t.Fatalf("logout with the pairwise id_token_hint did not end the session at once: %d\n%s", p.status, p.body)
	}
}

// TestPairwiseSector: the sector is the one host of the redirect URIs
// when they are all https to it, or the sector_identifier_uri's host when
// its document lists them all. A client whose redirect URIs prove no host
// (loopback addresses, private-use schemes, whatever host they name;
// several hosts; none used, as for a device or machine client) gets a
// sector of its own, so it can never take another app's. An update may
// not move a pairwise client to another sector.
func TestPairwiseSector(t *testing.T) {
	t.Parallel()
	docs := newJWKSServer(t)
	e := newEnv(t, fetchingFrom(docs), func(c *authz.Config) { c.Registration = authz.RegistrationOpen })
	ctx := context.Background()

	own := []struct {
		name string
		m    authz.ClientMetadata
	}{
		{"two hosts", authz.ClientMetadata{RedirectURIs: []string{"https://a.example.com/cb", "https://b.example.com/cb"}}},
		{"no redirect URIs", authz.ClientMetadata{GrantTypes: []string{"client_credentials"}}},
		{"loopback only", authz.ClientMetadata{ApplicationType: "native", RedirectURIs: []string{"http://127.0.0.1/cb"}, TokenEndpointAuthMethod: "none"}},
		{"a private-use scheme naming a host", authz.ClientMetadata{RedirectURIs: []string{"com.evil.app://a.example.com/cb"}}},
		{"a host's https URI and a private-use one", authz.ClientMetadata{RedirectURIs: []string{"https://a.example.com/cb", "com.evil.app:/cb"}}},
		{"a host's https URI and a loopback one", authz.ClientMetadata{RedirectURIs: []string{"https://a.example.com/cb", "http://localhost:3000/cb"}}},
		{"a device client listing a host's URI", authz.ClientMetadata{GrantTypes: []string{deviceGrant}, RedirectURIs: []string{"https://a.example.com/cb"}, TokenEndpointAuthMethod: "none"}},
	}
	for _, tc := range own {
		tc.m.ClientName, tc.m.SubjectType = tc.name, "pairwise"
		c, err := authz.CreateClient(ctx, e.store, tc.m)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := storedSector(t, e, c.ClientID); got != "client:"+c.ClientID {
			t.Errorf("%s: sector %q, want the client's own, client:%s", tc.name, got, c.ClientID)
		}
	}

	// One host: the sector. Then an update to another host is refused;
	// to public, allowed.
	m := authz.ClientMetadata{RedirectURIs: []string{"https://a.example.com/cb", "https://a.example.com:8443/other"},
		TokenEndpointAuthMethod: "client_secret_basic", SubjectType: "pairwise"}
	c := e.createClient(t, m)
	if got := storedSector(t, e, c.ClientID); got != "a.example.com" {
		t.Fatalf("sector %q, want a.example.com", got)
	}
	moved := m
	moved.RedirectURIs = []string{"https://b.example.com/cb"}
	_, err := authz.UpdateClient(ctx, e.store, c.ClientID, moved)
	var ime *authz.InvalidMetadataError
	if !errors.As(err, &ime) || !strings.Contains(ime.Message, "sector") {
		t.Errorf("update to another sector: %v, want it refused", err)
	}
	moved.SubjectType = "public"
	if _, err := authz.UpdateClient(ctx, e.store, c.ClientID, moved); err != nil {
		t.Errorf("update to public: %v", err)
	}
	if got := storedSector(t, e, c.ClientID); got != "" {
		t.Errorf("a public client keeps sector %q", got)
	}

	// sector_identifier_uri, through dynamic registration, whose fetching
	// follows the configuration (here: the test's TLS server).
	redirects := []string{"https://a.example.com/cb", "https://b.example.com/cb"}
	listed, _ := json.Marshal(append([]string{"https://c.example.com/cb"}, redirects...))
	register := func(body []byte) reply {
		docs.serve(http.StatusOK, body)
		return e.dcrCall(t, http.MethodPost, "/oauth2/register", "", map[string]any{
			"client_name": "Sectored", "redirect_uris": redirects, "scope": "openid",
			"subject_type": "pairwise", "sector_identifier_uri": docs.url(),
		})
	}
	got := dcrClient(t, register(listed), http.StatusCreated)
	docsHost, _ := url.Parse(docs.url())
	if s := storedSector(t, e, got.ClientID); s != docsHost.Hostname() {
		t.Errorf("sector %q, want the sector_identifier_uri's host %q", s, docsHost.Hostname())
	}
	onlyA, _ := json.Marshal(redirects[:1])
	wantRegError(t, register(onlyA), http.StatusBadRequest, "invalid_client_metadata", redirects[1])
	wantRegError(t, register([]byte(`{"redirect_uris": []}`)), http.StatusBadRequest, "invalid_client_metadata", "JSON array")
	wantRegError(t, register([]byte(`["`+strings.Repeat("x", 70<<10)+`"]`)), http.StatusBadRequest, "invalid_client_metadata", "larger than")
	docs.serve(http.StatusNotFound, nil)
	r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", map[string]any{
		"client_name": "Sectored", "redirect_uris": redirects, "scope": "openid",
		"subject_type": "pairwise", "sector_identifier_uri": docs.url(),
	})
	wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", "404")
}

// storedSector is the sector stored for client id.
func storedSector(t *testing.T, e *env, id string) string {
	t.Helper()
	c, err := e.store.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Sector
}

// TestPairwiseDevice: the device flow's tokens carry the pairwise sub too,
// in the ID token, userinfo and introspection alike.
func TestPairwiseDevice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")
	c := e.createClient(t, authz.ClientMetadata{
		ClientName: "Contacts CLI", GrantTypes: []string{deviceGrant, "refresh_token"},
		RedirectURIs: []string{"https://cli.example.com/callback"}, Scope: "openid profile contacts",
		TokenEndpointAuthMethod: "client_secret_basic", SubjectType: "pairwise",
	})
	da := e.deviceAuth(t, c, url.Values{"scope": {"openid contacts"}})
	if da.status != http.StatusOK {
		t.Fatalf("device auth: %+v", da)
	}
	decideDevice(t, newBrowser(t), da, "allow")
	form := url.Values{"grant_type": {deviceGrant}, "device_code": {da.DeviceCode}}
	tok, raw := tokenWithBody(t, e, form, c)
	if sub := subsOf(t, e, rs, tok, raw); sub == alice.ID {
		t.Errorf("the device flow's sub is the user id %q", sub)
	}
}

// TestPairwiseAcrossReplicas: another replica on the same database, here
// one whose AUTHZ_SECRETS were rotated, tells the same pairwise sub: the
// salt is the database's, not a system secret.
func TestPairwiseAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	e.createUser(t, "alice")
	const cb = "https://app.example.com/callback"
	app := pairwiseClient(t, e, "App", cb, "pairwise", "opaque")
	sub, tok := signInSub(t, e, newBrowser(t), rs, app, cb)

	rotated := newEnvOnPool(t, e.pool, func(c *authz.Config) {
		c.Secrets = [][]byte{[]byte("a-rotated-secret-a-rotated-secret-012345"), c.Secrets[0]}
	})
	info := rotated.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	if info["active"] != true || info["sub"] != sub {
		t.Fatalf("introspection at a replica with rotated secrets: %v, want sub %q", info, sub)
	}
	if again, _ := signInSub(t, rotated, newBrowser(t), rs, app, cb); again != sub {
		t.Errorf("sign-in at the other replica: sub %q, want %q", again, sub)
	}
}

// TestPairwiseImplicit: the implicit flow's ID token and access token
// tell the same pairwise sub as userinfo and introspection.
func TestPairwiseImplicit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")
	m := authz.ClientMetadata{
		ClientName: "Legacy SPA", RedirectURIs: []string{legacySPACallback}, GrantTypes: []string{"implicit"},
		ResponseTypes: []string{"id_token token"}, Scope: "openid profile", TokenEndpointAuthMethod: "none",
		SubjectType: "pairwise",
	}
	spa := e.createClient(t, m)
	f := fragment(t, implicitAnswer(t, e, newBrowser(t), url.Values{
		"response_type": {"id_token token"}, "client_id": {spa.ClientID}, "redirect_uri": {legacySPACallback},
		"scope": {"openid profile"}, "state": {"st-1"}, "nonce": {"n-1"},
	}))
	tok := tokenResponse{status: http.StatusOK, AccessToken: f.Get("access_token")}
	if sub := subsOf(t, e, rs, tok, map[string]any{"id_token": f.Get("id_token")}); sub == alice.ID {
		t.Errorf("the implicit flow's sub is the user id %q", sub)
	}
}
