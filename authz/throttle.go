package authz

// Throttling of guesses: passwords at sign-in, and client secrets a person
// chose at the token, introspection and revocation endpoints. The counts
// live in PostgreSQL (storage.CountAttempt), so every replica sees the same
// limits; the share of password checks each address may run at once is per
// process, like the memory those checks take.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// The throttling policies.
var (
	// accountPolicy limits failed sign-ins as one username, from every
	// address, whether or not the account exists: five are free, then each
	// further attempt waits 1 s, 2 s, 4 s ... up to a minute, and the
	// twentieth failure locks the username for 15 minutes (or until an
	// operator unlocks it). A success clears the count.
	accountPolicy = storage.ThrottlePolicy{
		Window: 15 * time.Minute, FreeFailures: 5, BaseDelay: time.Second, MaxDelay: time.Minute,
		LockAfter: 20, LockFor: 15 * time.Minute,
	}
	// addressPolicy limits failed sign-ins from one client address (an
	// IPv6 /64), over every username: 100 in 15 minutes, then 15 minutes'
	// pause. Higher than an account's limit, for offices behind one NAT.
	addressPolicy = storage.ThrottlePolicy{Window: 15 * time.Minute, LockAfter: 100, LockFor: 15 * time.Minute}
	// clientPolicy limits failed authentications of one client whose
	// secret an operator chose (Argon2id): 10 a minute, then a minute's
	// pause. Generated secrets cannot be guessed and are not throttled:
	// throttling them would only let anyone lock their clients out.
	clientPolicy = storage.ThrottlePolicy{Window: time.Minute, LockAfter: 10, LockFor: time.Minute}
)

const (
	// hashesPerAddress is how many password checks (Argon2id, 19 MiB and
	// tens of milliseconds each) one client address may have running at
	// once. The rest of the global slots stay free for everyone else.
	hashesPerAddress = 2
	// shareWait bounds how long a sign-in waits for its address's share
	// before it is told to retry (429).
	shareWait = 2 * time.Second
	// busyRetryAfter is the Retry-After of the 503 answered when every
	// password check slot of the process is taken.
	busyRetryAfter = time.Second
)

// loginRefused is a sign-in a throttle turned away before any password
// was checked.
type loginRefused struct {
	by         string // "address", "account" or "share", for the log
	retryAfter time.Duration
}

func (e *loginRefused) Error() string {
	return fmt.Sprintf("sign-in refused by the %s throttle for %s", e.by, e.retryAfter)
}

// message tells the person what happened and how long to wait. The
// account's answer is the same whether or not the account exists.
func (e *loginRefused) message() string {
	switch e.by {
	case "share":
		return "Too many sign-ins from your network at once. Please try again in a moment."
	case "address":
		return "Too many failed attempts from your network. Wait " + waitText(e.retryAfter) + ", then try again."
	default:
		return "Too many failed attempts. Wait " + waitText(e.retryAfter) + ", then try again."
	}
}

// checkLogin checks a username and password under the throttles, each
// before the next:
//
//   - the client address's share of password checks (waiting up to
//     shareWait for one), so that one address cannot take every slot;
//   - the address's failures, over every username;
//   - the username's failures, over every address, counted and locked
//     alike whether or not the account exists (Authenticate then does the
//     same hashing work for both).
//
// Each counter counts the attempt before the password is checked, so
// simultaneous attempts cannot slip past a limit. A success clears the
// username's count and takes back the address's. A refusal is a
// *loginRefused.
func (h *Handler) checkLogin(ctx context.Context, r *http.Request, username, password string) (*storage.User, error) {
	addr := addrKey(h.clientAddr(r))
	release, ok := hashShares.acquire(ctx, shareKey{h, addr}, shareWait)
	if !ok {
		if ctx.Err() != nil {
			return nil, storage.ErrBusy
		}
		return nil, &loginRefused{by: "share", retryAfter: shareWait}
	}
	defer release()

	addrCounter := storage.AddressThrottleKey(addr)
	at, err := h.store.CountAttempt(ctx, addrCounter, addressPolicy)
	if err != nil {
		return nil, err
	}
	if !at.Admitted {
		return nil, &loginRefused{by: "address", retryAfter: at.RetryAfter}
	}
	// From here on, an attempt whose password was not checked gives the
	// address's count back.
	userCounter := storage.UserThrottleKey(username)
	acct, err := h.store.CountAttempt(ctx, userCounter, accountPolicy)
	if err == nil && !acct.Admitted {
		err = &loginRefused{by: "account", retryAfter: acct.RetryAfter}
	}
	if err != nil {
		return nil, errors.Join(err, h.store.UncountAttempt(ctx, addrCounter, at.WindowStart))
	}
	user, err := h.store.Authenticate(ctx, username, password)
	switch {
	case err == nil:
		_, rerr := h.store.ResetThrottle(ctx, userCounter)
		if err := errors.Join(rerr, h.store.UncountAttempt(ctx, addrCounter, at.WindowStart)); err != nil {
			return nil, err
		}
	case errors.Is(err, storage.ErrBusy):
		// Not checked. The username's count stays: giving back a delay is
		// not exact, and erring on the safe side costs one attempt.
		return nil, errors.Join(err, h.store.UncountAttempt(ctx, addrCounter, at.WindowStart))
	}
	return user, err
}

