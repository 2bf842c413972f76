package authz

// private_key_jwt client authentication (RFC 7523 2.2 and 3, OpenID Connect
// Core 9). fosite verifies the assertion; this file supplies what it leaves
// to us: fetching and caching clients' jwks_uri, a bound on how long an
// assertion may live (its jti is stored until exp), and the invalid_client
// answer RFC 7523 3.2 asks for whenever an assertion is not accepted.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	josev4 "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

const (
	// clientAssertionType is the only client_assertion_type (RFC 7523 2.2).
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionLifetime bounds exp - now of a client assertion. Its jti
	// is kept until exp, so this bounds how long a jti is stored.
	maxAssertionLifetime = time.Hour

	// jwksCacheTTL is how long a fetched jwks_uri is used without asking
	// again.
	jwksCacheTTL = 5 * time.Minute
	// jwksRefetchInterval is how often an assertion with a kid we do not
	// know may make us fetch the client's jwks_uri again.
	jwksRefetchInterval = 30 * time.Second
	// jwksFetchTimeout bounds one fetch, whatever HTTP client is used.
	jwksFetchTimeout = 5 * time.Second
	// maxJWKSURIBytes is the most read from a jwks_uri.
	maxJWKSURIBytes = 64 << 10
	// maxJWKSFetches is how many jwks_uri fetches may run at once, over
	// all clients; past it, assertions that need one are refused.
	maxJWKSFetches = 16
	// maxJTILength bounds the jti of a client assertion.
	maxJTILength = 256
)

// withAssertionChecks puts checkClientAssertion in front of next, and
// makes every refusal of an assertion invalid_client (assertionError). The
// token, introspection and revocation endpoints all authenticate clients
// through it.
func withAssertionChecks(next fosite.ClientAuthenticationStrategy) fosite.ClientAuthenticationStrategy {
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		if form.Get("client_assertion_type") != clientAssertionType || form.Get("client_assertion") == "" {
			return next(ctx, r, form)
		}
		exp, err := checkClientAssertion(form.Get("client_assertion"), time.Now())
		if err != nil {
			return nil, err
		}
		// fosite names the client by client_id, else by the assertion's
		// sub, and records the jti only once the assertion is verified as
		// that client's: jtis are kept per client.
		id := form.Get("client_id")
		if id == "" {
			id = assertionSubject(form.Get("client_assertion"))
		}
		client, err := next(storage.WithAssertionClient(ctx, id), r, form)
		return client, assertionError(err, exp, time.Now())
	}
}

// checkClientAssertion refuses, before fosite verifies it and stores its
// jti, an assertion that is not signed with an algorithm we support, whose
// exp is missing, past, or more than maxAssertionLifetime away (fosite
// keeps every jti until its exp and does not bound it), or whose iat or nbf
// is in the future. It returns exp, in Unix seconds.
//
// The time checks are fosite's own (token/jwt MapClaims.Valid, against
// time.Now, without leeway), made first because fosite reports a failure
// of them as an unrecognizable error, which its writers turn into a 500.
func checkClientAssertion(assertion string, now time.Time) (int64, error) {
	tok, err := parseAssertion(assertion)
	if err != nil {
		return 0, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error()).WithHintf(
			"The 'client_assertion' must be a JSON Web Token signed with one of %s.", strings.Join(supportedAssertionAlgs, ", "))
	}
	var claims josejwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return 0, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error()).WithHint("The claims of the 'client_assertion' could not be read.")
	}
	sec := now.Unix()
	switch {
	case claims.Expiry == nil:
		return 0, fosite.ErrInvalidClient.WithHint("The 'client_assertion' must have an 'exp' claim.")
	case int64(*claims.Expiry) < sec:
		return 0, fosite.ErrInvalidClient.WithHint("The 'client_assertion' has expired.")
	case int64(*claims.Expiry) > sec+int64(maxAssertionLifetime/time.Second):
		return 0, fosite.ErrInvalidClient.WithHintf("The 'exp' of the 'client_assertion' must be at most %s from now.", maxAssertionLifetime)
	case claims.IssuedAt != nil && int64(*claims.IssuedAt) > sec:
		return 0, fosite.ErrInvalidClient.WithHint("The 'iat' of the 'client_assertion' is in the future.")
	case claims.NotBefore != nil && int64(*claims.NotBefore) > sec:
		return 0, fosite.ErrInvalidClient.WithHint("The 'client_assertion' is not valid yet ('nbf').")
	case len(claims.ID) > maxJTILength:
		return 0, fosite.ErrInvalidClient.WithHintf("The 'jti' of the 'client_assertion' must be at most %d bytes.", maxJTILength)
	}
	return int64(*claims.Expiry), nil
}

