package authz

import (
	"context"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/token/hmac"

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
// all is handled in authorize (see noStateWriter).
func (c *fositeConfig) GetMinParameterEntropy(context.Context) int { return 1 }

// newProvider composes fosite from an explicit list of the grants we
// support; nothing is enabled that is not listed here.
func newProvider(cfg *Config, store *storage.Store) (*fosite.Fosite, oauth2.CoreStrategy) {
	fc := &fositeConfig{Config: &fosite.Config{
		AccessTokenLifespan:            cfg.AccessTokenLifespan,
		RefreshTokenLifespan:           cfg.RefreshTokenLifespan,
		AuthorizeCodeLifespan:          cfg.AuthorizeCodeLifespan,
		GlobalSecret:                   cfg.Secrets[0],
		RotatedGlobalSecrets:           cfg.Secrets[1:],
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: cfg.AllowPlainPKCE,
		SendDebugMessagesToClients:     cfg.Debug,
		ClientSecretsHasher:            storage.SecretHasher{},
		// A refresh token goes to every client registered for the
		// refresh_token grant; offline_access is not required (README).
		RefreshTokenScopes: []string{},
		TokenURL:           cfg.Issuer + "/oauth2/token",
		AccessTokenIssuer:  cfg.Issuer,
		IDTokenIssuer:      cfg.Issuer,
	}}
	strategy := oauth2.NewHMACSHAStrategyUnPrefixed(&hmac.HMACStrategy{Config: fc}, fc)

	factories := []compose.Factory{
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2PKCEFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	}
	provider := fosite.NewOAuth2Provider(store, fc)
	for _, factory := range factories {
		h := factory(fc, store, strategy)
		if ah, ok := h.(fosite.AuthorizeEndpointHandler); ok {
			fc.AuthorizeEndpointHandlers.Append(ah)
		}
		if th, ok := h.(fosite.TokenEndpointHandler); ok {
			fc.TokenEndpointHandlers.Append(th)
		}
		if ti, ok := h.(fosite.TokenIntrospector); ok {
			fc.TokenIntrospectionHandlers.Append(ti)
		}
		if rh, ok := h.(fosite.RevocationHandler); ok {
			fc.RevocationHandlers.Append(rh)
		}
	}
	return provider, strategy
}
