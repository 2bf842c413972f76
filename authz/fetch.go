package authz

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Documents at URLs that clients chose (jwks_uri, client metadata
// documents, sector_identifier_uri) are fetched alike: under the jwks_uri
// rules, within jwksFetchTimeout, a bounded body of a 200 answer.

// newFetchClient fetches a URL a client chose with the jwks_uri rules:
// cfg.HTTPClient when set, else public addresses only (unless
// cfg.JWKSPrivateNetworks); a short timeout; never a redirect or a cookie.
func newFetchClient(cfg *Config) *http.Client {
	client := &http.Client{Timeout: jwksFetchTimeout, Transport: publicTransport(cfg.JWKSPrivateNetworks)}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		c.Jar = nil
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return client
}

// fetchDocument returns the body of a 200 answer to GET location, at most
// limit bytes of it, within jwksFetchTimeout, and the answer's header.
// Its errors say what went wrong in words a client's developer can act on.
func fetchDocument(ctx context.Context, client *http.Client, location string, limit int) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("it answered %s", resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading it failed: %w", err)
	}
	if len(raw) > limit {
		return nil, nil, fmt.Errorf("the document is larger than %d bytes", limit)
	}
	return raw, resp.Header, nil
}
