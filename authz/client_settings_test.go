package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// machine registers a client for the client_credentials grant.
func (e *env) machine(t *testing.T, m authz.ClientMetadata) authz.ClientMetadata {
	t.Helper()
	m.ClientName = "Batch job"
	m.GrantTypes = []string{"client_credentials"}
	m.Scope = "reports"
	return e.createClient(t, m)
}

func (e *env) clientCredentials(t *testing.T, id, secret string) tokenResponse {
	t.Helper()
	return e.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, id, secret)
}

func TestClientLifespans(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	short := e.createClient(t, authz.ClientMetadata{
		ClientName:              "Short-lived",
		RedirectURIs:            []string{"https://app.example.com/callback"},
		GrantTypes:              []string{"authorization_code", "refresh_token", "client_credentials"},
		Scope:                   "openid reports",
		AccessTokenLifespan:     120,
		RefreshTokenLifespan:    600,
		IDTokenLifespan:         300,
		TokenEndpointAuthMethod: "client_secret_basic",
	})
	plain := e.machine(t, authz.ClientMetadata{})
	e.createUser(t, "alice")

	// expires_in counts down from the lifespan while the request runs, so
	// it may be a second short.
	wantExpiresIn := func(what string, got int, want int) {
		t.Helper()
		if got > want || got < want-5 {
			t.Errorf("%s: expires_in = %d, want %d", what, got, want)
		}
	}
	tok := e.clientCredentials(t, short.ClientID, short.ClientSecret)
	if tok.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %+v", tok.status, tok)
	}
	wantExpiresIn("client's own access token lifespan", tok.ExpiresIn, 120)
	tok = e.clientCredentials(t, plain.ClientID, plain.ClientSecret)
	wantExpiresIn("server default", tok.ExpiresIn, int(authz.DefaultAccessTokenLifespan.Seconds()))

	b := newBrowser(t)
	loc := authorizeCode(t, e, b, short.ClientID, map[string]string{
		"response_type": "code", "client_id": short.ClientID, "scope": "openid",
		"redirect_uri": "https://app.example.com/callback", "state": "state-1",
	}, "alice")
	code := loc.Query().Get("code")
	resp, body := postForm(t, e.url("/oauth2/token"), url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example.com/callback"},
	}, short.ClientID, short.ClientSecret)
	var out struct {
		ExpiresIn    int    `json:"expires_in"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != http.StatusOK || out.IDToken == "" || out.RefreshToken == "" {
		t.Fatalf("code exchange: %d %s", resp.StatusCode, body)
	}
	wantExpiresIn("access token of the code flow", out.ExpiresIn, 120)

	claims := jwtClaims(t, out.IDToken)
	if life := claims["exp"].(float64) - claims["iat"].(float64); life != 300 {
		t.Errorf("ID token lives %vs, want the client's 300s", life)
	}
	var refreshLife float64
	if err := e.pool.QueryRow(context.Background(),
		`SELECT extract(epoch FROM expires_at - requested_at) FROM refresh_tokens WHERE client_id = $1 AND active`,
		short.ClientID).Scan(&refreshLife); err != nil {
		t.Fatal(err)
	}
	if refreshLife < 595 || refreshLife > 605 {
		t.Errorf("refresh token lives %vs, want the client's 600s", refreshLife)
	}
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestRotateClientSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.machine(t, authz.ClientMetadata{})
	secretHash := func() (string, string) {
		t.Helper()
		var cur, prev string
		if err := e.pool.QueryRow(ctx, `SELECT secret_hash, rotated_secret_hash FROM clients WHERE id = $1`, c.ClientID).Scan(&cur, &prev); err != nil {
			t.Fatal(err)
		}
		return cur, prev
	}
	wantAuth := func(secret string, want int, what string) {
		t.Helper()
		if tok := e.clientCredentials(t, c.ClientID, secret); tok.status != want {
			t.Errorf("%s: status %d (%s), want %d", what, tok.status, tok.Error, want)
		}
	}
	if cur, _ := secretHash(); !strings.HasPrefix(cur, "$sha256$") {
		t.Fatalf("a generated secret should get the fast hash, got %.12s…", cur)
	}

	// Rotation with a grace period: both secrets work.
	rotated, err := authz.RotateClientSecret(ctx, e.store, c.ClientID, "", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ClientSecret == "" || rotated.ClientSecret == c.ClientSecret {
		t.Fatalf("rotation returned secret %q", rotated.ClientSecret)
	}
	if rotated.PreviousSecretExpiresAt == nil || *rotated.PreviousSecretExpiresAt < time.Now().Add(59*time.Minute).Unix() {
		t.Errorf("previous_client_secret_expires_at = %v, want about an hour from now", rotated.PreviousSecretExpiresAt)
	}
	wantAuth(rotated.ClientSecret, http.StatusOK, "the new secret")
	wantAuth(c.ClientSecret, http.StatusOK, "the old secret within its grace period")
	wantAuth("not-the-secret", http.StatusUnauthorized, "a wrong secret")

	// The grace period over, the old secret is refused.
	if _, err := e.pool.Exec(ctx, `UPDATE clients SET rotated_secret_expires_at = now() - interval '1 second' WHERE id = $1`, c.ClientID); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SyncClientCache(ctx); err != nil { // changed behind the store's back
		t.Fatal(err)
	}
	wantAuth(c.ClientSecret, http.StatusUnauthorized, "the old secret after its grace period")
	wantAuth(rotated.ClientSecret, http.StatusOK, "the new secret after the grace period")
	if got, err := e.store.Client(ctx, c.ClientID); err != nil || authz.ClientMetadataOf(got).PreviousSecretExpiresAt != nil {
		t.Errorf("an expired previous secret is still reported: %v", err)
	}

	// An operator's own secret gets the slow hash; grace 0 ends the old at once.
	chosen := "an operator's chosen secret"
	again, err := authz.RotateClientSecret(ctx, e.store, c.ClientID, chosen, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if again.ClientSecret != chosen || again.PreviousSecretExpiresAt != nil {
		t.Errorf("rotation to a chosen secret returned %q, previous expiry %v", again.ClientSecret, again.PreviousSecretExpiresAt)
	}
	if cur, prev := secretHash(); !strings.HasPrefix(cur, "$argon2id$") || prev != "" {
		t.Errorf("after rotating to a chosen secret with no grace: hash %.12s…, previous %q", cur, prev)
	}
	wantAuth(rotated.ClientSecret, http.StatusUnauthorized, "the secret replaced without a grace period")
	wantAuth(chosen, http.StatusOK, "the chosen secret")

	// Clients without a secret have nothing to rotate.
	pub := e.createClient(t, authzPublicClient())
	if _, err := authz.RotateClientSecret(ctx, e.store, pub.ClientID, "", time.Hour, time.Now()); !errors.Is(err, authz.ErrNoSecret) {
		t.Errorf("rotating a public client's secret: %v, want ErrNoSecret", err)
	}
	if _, err := authz.RotateClientSecret(ctx, e.store, "nobody", "", time.Hour, time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("rotating an unknown client's secret: %v, want ErrNotFound", err)
	}
}

func TestUpdateClientKeepsOrDropsTheSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	c := e.machine(t, authz.ClientMetadata{})

	// A metadata change keeps the secret.
	m := c
	m.ClientSecret = ""
	m.ClientName = "Renamed job"
	m.Contacts = []string{"ops@example.com"}
	updated, err := authz.UpdateClient(ctx, e.store, c.ClientID, m)
	if err != nil {
		t.Fatal(err)
	}
	if updated.ClientSecret != "" || updated.ClientName != "Renamed job" {
		t.Errorf("update returned secret %q, name %q", updated.ClientSecret, updated.ClientName)
	}
	if tok := e.clientCredentials(t, c.ClientID, c.ClientSecret); tok.status != http.StatusOK {
		t.Errorf("the secret stopped working after a metadata update: %d %s", tok.status, tok.Error)
	}

	// An update cannot set a secret, nor move a client to another id.
	m.ClientSecret = "sneaky"
	if _, err := authz.UpdateClient(ctx, e.store, c.ClientID, m); !isMetadataError(err, "invalid_client_metadata") {
		t.Errorf("update with a client_secret: %v", err)
	}
	m.ClientSecret = ""
	m.ClientID = "someone-else"
	if _, err := authz.UpdateClient(ctx, e.store, c.ClientID, m); !isMetadataError(err, "invalid_client_metadata") {
		t.Errorf("update with another client_id: %v", err)
	}

	// A public client that becomes confidential is given a secret.
	pub := e.createClient(t, authzPublicClient())
	pm := pub
	pm.TokenEndpointAuthMethod = "client_secret_post"
	conf, err := authz.UpdateClient(ctx, e.store, pub.ClientID, pm)
	if err != nil {
		t.Fatal(err)
	}
	if conf.ClientSecret == "" || conf.ClientSecretExpiresAt == nil {
		t.Fatalf("a client moved to client_secret_post got no secret: %+v", conf)
	}
	stored, err := e.store.Client(ctx, pub.ClientID)
	if err != nil || stored.Public || storage.CompareSecret(stored.SecretHash, conf.ClientSecret) != nil {
		t.Errorf("stored client after going confidential: public %v, err %v", stored.Public, err)
	}

	// And back: a public client keeps no secret.
	pm.TokenEndpointAuthMethod = "none"
	if _, err := authz.UpdateClient(ctx, e.store, pub.ClientID, pm); err != nil {
		t.Fatal(err)
	}
	if stored, err = e.store.Client(ctx, pub.ClientID); err != nil || !stored.Public || stored.SecretHash != "" {
		t.Errorf("after going public again: public %v, secret hash %q, err %v", stored.Public, stored.SecretHash, err)
	}

	m.ClientID = ""
	if _, err := authz.UpdateClient(ctx, e.store, "nobody", m); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("update of an unknown client: %v, want ErrNotFound", err)
	}
}

func isMetadataError(err error, code string) bool {
	var me *authz.InvalidMetadataError
	return errors.As(err, &me) && me.Code == code
}