// parseAssertion parses a client assertion, without verifying it, if it is
// signed with one of supportedAssertionAlgs.
func parseAssertion(assertion string) (*josejwt.JSONWebToken, error) {
	algs := make([]josev4.SignatureAlgorithm, len(supportedAssertionAlgs))
	for i, a := range supportedAssertionAlgs {
		algs[i] = josev4.SignatureAlgorithm(a)
	}
	return josejwt.ParseSigned(assertion, algs)
}

// assertionSubject is the unverified sub of an assertion, or "".
func assertionSubject(assertion string) string {
	tok, err := parseAssertion(assertion)
	if err != nil {
		return ""
	}
	var claims josejwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&claims) != nil {
		return ""
	}
	return claims.Subject
}

// prefetchClientKeys fetches the jwks_uri of the client a request's
// assertion names, before the token or revocation endpoint opens its
// database transaction, so that fosite's own fetch inside it is answered
// from the cache. A slow or dead jwks_uri then holds no database
// connection; without this, enough such requests would exhaust the pool
// and stop the server. It returns invalid_client when the keys cannot be
// had; anything else is left to fosite.
func (h *Handler) prefetchClientKeys(ctx context.Context, form url.Values) error {
	h.prefetchDocument(ctx, form) // a client identified by a URL (cimd.go)
	if form.Get("client_assertion_type") != clientAssertionType {
		return nil
	}
	assertion := form.Get("client_assertion")
	if _, err := checkClientAssertion(assertion, time.Now()); err != nil {
		return err
	}
	tok, err := parseAssertion(assertion)
	if err != nil {
		return nil
	}
	id := form.Get("client_id")
	if id == "" {
		id = assertionSubject(assertion)
	}
	c, err := h.store.Client(ctx, id)
	if err != nil || c.TokenEndpointAuthMethod != "private_key_jwt" || c.JWKSURI == "" || len(c.JWKS) > 0 {
		return nil // fosite answers, without a fetch
	}
	set, err := h.jwks.Resolve(ctx, c.JWKSURI, false)
	if err != nil {
		return err
	}
	if kid := tok.Headers[0].KeyID; kid != "" && len(set.Key(kid)) == 0 {
		_, err = h.jwks.Resolve(ctx, c.JWKSURI, true)
	}
	return err
}

// assertionError makes fosite's refusals of an assertion invalid_client, as
// RFC 7523 3.2 asks:
//   - fosite answers invalid_request when the assertion's kid is not in the
//     client's keys or no key of the assertion's type is; the request is
//     well-formed, it is the assertion that is not accepted;
//   - an assertion that expired after checkClientAssertion passed it (the
//     keyfunc may have fetched a jwks_uri meanwhile) fails fosite's time
//     checks with an unrecognizable error, a 500. The only other such error
//     fosite passes on here is the database's from recording the jti, so
//     one with exp now past is made invalid_client: the assertion is
//     expired either way. Any other stays a server error.
func assertionError(err error, exp int64, now time.Time) error {
	if err == nil {
		return nil
	}
	var rfc *fosite.RFC6749Error
	if !errors.As(err, &rfc) {
		if now.Unix() > exp {
			return fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error()).WithHint("The 'client_assertion' has expired.")
		}
		return err
	}
	if rfc.ErrorField == fosite.ErrInvalidRequest.ErrorField {
		// Not wrapped: the revocation endpoint's writer looks for
		// invalid_request anywhere in the chain and would answer that.
		return fosite.ErrInvalidClient.WithHint(rfc.HintField).WithDebug(rfc.DebugField)
	}
	return err
}

