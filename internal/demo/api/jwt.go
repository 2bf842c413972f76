package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWT mode: the API checks RFC 9068 JWT access tokens itself, against the
// issuer's JWKS, and never asks the authorization server about a token.
// It therefore cannot see a revocation: a revoked token works here until
// its exp.

// jwtAlgs are the signature algorithms accepted. Anything else (none,
// HS256 with the public key as the secret, ...) fails to parse.
var jwtAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// JWTLeeway is how far past exp (and before nbf or iat) a token is still
// taken, for clocks that differ a little.
const JWTLeeway = 30 * time.Second

// How the JWKS is cached.
const (
	// jwksRefetch: an unknown kid makes the JWKS be fetched again at most
	// this often, so that tokens with made-up kids cannot flood the
	// authorization server.
	jwksRefetch = 30 * time.Second
	// jwksRetry: after a failed fetch, requests that need one are answered
	// 503 for this long without trying again.
	jwksRetry = 5 * time.Second
	// The JWKS is kept for its Cache-Control max-age, bounded by these;
	// jwksDefaultTTL when it has none.
	jwksMinTTL     = 30 * time.Second
	jwksMaxTTL     = time.Hour
	jwksDefaultTTL = 5 * time.Minute
)

// invalidTokenError is a token the API refuses (401 invalid_token).
// reason is for the log only.
type invalidTokenError struct{ reason string }

func (e *invalidTokenError) Error() string { return "invalid token: " + e.reason }

func invalid(format string, args ...any) error {
	return &invalidTokenError{reason: fmt.Sprintf(format, args...)}
}

// errJWKSUnavailable: the keys could not be fetched, so a token that may
// be fine cannot be checked (503).
var errJWKSUnavailable = errors.New("the issuer's JWKS is unavailable")

// errUnknownKey: the token names a key the JWKS does not have.
var errUnknownKey = errors.New("unknown kid")

// grant is what a checked token says: whom it stands for, and what scope
// it was granted.
type grant struct {
	sub      string
	username string
	scope    string
	user     bool // it stands for a user, not only a client
}

// jwtVerifier checks RFC 9068 JWT access tokens.
type jwtVerifier struct {
	issuer   string
	resource string // the API's own resource URL, which aud must contain
	keys     *keySet
	now      func() time.Time
}

// accessClaims are RFC 9068's claims beyond RFC 7519's registered ones.
type accessClaims struct {
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	// Username is read when the issuer adds one; authz does not.
	Username string `json:"preferred_username"`
}

// verify checks a token: a compact JWS typed at+jwt, signed with a key of
// the issuer's JWKS by an algorithm that fits the key, from our issuer, for
// this API, not expired. An *invalidTokenError means the token is refused;
// errJWKSUnavailable that it could not be checked.
func (v *jwtVerifier) verify(ctx context.Context, raw string) (grant, error) {
	tok, err := jwt.ParseSigned(raw, jwtAlgs)
	if err != nil {
		return grant{}, invalid("not a compact JWS signed with %v: %v", jwtAlgs, err)
	}
	if len(tok.Headers) != 1 {
		return grant{}, invalid("%d signatures", len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !isATJWT(typ) {
		// An ID token (typ JWT) is not an access token (RFC 9068 4).
		return grant{}, invalid("typ %q is not at+jwt", typ)
	}
	if h.KeyID == "" {
		return grant{}, invalid("no kid")
	}
	key, err := v.keys.key(ctx, h.KeyID)
	if errors.Is(err, errUnknownKey) {
		return grant{}, invalid("kid %q is not in the issuer's JWKS", h.KeyID)
	}
	if err != nil {
		return grant{}, err
	}
	if err := keyFits(key, h.Algorithm); err != nil {
		return grant{}, invalid("kid %q: %v", h.KeyID, err)
	}
	var c jwt.Claims
	var at accessClaims
	if err := tok.Claims(key.Key, &c, &at); err != nil {
		return grant{}, invalid("signature or claims: %v", err)
	}
	switch {
	case c.Expiry == nil:
		return grant{}, invalid("no exp")
	case c.IssuedAt == nil:
		return grant{}, invalid("no iat")
	case c.Subject == "":
		return grant{}, invalid("no sub")
	case at.ClientID == "":
		return grant{}, invalid("no client_id")
	case c.ID == "":
		return grant{}, invalid("no jti")
	}
	expected := jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.resource}, Time: v.now()}
	if err := c.ValidateWithLeeway(expected, JWTLeeway); err != nil {
		return grant{}, invalid("%v (iss %q, aud %q)", err, c.Issuer, []string(c.Audience))
	}
	// RFC 9068 2.2: without a resource owner (client_credentials) sub is
	// the client's identifier.
	return grant{sub: c.Subject, username: at.Username, scope: at.Scope, user: c.Subject != at.ClientID}, nil
}