// waitText says how long d is, in words, rounded up.
func waitText(d time.Duration) string {
	s := waitSeconds(d)
	switch {
	case s == 1:
		return "1 second"
	case s < 60:
		return strconv.Itoa(s) + " seconds"
	case s == 60:
		return "1 minute"
	default:
		return strconv.Itoa((s+59)/60) + " minutes"
	}
}

// waitSeconds is d in whole seconds, rounded up, at least 1.
func waitSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// setRetryAfter tells the client how long to wait (RFC 9110 10.2.3).
func setRetryAfter(h http.Header, d time.Duration) {
	h.Set("Retry-After", strconv.Itoa(waitSeconds(d)))
}

// hashShare is the share of slow hashes of the request's client address.
func (h *Handler) hashShare(r *http.Request) shareKey {
	return shareKey{h, addrKey(h.clientAddr(r))}
}

// hashShares holds every Handler's per-address shares of password checks.
var hashShares = newShares(hashesPerAddress)

// shareKey names one address's share in one Handler.
type shareKey struct {
	h    *Handler
	addr string
}

// shares lets each key hold at most per slots at once: a fair share of
// something every key competes for. A key's entry lives only while someone
// holds or waits for one of its slots.
type shares struct {
	per int
	mu  sync.Mutex
	m   map[shareKey]*share
}

type share struct {
	slots chan struct{}
	users int // holding or waiting
}

func newShares(per int) *shares {
	return &shares{per: per, m: make(map[shareKey]*share)}
}

// acquire takes one of key's slots, waiting at most wait and never past
// the end of ctx. It returns the function that gives the slot back, or
// false when none came free in time.
func (s *shares) acquire(ctx context.Context, key shareKey, wait time.Duration) (release func(), ok bool) {
	s.mu.Lock()
	sh := s.m[key]
	if sh == nil {
		sh = &share{slots: make(chan struct{}, s.per)}
		s.m[key] = sh
	}
	sh.users++
	s.mu.Unlock()
	leave := func() {
		s.mu.Lock()
		if sh.users--; sh.users == 0 {
			delete(s.m, key)
		}
		s.mu.Unlock()
	}
	release = func() {
		<-sh.slots
		leave()
	}
	select {
	case sh.slots <- struct{}{}:
		return release, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sh.slots <- struct{}{}:
		return release, true
	case <-t.C:
	case <-ctx.Done():
	}
	leave()
	return nil, false
}

// Client secrets.
//
// fosite compares a client's secret through its Hasher. throttledHasher
// consults the client's counter just before an Argon2id comparison and
// refuses without doing it while the client is locked; withClientThrottle
// names the client for it and counts a failed comparison afterwards.
// Failures are counted after the fact, not before: a busy client sends many
// requests at once with the right secret, and counting those in advance
// would throttle it. The limit can then be overshot by the requests in
// flight together, each of which waits for one of the few Argon2id slots.

// clientThrottledError is the cause of a refusal by the client throttle.
type clientThrottledError struct{ retryAfter time.Duration }

func (e *clientThrottledError) Error() string {
	return fmt.Sprintf("too many failed authentications of this client; retry after %s", e.retryAfter)
}

// clientThrottled answers a client refused for its failures with
// invalid_client (RFC 6749 5.2), and with Retry-After where the endpoint
// writes it (retryAfterOf). Not 429 temporarily_unavailable: RFC 6749 and
// RFC 7009 define no 429 for these endpoints, and fosite answers a
// revocation error it does not know with 200, which would claim a
// revocation that did not happen; invalid_client is answered correctly by
// all three endpoints, and it is true: the client was not authenticated.
// Not 503 either: nothing is down.
func clientThrottled(retryAfter time.Duration) error {
	return fosite.ErrInvalidClient.WithWrap(&clientThrottledError{retryAfter}).
		WithHintf("Too many failed authentications of this client: try again in %s.", waitText(retryAfter))
}