// jwksFetcher fetches clients' jwks_uri for fosite. A set is cached per URL
// for jwksCacheTTL. fosite asks again with ignoreCache when an assertion's
// kid is not in the set; that refetches at most once per
// jwksRefetchInterval per URL, otherwise the cached set is returned, so a
// stream of assertions with unknown kids cannot make us hammer the client's
// server. Concurrent requests for one URL share a single fetch.
type jwksFetcher struct {
	client *http.Client
	now    func() time.Time
	slots  chan struct{} // one per fetch running; maxJWKSFetches

	mu      sync.Mutex
	entries map[string]*jwksEntry
}

var _ fosite.JWKSFetcherStrategy = (*jwksFetcher)(nil)

// jwksEntry is what is known of one jwks_uri.
type jwksEntry struct {
	set         *josev3.JSONWebKeySet // the last set fetched; nil before the first
	fetchedAt   time.Time             // when set was fetched
	attemptedAt time.Time             // when the last fetch started
	err         error                 // why the last fetch failed; nil if it did not
	call        *jwksCall             // the fetch under way, if any
}

// jwksCall is one fetch, awaited by every request that wants its result.
type jwksCall struct {
	done chan struct{}
	set  *josev3.JSONWebKeySet
	err  error
}

// newJWKSFetcher returns what fetches clients' jwks_uri (newFetchClient).
func newJWKSFetcher(cfg *Config) *jwksFetcher {
	return &jwksFetcher{client: newFetchClient(cfg), now: cfg.now, slots: make(chan struct{}, maxJWKSFetches), entries: map[string]*jwksEntry{}}
}

// Resolve returns the key set at location. Its errors are invalid_client,
// so a client whose server is down or serves nonsense fails to
// authenticate; it is never a server error of ours.
func (f *jwksFetcher) Resolve(ctx context.Context, location string, ignoreCache bool) (*josev3.JSONWebKeySet, error) {
	if u, err := url.Parse(location); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fosite.ErrInvalidClient.WithHint("The OAuth 2.0 Client's jwks_uri is not an https URL.")
	}
	f.mu.Lock()
	now := f.now()
	e := f.entries[location]
	if e == nil {
		f.sweep(now)
		e = &jwksEntry{}
		f.entries[location] = e
	}
	if e.set != nil && e.err == nil {
		fresh := now.Sub(e.fetchedAt) < jwksCacheTTL
		if (!ignoreCache && fresh) || (ignoreCache && now.Sub(e.attemptedAt) < jwksRefetchInterval) {
			set := e.set
			f.mu.Unlock()
			return set, nil
		}
	}
	// A failure is remembered as long as a forced refetch would be: a
	// client's server that is down or slow is not asked again by every
	// request.
	if e.err != nil && e.call == nil && now.Sub(e.attemptedAt) < jwksRefetchInterval {
		err := e.err
		f.mu.Unlock()
		return nil, err
	}
	c := e.call
	if c == nil {
		select {
		case f.slots <- struct{}{}:
		default:
			f.mu.Unlock()
			return nil, fosite.ErrInvalidClient.WithHint("Too many JSON Web Key Sets are being fetched; try again shortly.")
		}
		c = &jwksCall{done: make(chan struct{})}
		e.call = c
		e.attemptedAt = now
		// The fetch outlives a request that gives up, so the others waiting
		// for it still get its result; jwksFetchTimeout bounds it.
		go f.run(context.WithoutCancel(ctx), location, e, c)
	}
	f.mu.Unlock()

	select {
	case <-c.done:
		return c.set, c.err
	case <-ctx.Done():
		return nil, fosite.ErrInvalidClient.WithWrap(ctx.Err()).WithHint("The request ended while the OAuth 2.0 Client's jwks_uri was being fetched.")
	}
}

// run performs the fetch c and records its result in e.
func (f *jwksFetcher) run(ctx context.Context, location string, e *jwksEntry, c *jwksCall) {
	set, err := f.fetch(ctx, location)
	<-f.slots
	f.mu.Lock()
	defer f.mu.Unlock()
	c.set, c.err = set, err
	e.err = err
	if err == nil {
		e.set, e.fetchedAt = set, f.now()
	}
	e.call = nil
	close(c.done)
}

