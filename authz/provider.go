package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	josev4 "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// fositeConfig is fosite's configuration with the few answers we give
// differently from its defaults.
type fositeConfig struct {
	*fosite.Config
}

// GetMinParameterEntropy: fosite by default turns away a state or nonce
// shorter than 8 characters, which is the client's business, not ours. One
// character is the least fosite accepts; a request with PKCE and no state at
// all is handled in authorize (see clientRedirectWriter).
func (c *fositeConfig) GetMinParameterEntropy(context.Context) int { return 1 }

// GetTokenURLs are the audiences a private_key_jwt client assertion may
// name: the token endpoint or the issuer (RFC 7523 3, OpenID Connect Core 9),
// or the pushed authorization request endpoint (RFC 9126 2).
func (c *fositeConfig) GetTokenURLs(context.Context) []string {
	return []string{c.TokenURL, c.AccessTokenIssuer, c.AccessTokenIssuer + "/oauth2/par"}
}

// strategy is what fosite's handlers take as their strategy: opaque HMAC
// tokens and codes, and ID tokens signed with our keys.
type strategy struct {
	oauth2.CoreStrategy
	openid.OpenIDConnectTokenStrategy
	jwt.Signer
}

// newProvider composes fosite from an explicit list of the grants we
// support; nothing is enabled that is not listed here. store's GetClient
// knows clients identified by a URL (cimd.go).
func newProvider(cfg *Config, store *clientStore, keys *keyManager, jwks fosite.JWKSFetcherStrategy, share func(*http.Request) shareKey, subs *subjects) (*fosite.Fosite, oauth2.CoreStrategy) {
	fc := &fositeConfig{Config: &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenLifespan,
		RefreshTokenLifespan:           cfg.RefreshTokenLifespan,
		AuthorizeCodeLifespan:          cfg.AuthorizeCodeLifespan,
		IDTokenLifespan:                cfg.IDTokenLifespan,
		GlobalSecret:                   cfg.Secrets[0],
		RotatedGlobalSecrets:           cfg.Secrets[1:],
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.ExactAudienceMatchingStrategy,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: cfg.AllowPlainPKCE,
		SendDebugMessagesToClients:     cfg.Debug,
		ClientSecretsHasher:            throttledHasher{storage.SecretHasher{}},
		// A refresh token goes to every client registered for the
		// refresh_token grant; offline_access is not required (docs/security.md).
		RefreshTokenScopes:  []string{},
		TokenURL:            cfg.Issuer + "/oauth2/token",
		AccessTokenIssuer:   cfg.Issuer,
		IDTokenIssuer:       cfg.Issuer,
		AllowedPromptValues: []string{"none", "login", "consent", "select_account"},
		JWKSFetcherStrategy: jwks,
		// Pushed authorization requests (RFC 9126): the authorize
		// endpoint resolves request_uri itself (resolvePushed) and
		// enforces PAR per client, so fosite's enforcement stays off.
		PushedAuthorizeRequestURIPrefix: parURIPrefix,
		PushedAuthorizeContextLifespan:  cfg.parLifespan(),
	}}
	signer := &keySigner{keys: keys}
	s := &strategy{
		CoreStrategy: &accessTokens{
			CoreStrategy: oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: fc}, fc),
			signer:       signer,
			issuer:       cfg.Issuer,
			now:          cfg.now,
			subjects:     subs,
		},
		OpenIDConnectTokenStrategy: idTokenStrategy{&openid.DefaultStrategy{Signer: signer, Config: fc}, subs},
		Signer:                     signer,
	}

	// Token endpoint handlers run in this order: the OAuth 2.0 ones store
	// their tokens before the OpenID Connect ones add an ID token.
	factories := []compose.Factory{
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		// The implicit flow, for clients registered for it (grant type
		// implicit): fosite refuses its response types to every other
		// client, which is every client by default.
		compose.OAuth2AuthorizeImplicitFactory,
		compose.OpenIDConnectImplicitFactory,
		// The device authorization grant (RFC 8628), ours: device_grant.go.
		deviceGrantFactory(cfg),
		// POST /oauth2/par (RFC 9126): stores a validated request.
		compose.PushedAuthorizeHandlerFactory,
	}
	provider := fosite.NewOAuth2Provider(store, fc)
	fc.ClientAuthenticationStrategy = withAssertionChecks(withClientThrottle(store, share, func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		c, err := provider.DefaultClientAuthenticationStrategy(ctx, r, form)
		// fosite answers a replayed assertion with 400 jti_known; it is a
		// failed client authentication (RFC 7523 3): 401 invalid_client.
		if errors.Is(err, fosite.ErrJTIKnown) {
			return nil, fosite.ErrInvalidClient.WithWrap(err).WithHint("The client assertion was already used: its jti has been seen before.")
		}
		return c, err
	}))
	// What a code being exchanged was granted, read again (the
	// transaction's memo answers it) to check a narrowing against.
	codeGrantOf := func(ctx context.Context, r fosite.AccessRequester) ([]string, []string, error) {
		code, err := store.GetAuthorizeCodeSession(ctx, s.AuthorizeCodeSignature(ctx, r.GetRequestForm().Get("code")), openid.NewDefaultSession())
		if err != nil {
			return nil, nil, fosite.ErrServerError.WithWrap(err)
		}
		return code.GetGrantedScopes(), code.GetGrantedAudience(), nil
	}
	for _, factory := range factories {
		h := factory(fc, store, s)
		if ah, ok := h.(fosite.AuthorizeEndpointHandler); ok {
			fc.AuthorizeEndpointHandlers.Append(ah)
		}
		if th, ok := h.(fosite.TokenEndpointHandler); ok {
			// Not Append, which drops a handler whose type it has seen:
			// every wrapper has the same type.
			fc.TokenEndpointHandlers = append(fc.TokenEndpointHandlers, quietTokenHandler{scopeGrants(th, codeGrantOf)})
		}
		if ti, ok := h.(fosite.TokenIntrospector); ok {
			fc.TokenIntrospectionHandlers.Append(ti)
		}
		if rh, ok := h.(fosite.RevocationHandler); ok {
			fc.RevocationHandlers.Append(rh)
		}
		if ph, ok := h.(fosite.PushedAuthorizeEndpointHandler); ok {
			fc.PushedAuthorizeEndpointHandlers.Append(ph)
		}
	}
	return provider, s.CoreStrategy
}

