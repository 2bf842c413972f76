package authz_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/authz/authz/authz"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientKey is a private_key_jwt client's signing key.
type clientKey struct {
	kid  string
	alg  josev4.SignatureAlgorithm
	priv any // *ecdsa.PrivateKey or *rsa.PrivateKey
}

func newECKey(t *testing.T, kid string) *clientKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &clientKey{kid: kid, alg: josev4.ES256, priv: k}
}

func newRSAKey(t *testing.T, kid string) *clientKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &clientKey{kid: kid, alg: josev4.RS256, priv: k}
}

// public is the key as a client registers it.
func (k *clientKey) public() josev4.JSONWebKey {
	var pub any
	switch p := k.priv.(type) {
	case *ecdsa.PrivateKey:
		pub = &p.PublicKey
	case *rsa.PrivateKey:
		pub = &p.PublicKey
	}
	return josev4.JSONWebKey{Key: pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// publicJWKS is a JSON Web Key Set of the keys' public halves.
func publicJWKS(t *testing.T, keys ...*clientKey) []byte {
	t.Helper()
	set := josev4.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sign makes a JWS of claims with the key, naming its kid.
func (k *clientKey) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	return signJWS(t, josev4.SigningKey{Algorithm: k.alg, Key: k.priv}, k.kid, claims)
}

func signJWS(t *testing.T, key josev4.SigningKey, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&josev4.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader(josev4.HeaderKey("kid"), kid)
	}
	signer, err := josev4.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsignedJWT is an "alg": "none" token.
func unsignedJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

// assertionClaims are valid claims of an assertion by clientID for aud,
// with a fresh jti. The server checks exp against real time, as fosite does.
func assertionClaims(clientID, aud string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": aud,
		"jti": rand.Text(),
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	}
}

// assertionForm is a client_credentials request authenticated with an
// assertion.
func assertionForm(clientID, assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_id":             {clientID},
		"client_assertion_type": {jwtBearer},
		"client_assertion":      {assertion},
	}
}

// keyClient registers a client_credentials client authenticating with
// private_key_jwt and the inline key set of keys, the first of which sets
// its token_endpoint_auth_signing_alg.
func (e *env) keyClient(t *testing.T, keys ...*clientKey) authz.ClientMetadata {
	t.Helper()
	return e.createClient(t, authz.ClientMetadata{
		ClientName:                  "Batch job",
		GrantTypes:                  []string{"client_credentials"},
		TokenEndpointAuthMethod:     "private_key_jwt",
		JWKS:                        publicJWKS(t, keys...),
		TokenEndpointAuthSigningAlg: string(keys[0].alg),
	})
}

// uriClient registers a client whose keys are at jwksURI.
func (e *env) uriClient(t *testing.T, jwksURI string, alg josev4.SignatureAlgorithm) authz.ClientMetadata {
	t.Helper()
	return e.createClient(t, authz.ClientMetadata{
		ClientName:                  "Batch job",
		GrantTypes:                  []string{"client_credentials"},
		TokenEndpointAuthMethod:     "private_key_jwt",
		JWKSURI:                     jwksURI,
		TokenEndpointAuthSigningAlg: string(alg),
	})
}

// wantAssertionRefused checks a 401 invalid_client answer.
func wantAssertionRefused(t *testing.T, tr tokenResponse) {
	t.Helper()
	if tr.status != http.StatusUnauthorized || tr.Error != "invalid_client" {
		t.Fatalf("got %d %q (%s), want 401 invalid_client", tr.status, tr.Error, tr.Description)
	}
}

// wantAssertionAccepted checks a 200 answer with an access token.
func wantAssertionAccepted(t *testing.T, tr tokenResponse) {
	t.Helper()
	if tr.status != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("got %d %q (%s), want 200 with a token", tr.status, tr.Error, tr.Description)
	}
}

// jwksServer is a client's HTTPS server publishing its keys at /jwks. It
// counts the requests it answers there.
type jwksServer struct {
	srv *httptest.Server

	mu      sync.Mutex
	respond func(w http.ResponseWriter, r *http.Request)
	fetches int
	accept  string
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		respond := s.respond
		if r.URL.Path == "/jwks" {
			s.fetches++
			s.accept = r.Header.Get("Accept")
		}
		s.mu.Unlock()
		if respond == nil {
			http.Error(w, "nothing here", http.StatusNotFound)
			return
		}
		respond(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) url() string { return s.srv.URL + "/jwks" }

// serve makes the server answer with status and body.
func (s *jwksServer) serve(status int, body []byte) {
	s.handle(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

func (s *jwksServer) handle(respond func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.respond = respond
}

// lastAccept is the Accept header of the last fetch.
func (s *jwksServer) lastAccept() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accept
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// fetchingFrom lets the server fetch from the test's TLS servers.
func fetchingFrom(s *jwksServer) envOption {
	return func(c *authz.Config) { c.HTTPClient = s.srv.Client() }
}
