package bff

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Lifetimes of what the BFF keeps for a browser.
const (
	sessionLifetime = 12 * time.Hour   // a signed-in session, from sign-in
	loginLifetime   = 10 * time.Minute // a sign-in in progress (the code lives 10 minutes too)
)

// session is a signed-in browser. Its tokens never leave the server.
type session struct {
	sub      string
	username string // preferred_username, for an API that does not say it
	name     string // shown on the page
	csrf     string // the token our forms post back

	// mu guards the tokens. It is held across a refresh, so that two
	// requests of one browser never refresh with the same refresh token:
	// the provider would let only one of them succeed.
	mu      sync.Mutex
	token   *oauth2.Token
	idToken string // the latest ID token, for id_token_hint at logout
}

// tokens returns the current tokens.
func (s *session) tokens() (*oauth2.Token, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, s.idToken
}

// pendingLogin is a sign-in in progress, bound to the browser's pre-login
// cookie.
type pendingLogin struct {
	state    string
	nonce    string
	verifier string // PKCE code verifier
	returnTo string // where to go after signing in
}

// errFull is returned when a store holds as many live entries as it may.
var errFull = errors.New("too many sessions")

// store keeps values in memory under random ids, for a while. The map key
// is the SHA-256 of the id, the cookie value. Expired entries are dropped
// when read, and swept at most once a minute when an entry is added.
type store[V any] struct {
	now func() time.Time
	max int

	mu        sync.Mutex
	m         map[[sha256.Size]byte]stored[V]
	lastSweep time.Time
}

type stored[V any] struct {
	v       V
	expires time.Time
}

func newStore[V any](now func() time.Time, max int) *store[V] {
	return &store[V]{now: now, max: max, m: map[[sha256.Size]byte]stored[V]{}}
}

// add stores v for ttl and returns its new random id.
func (s *store[V]) add(v V, ttl time.Duration) (string, error) {
	id := rand.Text()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastSweep) > time.Minute || len(s.m) >= s.max {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
		s.lastSweep = now
	}
	if len(s.m) >= s.max {
		return "", errFull
	}
	s.m[sha256.Sum256([]byte(id))] = stored[V]{v: v, expires: now.Add(ttl)}
	return id, nil
}

// get returns the live value under id.
func (s *store[V]) get(id string) (V, bool) {
	return s.lookup(id, false)
}

// take returns the live value under id and removes it: single use.
func (s *store[V]) take(id string) (V, bool) {
	return s.lookup(id, true)
}

func (s *store[V]) lookup(id string, remove bool) (V, bool) {
	var zero V
	if id == "" {
		return zero, false
	}
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return zero, false
	}
	if remove || !now.Before(e.expires) {
		delete(s.m, key)
	}
	if !now.Before(e.expires) {
		return zero, false
	}
	return e.v, true
}

// remove deletes the value under id, if any.
func (s *store[V]) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// len is the number of entries, live or not yet swept.
func (s *store[V]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
