package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// introspection is the part of an RFC 7662 answer the API reads.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope"`
	ClientID  string `json:"client_id"`
	Sub       string `json:"sub"`
	Username  string `json:"username"`
	Exp       int64  `json:"exp"`
	TokenType string `json:"token_type"`
	// TokenUse is authz's own member: access_token or refresh_token.
	// Introspection answers for refresh tokens too, and those are not
	// bearer tokens for an API.
	TokenUse string `json:"token_use"`
}

// isAccessToken reports whether the answer is for an active access token.
func (i introspection) isAccessToken() bool {
	if !i.Active {
		return false
	}
	if i.TokenUse != "" && i.TokenUse != "access_token" {
		return false
	}
	return i.TokenType == "" || strings.EqualFold(i.TokenType, "bearer")
}

// maxCacheEntries bounds the cache. When it is full of live entries, new
// results are simply not cached.
const maxCacheEntries = 10000

// introspector asks the introspection endpoint about tokens and caches
// active answers for ttl, never past the token's exp. The cache key is the
// SHA-256 of the token, so no usable token sits in memory longer than a
// request.
type introspector struct {
	endpoint     string
	clientID     string
	clientSecret string
	client       *http.Client
	ttl          time.Duration
	now          func() time.Time

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedIntrospection
}

type cachedIntrospection struct {
	info  introspection
	until time.Time
}

func newIntrospector(endpoint string, cfg Config) *introspector {
	return &introspector{
		endpoint:     endpoint,
		clientID:     cfg.ClientID,
		clientSecret: cfg.ClientSecret,
		client:       cfg.HTTPClient,
		ttl:          cfg.Cache,
		now:          cfg.Now,
		cache:        map[[sha256.Size]byte]cachedIntrospection{},
	}
}

// introspect answers from the cache or asks the authorization server.
func (in *introspector) introspect(ctx context.Context, token string) (introspection, error) {
	key := sha256.Sum256([]byte(token))
	if in.ttl > 0 {
		now := in.now()
		in.mu.Lock()
		c, ok := in.cache[key]
		if ok && !now.Before(c.until) {
			delete(in.cache, key)
			ok = false
		}
		in.mu.Unlock()
		if ok {
			return c.info, nil
		}
	}
	info, err := in.ask(ctx, token)
	if err != nil {
		return introspection{}, err
	}
	if in.ttl > 0 && info.Active {
		in.remember(key, info)
	}
	return info, nil
}

// remember caches an active answer until ttl from now or the token's exp,
// whichever comes first.
func (in *introspector) remember(key [sha256.Size]byte, info introspection) {
	now := in.now()
	until := now.Add(in.ttl)
	if info.Exp != 0 {
		if exp := time.Unix(info.Exp, 0); exp.Before(until) {
			until = exp
		}
	}
	if !now.Before(until) {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.cache) >= maxCacheEntries {
		for k, c := range in.cache {
			if !now.Before(c.until) {
				delete(in.cache, k)
			}
		}
		if len(in.cache) >= maxCacheEntries {
			return
		}
	}
	in.cache[key] = cachedIntrospection{info: info, until: until}
}

// ask posts the token to the introspection endpoint, authenticating with
// client_secret_basic: id and secret are form-urlencoded before they go
// into the Basic header (RFC 6749 2.3.1).
func (in *introspector) ask(ctx context.Context, token string) (introspection, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return introspection{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.clientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return introspection{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return introspection{}, fmt.Errorf("introspection: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (are the API's client id and secret right?)"
		}
		return introspection{}, fmt.Errorf("introspection endpoint answered %s %s%s", resp.Status, e.Error, hint)
	}
	var info introspection
	if err := json.Unmarshal(body, &info); err != nil {
		return introspection{}, fmt.Errorf("introspection: the answer is not JSON: %w", err)
	}
	return info, nil
}

// Discovery retries start at retryMin and double up to retryMax.
const (
	retryMin = 250 * time.Millisecond
	retryMax = 2 * time.Second
)

// permanentError is a discovery failure that waiting will not fix.
type permanentError struct{ error }

// discover reads an endpoint, the discovery document's member
// (introspection_endpoint, jwks_uri), from the issuer's discovery
// document. While the issuer is unreachable or answers with an error it
// tries again, until timeout has passed.
func discover(ctx context.Context, client *http.Client, issuer, member string, timeout time.Duration, logger *slog.Logger) (string, error) {
	deadline, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := retryMin
	for attempt := 1; ; attempt++ {
		endpoint, err := discoveredEndpoint(deadline, client, issuer, member)
		if err == nil {
			return endpoint, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return "", perm.error
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		logger.Warn("the issuer is not ready; retrying", "issuer", issuer, "attempt", attempt, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-deadline.Done():
			t.Stop()
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", fmt.Errorf("discovery at %s: gave up after %s: %w", issuer, timeout, err)
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

func discoveredEndpoint(ctx context.Context, client *http.Client, issuer, member string) (string, error) {
	wellKnown := issuer + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return "", &permanentError{err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", wellKnown, resp.Status)
	}
	var doc map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("GET %s: not a discovery document: %w", wellKnown, err)
	}
	if iss, _ := doc["issuer"].(string); iss != issuer {
		return "", &permanentError{fmt.Errorf("%s names issuer %q, not %q", wellKnown, iss, issuer)}
	}
	endpoint, _ := doc[member].(string)
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", &permanentError{fmt.Errorf("%s has no usable %s (%q)", wellKnown, member, endpoint)}
	}
	return endpoint, nil
}