// retryAfterOf reports how long a refusal by a throttle asks the client to
// wait. An endpoint writing err sets Retry-After from it.
func retryAfterOf(err error) (time.Duration, bool) {
	var ct *clientThrottledError
	if errors.As(err, &ct) {
		return ct.retryAfter, true
	}
	var lr *loginRefused
	if errors.As(err, &lr) {
		return lr.retryAfter, true
	}
	return 0, false
}

// clientCounter is what the client throttle needs of storage.
type clientCounter interface {
	PeekAttempts(ctx context.Context, key string) (storage.Attempt, error)
	CountAttempt(ctx context.Context, key string, p storage.ThrottlePolicy) (storage.Attempt, error)
}

// secretCheck is one request's client secret check, shared by
// withClientThrottle and throttledHasher through the context.
type secretCheck struct {
	store      clientCounter
	key        string
	peeked     bool
	refused    bool // the client is locked: nothing was compared
	retryAfter time.Duration
	failed     bool     // an Argon2id comparison failed
	share      shareKey // the caller's address's share of slow hashes
}

type secretCheckKey struct{}

// withClientThrottle throttles failed authentications of clients whose
// secrets are Argon2id hashes, by client id. Assertions and public clients
// pass through untouched.
func withClientThrottle(store clientCounter, share func(*http.Request) shareKey, next fosite.ClientAuthenticationStrategy) fosite.ClientAuthenticationStrategy {
	return func(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
		id := secretClientID(r, form)
		if id == "" {
			return next(ctx, r, form)
		}
		check := &secretCheck{store: store, key: storage.ClientThrottleKey(id), share: share(r)}
		client, err := next(context.WithValue(ctx, secretCheckKey{}, check), r, form)
		switch {
		case check.refused:
			noteThrottled(ctx, throttleClient)
			auditLockout(ctx, id, throttleClient, check.retryAfter)
			return nil, clientThrottled(check.retryAfter)
		case errors.Is(err, storage.ErrBusy):
			// Every slow-hash slot is taken: the server is overloaded,
			// which is no failure of the client's.
			return nil, fosite.ErrTemporarilyUnavailable.WithWrap(err).WithHint("Too many client secrets are being checked at once; retry shortly.")
		case err != nil && check.failed:
			if _, cerr := store.CountAttempt(ctx, check.key, clientPolicy); cerr != nil {
				return nil, fosite.ErrServerError.WithWrap(cerr).WithDebug(cerr.Error())
			}
		}
		return client, err
	}
}

// secretClientID is the client id a request authenticates with a secret,
// where fosite reads it from: HTTP Basic, else the form. "" when the
// request uses an assertion or names no client.
func secretClientID(r *http.Request, form url.Values) string {
	if form.Get("client_assertion_type") != "" {
		return ""
	}
	if id, _, ok := r.BasicAuth(); ok {
		id, err := url.QueryUnescape(id)
		if err != nil {
			return ""
		}
		return id
	}
	return form.Get("client_id")
}

// throttledHasher compares client secrets as next does, except that an
// Argon2id comparison for a locked client is refused without being made.
type throttledHasher struct{ fosite.Hasher }

func (h throttledHasher) Compare(ctx context.Context, hash, data []byte) error {
	check, _ := ctx.Value(secretCheckKey{}).(*secretCheck)
	if check == nil || !storage.ThrottledSecret(string(hash)) {
		return h.Hasher.Compare(ctx, hash, data)
	}
	if !check.peeked {
		check.peeked = true
		a, err := check.store.PeekAttempts(ctx, check.key)
		if err != nil {
			return err
		}
		check.refused, check.retryAfter = !a.Admitted, a.RetryAfter
	}
	if check.refused {
		return &clientThrottledError{check.retryAfter}
	}
	// One address gets no more Argon2id slots for client secrets than for
	// passwords, so a flood of guesses cannot slow everyone's sign-in.
	release, ok := hashShares.acquire(ctx, check.share, shareWait)
	if !ok {
		return storage.ErrBusy
	}
	defer release()
	err := h.Hasher.Compare(ctx, hash, data)
	if err != nil && !errors.Is(err, storage.ErrBusy) && ctx.Err() == nil {
		check.failed = true
	}
	return err
}