// isATJWT reports whether a typ header names an RFC 9068 access token:
// "at+jwt", or its media type "application/at+jwt", in any case.
func isATJWT(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "at+jwt" || typ == "application/at+jwt"
}

// keyFits checks that the JWS alg is one the key is for: its own alg when
// the JWKS names one, and its key type in any case.
func keyFits(k *jose.JSONWebKey, alg string) error {
	if k.Algorithm != "" && k.Algorithm != alg {
		return fmt.Errorf("the key is for %s, the token says %s", k.Algorithm, alg)
	}
	ok := false
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		ok = alg == string(jose.RS256) || alg == string(jose.PS256)
	case *ecdsa.PublicKey:
		ok = alg == string(jose.ES256) && pub.Curve == elliptic.P256()
	case ed25519.PublicKey:
		ok = alg == string(jose.EdDSA)
	}
	if !ok {
		return fmt.Errorf("a %T cannot verify %s", k.Key, alg)
	}
	return nil
}

// keySet is the issuer's JWKS, fetched when first needed and cached for
// its max-age (bounded); an unknown kid fetches it again, at most once per
// jwksRefetch.
type keySet struct {
	uri    string
	client *http.Client
	now    func() time.Time

	fetching sync.Mutex // one fetch at a time; held across it

	mu      sync.Mutex
	keys    map[string]*jose.JSONWebKey // by kid
	fetched time.Time                   // the last successful fetch; zero: none yet
	expires time.Time                   // when keys are too old to use
	failed  time.Time                   // the last failed fetch, if after fetched
	failure error
}

func newKeySet(uri string, client *http.Client, now func() time.Time) *keySet {
	return &keySet{uri: uri, client: client, now: now}
}

// key returns the key kid, fetching the JWKS when the cache is too old or
// does not know kid (rate-limited). errUnknownKey: the JWKS does not have
// it; errJWKSUnavailable: it could not be fetched.
func (s *keySet) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	if k := s.cached(kid); k != nil {
		return k, nil
	}
	s.fetching.Lock()
	defer s.fetching.Unlock()
	if k := s.cached(kid); k != nil { // fetched while we waited
		return k, nil
	}
	now := s.now()
	s.mu.Lock()
	fresh := now.Before(s.expires)
	recent := !s.fetched.IsZero() && now.Sub(s.fetched) < jwksRefetch
	failure := s.failure
	if !s.failed.IsZero() && now.Sub(s.failed) >= jwksRetry {
		failure = nil
	}
	s.mu.Unlock()
	switch {
	case failure != nil:
		return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, failure)
	case fresh && recent:
		return nil, errUnknownKey
	}
	if err := s.fetch(ctx); err != nil {
		s.mu.Lock()
		s.failed, s.failure = s.now(), err
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, err)
	}
	if k := s.cached(kid); k != nil {
		return k, nil
	}
	return nil, errUnknownKey
}

// cached is key kid from a cache that is not too old, or nil.
func (s *keySet) cached(kid string) *jose.JSONWebKey {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !now.Before(s.expires) {
		return nil
	}
	return s.keys[kid]
}

// fetch gets the JWKS and replaces the cache. It is not cut short when the
// request that needed it goes away: other requests wait for it.
func (s *keySet) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uri, nil)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS: GET %s: %s", s.uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("fetch JWKS: read %s: %w", s.uri, err)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %s: %w", s.uri, err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys, s.fetched, s.expires = keys, now, now.Add(jwksTTL(resp.Header.Get("Cache-Control")))
	s.failed, s.failure = time.Time{}, nil
	return nil
}

// parseJWKS reads the public signing keys of a JWKS by kid. A key that
// go-jose cannot read (a type it does not know) is skipped, as RFC 7517 5
// asks, and so are keys without a kid, keys for encryption and private
// keys, which no JWKS should publish.
func parseJWKS(body []byte) (map[string]*jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New("not a JWKS: no keys member")
	}
	keys := map[string]*jose.JSONWebKey{}
	for _, raw := range set.Keys {
		k := new(jose.JSONWebKey)
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.IsPublic() || !k.Valid() {
			continue
		}
		keys[k.KeyID] = k
	}
	return keys, nil
}

// jwksTTL is how long to keep a JWKS served with this Cache-Control:
// its max-age within [jwksMinTTL, jwksMaxTTL], or jwksDefaultTTL without
// one. no-store or no-cache mean as short as we go.
func jwksTTL(cacheControl string) time.Duration {
	ttl := jwksDefaultTTL
	for _, d := range strings.Split(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return jwksMinTTL
		case "max-age":
			if n, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(jwksMaxTTL/time.Second))) * time.Second
			}
		}
	}
	return max(ttl, jwksMinTTL) // max-age was bounded by jwksMaxTTL as read
}