// quietTokenHandler asks a token endpoint handler whether the grant is its
// own before asking it to answer. fosite asks every handler to answer every
// request, and each of fosite's says "not mine" with an error carrying a
// stack trace captured there and then: 6% of a client_credentials
// request's CPU went to collecting stacks nobody reads. Each of them
// answers "not mine" exactly when CanHandleTokenEndpointRequest is false.
type quietTokenHandler struct{ fosite.TokenEndpointHandler }

func (q quietTokenHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !q.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	return q.TokenEndpointHandler.PopulateTokenEndpointResponse(ctx, r, resp)
}

// idTokenStrategy signs each client's ID tokens with the algorithm it
// registered (id_token_signed_response_alg; RS256 when none). fosite's
// strategy hands the signer no client, so the algorithm goes in ctx.
type idTokenStrategy struct {
	openid.OpenIDConnectTokenStrategy
	subjects *subjects
}

func (s idTokenStrategy) GenerateIDToken(ctx context.Context, lifespan time.Duration, r fosite.Requester) (string, error) {
	var alg string
	if c, ok := r.GetClient().(*storage.Client); ok {
		alg = c.IDTokenSignedResponseAlg
	}
	if alg == "EdDSA" {
		// fosite computes at_hash and c_hash with SHA-256 whatever the
		// alg; for Ed25519 the hash is SHA-512 (OpenID Connect issue
		// 1125; go-oidc checks so), and both claims are optional where a
		// token endpoint returns the ID token: none beats a wrong one.
		if sess, ok := r.GetSession().(openid.Session); ok {
			sess.IDTokenClaims().AccessTokenHash = ""
			sess.IDTokenClaims().CodeHash = ""
		}
	}
	// The one place every ID token passes (code, refresh, implicit,
	// device): its sub is the one this client sees (pairwise.go), from the
	// session's user id, whatever the claims were stored with.
	if sess, ok := r.GetSession().(openid.Session); ok && sess.GetSubject() != "" {
		sess.IDTokenClaims().Subject = s.subjects.of(r.GetClient(), sess.GetSubject())
	}
	return s.OpenIDConnectTokenStrategy.GenerateIDToken(withSigningAlg(ctx, alg), lifespan, r)
}

// signingAlgKey is the context key of the algorithm keySigner.Generate
// signs with.
type signingAlgKey struct{}

// withSigningAlg returns ctx with alg as the algorithm keySigner.Generate
// signs with: each algorithm has its own key; "" means RS256.
func withSigningAlg(ctx context.Context, alg string) context.Context {
	return context.WithValue(ctx, signingAlgKey{}, alg)
}

// keySigner signs with the current key of the algorithm ctx carries
// (withSigningAlg) and verifies with whichever published key the token's
// kid names, in that key's algorithm, so an id_token_hint signed before a
// rotation, or with another client's algorithm, still verifies.
type keySigner struct {
	keys *keyManager
}

var _ jwt.Signer = (*keySigner)(nil)

func (s *keySigner) current() *jwt.DefaultSigner {
	return &jwt.DefaultSigner{GetPrivateKey: func(ctx context.Context) (any, error) {
		alg, _ := ctx.Value(signingAlgKey{}).(string)
		return s.keys.signingKey(ctx, alg)
	}}
}

func (s *keySigner) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	return s.current().Generate(ctx, claims, header)
}

func (s *keySigner) Decode(ctx context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("the token has no kid")
		}
		k, err := s.keys.verificationKey(ctx, kid)
		if err != nil {
			return nil, err
		}
		if alg, _ := t.Header["alg"].(string); alg != k.Algorithm {
			return nil, fmt.Errorf("the token's alg %q is not its key's %q", alg, k.Algorithm)
		}
		return publicKeyOf(k), nil
	})
}

func (s *keySigner) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

func (s *keySigner) Hash(ctx context.Context, in []byte) ([]byte, error) {
	return s.current().Hash(ctx, in)
}

func (s *keySigner) GetSignature(ctx context.Context, token string) (string, error) {
	return s.current().GetSignature(ctx, token)
}

func (s *keySigner) GetSigningMethodLength(ctx context.Context) int {
	return s.current().GetSigningMethodLength(ctx)
}

// publicKeyOf returns a JWK's public key for go-jose v3 to verify with,
// wrapped in a v3 JWK: fosite takes the address of a key that is not a
// pointer, and go-jose verifies with an ed25519.PublicKey, not with a
// pointer to one.
func publicKeyOf(k *josev4.JSONWebKey) any { return &josev3.JSONWebKey{Key: k.Key} }