// sweep forgets the entries that would be fetched again anyway, so the
// cache holds only the jwks_uri of clients seen lately. f.mu is held.
func (f *jwksFetcher) sweep(now time.Time) {
	for loc, e := range f.entries {
		if e.call == nil && now.Sub(e.fetchedAt) >= jwksCacheTTL && now.Sub(e.attemptedAt) >= jwksRefetchInterval {
			delete(f.entries, loc)
		}
	}
}

// fetch GETs location and parses what it serves.
func (f *jwksFetcher) fetch(ctx context.Context, location string) (*josev3.JSONWebKeySet, error) {
	raw, _, err := fetchDocument(ctx, f.client, location, maxJWKSURIBytes)
	if err != nil {
		err = fmt.Errorf("fetch jwks_uri: %w", err)
		return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error()).WithHint("The OAuth 2.0 Client's JSON Web Key Set could not be fetched from its jwks_uri.")
	}
	set, err := parseFetchedJWKS(raw)
	if err != nil {
		return nil, fosite.ErrInvalidClient.WithWrap(err).WithDebug(err.Error()).WithHint("The OAuth 2.0 Client's jwks_uri does not serve a JSON Web Key Set of public signing keys.")
	}
	return set, nil
}

// publicTransport is an HTTP transport for URLs that clients choose. A
// client that registered itself could otherwise name an address inside our
// network as its jwks_uri and have the server probe it (SSRF), so unless
// private is set it refuses, after DNS resolution, to connect to loopback,
// private, link-local, shared (CGNAT) and other non-public addresses. It
// connects directly, never through a proxy from the environment.
func publicTransport(private bool) *http.Transport {
	d := &net.Dialer{Timeout: jwksFetchTimeout}
	if !private {
		d.Control = func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return err
			}
			if !publicAddr(ip) {
				return fmt.Errorf("jwks_uri resolves to %s, which is not a public address (AUTHZ_JWKS_PRIVATE_NETWORKS=true allows it)", ip)
			}
			return nil
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	return t
}

// nonPublicPrefixes are special-purpose ranges (RFC 6890 and its
// successors) that IsGlobalUnicast and IsPrivate let through.
var nonPublicPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved
	netip.MustParsePrefix("2001::/32"),     // Teredo: reaches IPv4 hosts
	netip.MustParsePrefix("fec0::/10"),     // site-local
}

// Prefixes of IPv6 addresses that carry an IPv4 address, which decides.
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: the last 32 bits
	nat64Local   = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour    = netip.MustParsePrefix("2002::/16") // RFC 3056: bits 16-47
	v4Compatible = netip.MustParsePrefix("::/96")     // deprecated: the last 32 bits
)

// publicAddr reports whether ip is an address on the public internet. An
// IPv6 address that embeds an IPv4 one (NAT64, 6to4) is judged by it, so
// that 64:ff9b::a9fe:a9fe does not reach 169.254.169.254.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64Local.Contains(ip):
			return false
		case nat64Prefix.Contains(ip), v4Compatible.Contains(ip):
			return publicAddr(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return publicAddr(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// parseFetchedJWKS checks a fetched key set with go-jose v4 (at least one
// key, every key valid and public: a private or symmetric key there has
// leaked, and the set is refused) and returns it in the go-jose v3 form
// fosite consumes, with its signing keys only.
func parseFetchedJWKS(raw []byte) (*josev3.JSONWebKeySet, error) {
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("parse jwks_uri: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("parse jwks_uri: no keys")
	}
	for i, k := range set.Keys {
		if !k.Valid() {
			return nil, fmt.Errorf("parse jwks_uri: key %d is not a valid key", i+1)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("parse jwks_uri: key %d is a private or symmetric key", i+1)
		}
	}
	v3, err := storage.SigningKeySet(raw)
	if err != nil {
		return nil, fmt.Errorf("parse jwks_uri: %w", err)
	}
	if len(v3.Keys) == 0 {
		return nil, errors.New("parse jwks_uri: no signing keys")
	}
	return v3, nil
}
