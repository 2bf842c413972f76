package authz

import "github.com/ory/fosite"

// newJWKSFetcher returns what fetches clients' jwks_uri. Stub: being written.
func newJWKSFetcher(cfg *Config) fosite.JWKSFetcherStrategy {
	return fosite.NewDefaultJWKSFetcherStrategy()
}
