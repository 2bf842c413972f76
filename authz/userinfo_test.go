package authz_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/authz/authz/authz"
)

// TestSignedUserinfo: a client registered with
// userinfo_signed_response_alg gets userinfo as a JWT (OpenID Connect Core
// 5.3.2) signed by that algorithm's key in the JWKS, carrying iss, aud and
// its (pairwise) sub; a client without it gets JSON.
func TestSignedUserinfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	const cb = "https://app.example.com/callback"
	for _, alg := range []string{"ES256", "PS256", ""} {
		c := e.createClient(t, authz.ClientMetadata{
			ClientName: "Signed " + alg, RedirectURIs: []string{cb}, Scope: "openid profile contacts",
			TokenEndpointAuthMethod: "client_secret_basic", SubjectType: "pairwise", UserinfoSignedResponseAlg: alg,
		})
		loc := signInFor(t, e, newBrowser(t), c, "alice", url.Values{"scope": {"openid profile"}})
		tok, raw := exchangeCode(t, e, c, loc, nil)
		if tok.status != http.StatusOK {
			t.Fatalf("%s: token: %d %+v", alg, tok.status, tok)
		}
		idToken, _ := raw["id_token"].(string)
		_, idClaims := verifyWithJWKS(t, e, idToken)

		r := userinfoCall(t, e, http.MethodGet, tok.AccessToken, false)
		if r.status != http.StatusOK {
			t.Fatalf("%s: userinfo: %s", alg, r)
		}
		var claims map[string]any
		if alg == "" {
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("unsigned: Content-Type %q", ct)
			}
			if err := json.Unmarshal(r.body, &claims); err != nil {
				t.Fatalf("unsigned userinfo is not JSON: %s", r)
			}
		} else {
			if ct := r.header.Get("Content-Type"); ct != "application/jwt" {
				t.Errorf("%s: Content-Type %q, want application/jwt", alg, ct)
			}
			hdr, cl := verifyWithJWKS(t, e, string(r.body))
			if hdr.Algorithm != alg {
				t.Errorf("signed with %s, want %s", hdr.Algorithm, alg)
			}
			if cl["iss"] != e.issuer || cl["aud"] != c.ClientID {
				t.Errorf("%s: iss %v aud %v, want %s and %s", alg, cl["iss"], cl["aud"], e.issuer, c.ClientID)
			}
			claims = cl
		}
		if claims["sub"] == nil || claims["sub"] != idClaims["sub"] {
			t.Errorf("%s: userinfo sub %v, ID token's %v", alg, claims["sub"], idClaims["sub"])
		}
		if claims["preferred_username"] != "alice" {
			t.Errorf("%s: preferred_username %v", alg, claims["preferred_username"])
		}
	}
}
