package authz

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/storage"
)

// Signing keys. Each signing algorithm (RS256, PS256, ES256, EdDSA) has
// its own key, and everything below holds for each algorithm on its own:
// one key of an algorithm signs at a time, and a client's ID tokens are
// signed by the key of the algorithm it registered
// (id_token_signed_response_alg, RS256 when it chose none). The server
// creates the first key of every algorithm at start-up. `authz keys rotate`
// adds a new key that every replica publishes as soon as it reads it, but
// that signs only from its activation time, KeyActivationDelay later: by
// then every replica has it in its JWKS, so no relying party is ever handed
// a token whose kid the JWKS it fetches lacks (OpenID Connect Core 10.1.1).
// The key it replaces signs until then and stays published, for
// verification only, until every token it signed has expired (dex's
// model). The keys live in PostgreSQL, the private part sealed with the
// system secret, so every replica signs with the same key and publishes the
// same JWKS.
//
// Which key signs is a matter of the clock and the stored times, not of
// when a replica last read them, so replicas agree without talking to each
// other: one that has not read the keys since a rotation signs with the old
// key, which is right until the new one activates, and it reads them again
// well before that. Nothing depends on a notification arriving.
//
// A key's kid is its RFC 7638 thumbprint (SHA-256, base64url): a verifier
// can recompute it, two keys never share one, and on load the stored public
// key and the decrypted private key are both checked against it, so a row
// whose parts do not belong together is refused instead of signing tokens
// nobody can verify.

const (
	// DefaultSigningAlgorithm signs for a client that chose no algorithm:
	// the one every OpenID Connect relying party must support.
	DefaultSigningAlgorithm = "RS256"
	// rsaKeyBits: 2048-bit RSA is what OpenID providers publish and every
	// verifier accepts, is good for 112-bit security past 2030 (NIST SP
	// 800-57), and keys are rotated, not kept for decades. 3072 would
	// triple the cost of every signature for no gain a rotating key needs.
	rsaKeyBits = 2048
	// keyCacheTTL is how long the keys read from the database are used
	// before they are read again, so a rotation made by another process is
	// published within it.
	keyCacheTTL = 30 * time.Second
	// jwksMaxAge is how long verifiers may cache the JWKS (Cache-Control).
	jwksMaxAge = 120 * time.Second
	// unknownKIDRefresh is how often an unknown kid may make the keys be
	// read again before keyCacheTTL is up: another replica may sign with a
	// key this one has not read yet (with a clock well ahead of ours).
	unknownKIDRefresh = 5 * time.Second
	// keyRetryInterval is how long after a failed read the keys in memory
	// are used without trying the database again, so that an outage costs
	// one slow read per interval, not one per request.
	keyRetryInterval = 5 * time.Second
	// keyReadTimeout bounds a read of the keys when those in memory can
	// answer instead.
	keyReadTimeout = 2 * time.Second
	// sealInfo is the HKDF info for the key that seals private keys, so
	// that it is independent of every other use of the system secret.
	sealInfo = "authz signing-key encryption v1"
)

// KeyActivationDelay is how long a rotated-in key is published before it
// signs: keyCacheTTL for every replica to read it, jwksMaxAge for every
// verifier's copy of the JWKS from before the rotation to go stale (so even
// one that does not refetch on an unknown kid verifies the new key's
// tokens), and keyCacheTTL more for clocks that disagree.
const KeyActivationDelay = keyCacheTTL + jwksMaxAge + keyCacheTTL

// SigningAlgorithms are the algorithms signing keys have, each with its own
// key: those a client may register for its ID tokens (supportedIDTokenAlgs).
func SigningAlgorithms() []string { return []string{"RS256", "PS256", "ES256", "EdDSA"} }

// signingAlgorithm is the algorithm that signs for a caller asking for alg:
// the default when it asks for none, an error when it asks for one
// without keys.
func signingAlgorithm(alg string) (string, error) {
	if alg == "" {
		return DefaultSigningAlgorithm, nil
	}
	if !slices.Contains(SigningAlgorithms(), alg) {
		return "", fmt.Errorf("signing algorithm %q is not supported: use one of %s", alg, strings.Join(SigningAlgorithms(), ", "))
	}
	return alg, nil
}

// keyManager hands fosite the signing key of each algorithm and serves the
// JWKS. It reads the
// keys from the database at most every keyCacheTTL, and answers from the
// keys it read last while the database cannot be read: every key is
// published long before it signs, so those are still right.
type keyManager struct {
	store *storage.Store
	cfg   *Config
	log   *slog.Logger

	// reading makes reads of the database take turns; a caller that has
	// keys in memory does not wait for another's read.
	reading sync.Mutex

	mu       sync.Mutex
	set      *keySet   // the keys read last; nil until a read succeeds
	readErr  error     // why the last read failed; nil after a good one
	failedAt time.Time // when it failed
	warnedAt time.Time // when a failed read was last logged
	// signers are the keys last handed to fosite, by algorithm: the one
	// to fall back on when the key that should sign cannot be decrypted.
	signers          map[string]*josev3.JSONWebKey
	fallbackLoggedAt map[string]time.Time // by algorithm
}

// keySet is the keys as read from the database at loadedAt. It is not
// changed once made.
type keySet struct {
	loadedAt time.Time
	keys     []*setKey // the newest first, then newest first
}

// setKey is one key of a set.
type setKey struct {
	pub         josev4.JSONWebKey // public members only
	activatesAt time.Time
	rotatedAt   *time.Time // when it stops signing; nil for the newest key
	expiresAt   *time.Time // when it leaves the JWKS; nil for the newest key
	// private is the decrypted key of a key that signs now or will;
	// openErr says why it is nil for such a key.
	private *josev3.JSONWebKey
	openErr error
}

func (k *setKey) publishedAt(t time.Time) bool { return k.expiresAt == nil || k.expiresAt.After(t) }

// retiredAt reports whether the key signs no more at t, or never will: a
// key replaced before it activated (rotated twice in a row) may have an
// empty interval.
func (k *setKey) retiredAt(t time.Time) bool {
	return k.rotatedAt != nil && (!t.Before(*k.rotatedAt) || !k.rotatedAt.After(k.activatesAt))
}

// published returns the keys in the JWKS at t: a rotated-out key leaves
// on time however long ago the set was read.
func (s *keySet) published(t time.Time) []*setKey {
	var out []*setKey
	for _, k := range s.keys {
		if k.publishedAt(t) {
			out = append(out, k)
		}
	}
	return out
}

// find returns the published key with this kid at t, or nil.
func (s *keySet) find(kid string, t time.Time) *setKey {
	for _, k := range s.published(t) {
		if k.pub.KeyID == kid {
			return k
		}
	}
	return nil
}

// signerAt returns the key of alg that signs at t: of those activated by
// then, the one activated last (an algorithm's keys sign one after the
// other). A clock behind the one that made the first key finds none
// activated yet and gets the earliest: nobody signs with anything older.
func (s *keySet) signerAt(alg string, t time.Time) *setKey {
	var last, earliest *setKey
	for _, k := range s.published(t) {
		if k.pub.Algorithm != alg {
			continue
		}
		if !k.activatesAt.After(t) && (last == nil || k.activatesAt.After(last.activatesAt)) {
			last = k
		}
		if earliest == nil || k.activatesAt.Before(earliest.activatesAt) {
			earliest = k
		}
	}
	if last != nil {
		return last
	}
	return earliest
}

func newKeyManager(store *storage.Store, cfg *Config, log *slog.Logger) *keyManager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &keyManager{store: store, cfg: cfg, log: log,
		signers: map[string]*josev3.JSONWebKey{}, fallbackLoggedAt: map[string]time.Time{}}
}

// ensure creates the first key of every algorithm that has none, then
// reads the keys, so that a secret that cannot decrypt a key that signs, or
// one that will, stops the server at start-up. Replicas starting together
// each generate the keys missing; one insert per algorithm wins and the
// others use the winner's key. Only a missing key is generated, so a
// restart costs no RSA key generation.
func (m *keyManager) ensure(ctx context.Context) error {
	missing, err := m.missingAlgorithms(ctx)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		if err := m.createFirstKeys(ctx, missing); err != nil {
			return err
		}
	}
	set, err := m.keys(ctx, 0)
	if err != nil {
		return err
	}
	for _, k := range set.keys {
		if k.openErr != nil {
			return k.openErr
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.now()
	for _, alg := range SigningAlgorithms() {
		if _, err := m.signerLocked(set, alg, now); err != nil {
			return err
		}
	}
	return nil
}

// missingAlgorithms returns the algorithms without a newest key.
func (m *keyManager) missingAlgorithms(ctx context.Context) ([]string, error) {
	rows, err := m.store.PublishedSigningKeys(ctx, m.cfg.now())
	if err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	var missing []string
	for _, alg := range SigningAlgorithms() {
		if !slices.ContainsFunc(rows, func(r *storage.SigningKey) bool { return r.Algorithm == alg && r.RotatedAt == nil }) {
			missing = append(missing, alg)
		}
	}
	return missing, nil
}

// createFirstKeys stores a first key of each of algs. They are generated
// outside any transaction (RSA key generation takes long enough that no
// lock should be held across it), and sign at once: no replica can have
// read keys without them, since every one runs ensure before it serves.
func (m *keyManager) createFirstKeys(ctx context.Context, algs []string) error {
	if len(m.cfg.Secrets) == 0 {
		return errors.New("create the first signing keys: no system secret configured (AUTHZ_SECRETS)")
	}
	keys, err := newSigningKeys(algs, m.cfg.Secrets[0], m.cfg.now())
	if err != nil {
		return err
	}
	for _, k := range keys {
		err := m.store.InsertFirstSigningKey(ctx, k)
		switch {
		case err == nil:
			m.log.Info("created the first signing key of its algorithm", "kid", k.KID, "alg", k.Algorithm)
		case errors.Is(err, storage.ErrAlreadyExists):
			m.log.Debug("another instance created the first signing key first", "alg", k.Algorithm)
		default:
			return err
		}
	}
	return nil
}

// signingKey returns the private key of algorithm alg ("" for the default)
// that signs at the clock's now, with its kid and algorithm, for fosite's
// JWT signer. While the keys cannot be read, those read last still sign
// for KeyActivationDelay: no key rotated in since can have started signing
// before then.
func (m *keyManager) signingKey(ctx context.Context, alg string) (*josev3.JSONWebKey, error) {
	alg, err := signingAlgorithm(alg)
	if err != nil {
		return nil, err
	}
	set, err := m.keys(ctx, keyCacheTTL)
	if err != nil {
		return nil, err
	}
	now := m.cfg.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readErr != nil && since(set.loadedAt, now) >= KeyActivationDelay {
		return nil, fmt.Errorf("sign: the signing keys were last read at %s: %w", set.loadedAt.Format(time.RFC3339), m.readErr)
	}
	k, err := m.signerLocked(set, alg, now)
	if err != nil {
		return nil, err
	}
	c := *k
	return &c, nil
}

// signerAge is how long the longest-signing of the keys that sign at now
// has been signing, from the keys in memory (the metrics read it; they
// never query the database): what an alert on an overdue rotation wants,
// whichever algorithm is overdue. False until the keys have been read.
func (m *keyManager) signerAge(now time.Time) (time.Duration, bool) {
	m.mu.Lock()
	set := m.set
	m.mu.Unlock()
	if set == nil {
		return 0, false
	}
	var age time.Duration
	found := false
	for _, alg := range SigningAlgorithms() {
		if k := set.signerAt(alg, now); k != nil {
			age, found = max(age, now.Sub(k.activatesAt)), true
		}
	}
	return age, found
}

// signerLocked returns the private key of alg that signs at now. When that
// key cannot be decrypted (rotated in with another AUTHZ_SECRETS), the key
// of alg this instance signed with before keeps signing while it is
// published, so that the mistake is an error in the log rather than an
// outage; the JWKS publishes both.
func (m *keyManager) signerLocked(set *keySet, alg string, now time.Time) (*josev3.JSONWebKey, error) {
	k := set.signerAt(alg, now)
	if k == nil {
		return nil, fmt.Errorf("read signing keys: there is no %s signing key (the server creates one at start-up; or run: authz keys rotate --alg %s)", alg, alg)
	}
	prev := m.signers[alg]
	if k.private != nil {
		if prev != nil && prev.KeyID != k.pub.KeyID {
			m.log.Info("signing with a new key", "kid", k.pub.KeyID, "alg", alg, "previous_kid", prev.KeyID)
		}
		m.signers[alg] = k.private
		return k.private, nil
	}
	openErr := k.openErr
	if openErr == nil { // read as retired, signing now: the clock went back
		openErr = fmt.Errorf("signing key %s: its private key was not read", k.pub.KeyID)
	}
	if prev != nil && prev.KeyID != k.pub.KeyID {
		if published := set.find(prev.KeyID, now); published != nil {
			if since(m.fallbackLoggedAt[alg], now) >= keyCacheTTL {
				m.fallbackLoggedAt[alg] = now
				m.log.Error("cannot use the current signing key; signing with the previous one while it is published",
					"err", openErr, "alg", alg, "previous_kid", prev.KeyID, "until", timeOrNever(published.expiresAt))
			}
			return prev, nil
		}
	}
	return nil, openErr
}

// publicKeys returns the keys to publish now: public members only, each
// with kid, alg and use. A key that will sign is published before it does.
func (m *keyManager) publicKeys(ctx context.Context) (josev4.JSONWebKeySet, error) {
	set, err := m.keys(ctx, keyCacheTTL)
	if err != nil {
		return josev4.JSONWebKeySet{}, err
	}
	out := josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{}}
	for _, k := range set.published(m.cfg.now()) {
		out.Keys = append(out.Keys, k.pub)
	}
	return out, nil
}

// verificationKey returns the published public key with this kid. An
// unknown kid makes the keys be read again (at most every
// unknownKIDRefresh), in case another replica signed with a key rotated in
// since they were last read.
func (m *keyManager) verificationKey(ctx context.Context, kid string) (*josev4.JSONWebKey, error) {
	for _, maxAge := range []time.Duration{keyCacheTTL, unknownKIDRefresh} {
		set, err := m.keys(ctx, maxAge)
		if err != nil {
			return nil, err
		}
		if k := set.find(kid, m.cfg.now()); k != nil {
			pub := k.pub
			return &pub, nil
		}
	}
	return nil, fmt.Errorf("no published signing key has kid %q", kid)
}

// serveJWKS serves the published keys (GET /.well-known/jwks.json), from
// memory while the database cannot be read.
func (m *keyManager) serveJWKS(w http.ResponseWriter, r *http.Request) {
	set, err := m.publicKeys(r.Context())
	var body []byte
	if err == nil {
		body, err = json.Marshal(set)
	}
	if err != nil {
		m.log.Error("serve JWKS", "err", err)
		writeKeysError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Verifiers may cache the set: a rotated-in key is published
	// KeyActivationDelay, longer than this, before it signs.
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwksMaxAge/time.Second)))
	_, _ = w.Write(append(body, '\n'))
}

// writeKeysError answers a request that needed the signing keys when
// there were none to answer with: 503 temporarily_unavailable when the
// database could not be read and nothing had been read before, 500 for
// anything else (a stored key that is not what it should be).
func writeKeysError(w http.ResponseWriter, err error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if errors.Is(err, storage.ErrUnavailable) {
		h.Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"temporarily_unavailable","error_description":"The signing keys cannot be read right now. Retry later."}` + "\n"))
		return
	}
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(`{"error":"server_error","error_description":"The signing keys cannot be read right now."}` + "\n"))
}

// keys returns the keys, read again from the database when those in memory
// are older than maxAge. When the read fails, the keys read before are
// returned, if any: they are still right to publish and to verify with.
// A caller that asks for fresher keys than the cache keeps (or has none)
// waits for a read under way; others use memory meanwhile.
func (m *keyManager) keys(ctx context.Context, maxAge time.Duration) (*keySet, error) {
	m.mu.Lock()
	set, due := m.set, m.dueLocked(m.cfg.now(), maxAge)
	m.mu.Unlock()
	if !due {
		return set, nil
	}
	if set == nil || maxAge < keyCacheTTL {
		m.reading.Lock()
	} else if !m.reading.TryLock() {
		return set, nil
	}
	defer m.reading.Unlock()
	now := m.cfg.now()
	m.mu.Lock()
	set, due = m.set, m.dueLocked(now, maxAge)
	m.mu.Unlock()
	if !due {
		return set, nil // read by the caller this one waited for
	}
	return m.read(ctx, now, set)
}

// dueLocked reports whether the keys should be read from the database: none
// were read yet, or those read are older than maxAge and no read failed in
// the last keyRetryInterval.
func (m *keyManager) dueLocked(now time.Time, maxAge time.Duration) bool {
	if m.set == nil {
		return true
	}
	if m.readErr != nil && since(m.failedAt, now) < keyRetryInterval {
		return false
	}
	return since(m.set.loadedAt, now) >= maxAge
}

// read reads the keys from the database at now. Its queries are not the
// request's: a failure that memory covers must not fail the request.
func (m *keyManager) read(ctx context.Context, now time.Time, prev *keySet) (*keySet, error) {
	rctx := storage.WithoutFaultRecording(ctx)
	if prev != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(rctx, keyReadTimeout)
		defer cancel()
	}
	rows, err := m.store.PublishedSigningKeys(rctx, now)
	if err != nil {
		return m.readFailed(ctx, now, fmt.Errorf("read signing keys: %w", err))
	}
	set, err := m.newKeySet(rows, now, prev)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.readErr != nil {
		m.log.Info("read the signing keys again", "failed_at", m.failedAt.Format(time.RFC3339))
	}
	m.set, m.readErr, m.failedAt = set, nil, time.Time{}
	return set, nil
}

// readFailed answers from memory when it can, and logs the failure at most
// once per keyCacheTTL.
func (m *keyManager) readFailed(ctx context.Context, now time.Time, err error) (*keySet, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.set == nil {
		return nil, err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return m.set, nil // the caller went away: no news of the database
	}
	m.readErr, m.failedAt = err, now
	if since(m.warnedAt, now) >= keyCacheTTL {
		m.warnedAt = now
		m.log.Warn("cannot read the signing keys; serving those read before", "err", err,
			"read_at", m.set.loadedAt.Format(time.RFC3339))
	}
	return m.set, nil
}

// newKeySet makes a set of rows read at now. Keys that sign now or will
// are decrypted, or taken decrypted from prev; one that cannot be is kept
// with its error, which matters when it is to sign.
func (m *keyManager) newKeySet(rows []*storage.SigningKey, now time.Time, prev *keySet) (*keySet, error) {
	set := &keySet{loadedAt: now, keys: make([]*setKey, 0, len(rows))}
	for _, row := range rows {
		pub, err := parsePublicJWK(row)
		if err != nil {
			return nil, err
		}
		k := &setKey{pub: pub, activatesAt: row.ActivatesAt, rotatedAt: row.RotatedAt, expiresAt: row.ExpiresAt}
		if !k.retiredAt(now) {
			k.private, k.openErr = m.open(row, prev)
			if k.openErr != nil && k.activatesAt.After(now) {
				m.log.Error("a signing key rotated in cannot be decrypted: when it is to sign, this server keeps signing with the key before it while that is published",
					"kid", row.KID, "activates_at", row.ActivatesAt.Format(time.RFC3339), "err", k.openErr)
			}
		}
		set.keys = append(set.keys, k)
	}
	return set, nil
}

// open returns row's private key, as prev has it or decrypted.
func (m *keyManager) open(row *storage.SigningKey, prev *keySet) (*josev3.JSONWebKey, error) {
	if prev != nil {
		for _, k := range prev.keys {
			if k.pub.KeyID == row.KID && k.private != nil {
				return k.private, nil
			}
		}
	}
	priv, err := openSigningKey(row, m.cfg.Secrets)
	if err != nil {
		return nil, err
	}
	return &josev3.JSONWebKey{Key: priv, KeyID: row.KID, Algorithm: row.Algorithm, Use: "sig"}, nil
}

// since is how long before now t was; a clock set back makes it long ago.
func since(t, now time.Time) time.Duration {
	if now.Before(t) {
		return math.MaxInt64
	}
	return now.Sub(t)
}

func timeOrNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// KeyRotation is what RotateSigningKey did.
type KeyRotation struct {
	// Key is the new key; its ActivatesAt says when it starts signing.
	Key SigningKeyInfo
	// Previous is the key that signs until then and stays published until
	// its ExpiresAt; nil when the new key is the first.
	Previous *SigningKeyInfo
}

// RotateSigningKey adds a new key of algorithm alg; the keys of the other
// algorithms are left as they are. Every running replica publishes it
// within keyCacheTTL, and it starts signing KeyActivationDelay from now;
// the key of alg it replaces signs until then and stays published until
// every token it signed has expired: ID tokens and JWT access tokens. When
// alg has no key yet, the new one is its first and signs at once.
func RotateSigningKey(ctx context.Context, store *storage.Store, cfg Config, alg string) (KeyRotation, error) {
	if !slices.Contains(SigningAlgorithms(), alg) {
		return KeyRotation{}, fmt.Errorf("rotate signing key: signing algorithm %q is not supported: use one of %s", alg, strings.Join(SigningAlgorithms(), ", "))
	}
	rs, err := RotateSigningKeys(ctx, store, cfg, []string{alg})
	if err != nil {
		return KeyRotation{}, err
	}
	return rs[0], nil
}

// RotateSigningKeys rotates the key of each of algs, as RotateSigningKey
// does, in that order. The keys are all generated first, so the rotations
// follow each other within milliseconds. On an error it returns the
// rotations done before it.
func RotateSigningKeys(ctx context.Context, store *storage.Store, cfg Config, algs []string) ([]KeyRotation, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("rotate signing key: no system secret configured (AUTHZ_SECRETS)")
	}
	if cfg.IDTokenLifespan <= 0 || cfg.AccessTokenLifespan <= 0 {
		// Zero would unpublish the old key at once and break every token
		// it signed; an unvalidated Config is the only way here.
		return nil, errors.New("rotate signing key: the ID token and access token lifespans must be positive")
	}
	now := cfg.now()
	// A rotated-out key stays published until every token it signed has
	// expired: the server's ID token and access token lifespans, or a
	// client's own when longer.
	publish := cfg.IDTokenLifespan + cfg.AccessTokenLifespan
	longest, err := store.LongestClientTokenLifespan(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotate signing key: %w", err)
	}
	publish = max(publish, longest)
	// Generated before the transactions, which then hold their locks
	// only for a few short statements.
	keys, err := newSigningKeys(algs, cfg.Secrets[0], now)
	if err != nil {
		return nil, fmt.Errorf("rotate signing key: %w", err)
	}
	out := make([]KeyRotation, 0, len(keys))
	for _, next := range keys {
		r, err := rotateSigningKey(ctx, store, publish, next, now)
		if err != nil {
			return out, fmt.Errorf("rotate the %s signing key: %w", next.Algorithm, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// rotateSigningKey makes next the newest key of its algorithm, activating
// KeyActivationDelay after now, or its first key, active at once.
func rotateSigningKey(ctx context.Context, store *storage.Store, publish time.Duration, next *storage.SigningKey, now time.Time) (KeyRotation, error) {
	var (
		previous *storage.SigningKey
		err      error
	)
	// A first key being inserted concurrently can make both steps miss;
	// each miss means the other step will now succeed.
	for range 3 {
		next.ActivatesAt = now.Add(KeyActivationDelay)
		previous, err = store.RotateSigningKey(ctx, next, publish)
		if !errors.Is(err, storage.ErrNotFound) {
			break
		}
		next.ActivatesAt = time.Time{} // the first key: at its creation
		err = store.InsertFirstSigningKey(ctx, next)
		if !errors.Is(err, storage.ErrAlreadyExists) {
			break
		}
	}
	if err != nil {
		return KeyRotation{}, err
	}
	out := KeyRotation{Key: keyInfo(next, now)}
	if previous != nil {
		p := keyInfo(previous, now)
		out.Previous = &p
	}
	return out, nil
}

// SigningKeyInfo describes a signing key without any of its key material.
type SigningKeyInfo struct {
	KID       string `json:"kid"`
	Algorithm string `json:"alg"`
	// State is "next" (published, signs from ActivatesAt), "current" (it
	// signs), "published" (rotated out, still in the JWKS for
	// verification) or "expired" (no longer published; the janitor
	// deletes it).
	State       string    `json:"state"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	// RotatedAt is when the key stops signing, maybe still ahead.
	RotatedAt *time.Time `json:"rotated_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// SigningKeys lists every stored signing key, the newest first, then
// newest first.
func SigningKeys(ctx context.Context, store *storage.Store) ([]SigningKeyInfo, error) {
	rows, err := store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]SigningKeyInfo, 0, len(rows))
	for _, k := range rows {
		out = append(out, keyInfo(k, now))
	}
	return out, nil
}

func keyInfo(k *storage.SigningKey, now time.Time) SigningKeyInfo {
	state := "current"
	switch {
	case k.ActivatesAt.After(now):
		state = "next"
	case k.RotatedAt == nil || k.RotatedAt.After(now):
	case k.ExpiresAt != nil && k.ExpiresAt.After(now):
		state = "published"
	default:
		state = "expired"
	}
	return SigningKeyInfo{KID: k.KID, Algorithm: k.Algorithm, State: state, CreatedAt: k.CreatedAt,
		ActivatesAt: k.ActivatesAt, RotatedAt: k.RotatedAt, ExpiresAt: k.ExpiresAt}
}

// newSigningKeys generates a key of each of algs, sealed with secret, at
// the same time: two RSA keys take the time of one on two cores.
func newSigningKeys(algs []string, secret []byte, now time.Time) ([]*storage.SigningKey, error) {
	keys := make([]*storage.SigningKey, len(algs))
	errs := make([]error, len(algs))
	var wg sync.WaitGroup
	for i, alg := range algs {
		wg.Go(func() { keys[i], errs[i] = newSigningKey(alg, secret, now) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

// newSigningKey generates a key of algorithm alg and seals its private part
// with secret. RS256 and PS256 each get their own RSA key: one key is
// never used with two algorithms.
func newSigningKey(alg string, secret []byte, now time.Time) (*storage.SigningKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, rsaKeyBits)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("signing algorithm %q is not supported: use one of %s", alg, strings.Join(SigningAlgorithms(), ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s signing key: %w", alg, err)
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	public, err := json.Marshal(josev4.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		return nil, fmt.Errorf("encode signing key %s: %w", kid, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key %s: %w", kid, err)
	}
	defer clear(der)
	sealed, fingerprint, err := seal(secret, kid, der)
	if err != nil {
		return nil, err
	}
	return &storage.SigningKey{KID: kid, Algorithm: alg, PublicJWK: public, PrivateKey: sealed,
		SecretFingerprint: fingerprint, CreatedAt: now.UTC()}, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of a public key, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := josev4.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("signing key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// parsePublicJWK reads a stored public key and checks that it is public, of
// the row's algorithm, and that the row's kid is its thumbprint.
func parsePublicJWK(row *storage.SigningKey) (josev4.JSONWebKey, error) {
	var jwk josev4.JSONWebKey
	if err := json.Unmarshal(row.PublicJWK, &jwk); err != nil {
		return jwk, fmt.Errorf("signing key %s: stored public key: %w", row.KID, err)
	}
	// Whatever is stored, only public members leave this function.
	pub := jwk.Public()
	if err := checkKeyType(row.Algorithm, pub.Key); err != nil {
		return jwk, fmt.Errorf("signing key %s: stored public key: %w", row.KID, err)
	}
	if tp, err := thumbprint(pub.Key); err != nil || tp != row.KID {
		return jwk, fmt.Errorf("signing key %s: stored public key does not match the kid", row.KID)
	}
	return josev4.JSONWebKey{Key: pub.Key, KeyID: row.KID, Algorithm: row.Algorithm, Use: "sig"}, nil
}

// checkKeyType reports whether key (public or private) is usable with alg.
func checkKeyType(alg string, key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if (alg == "RS256" || alg == "PS256") && k.Size()*8 >= 2048 {
			return nil
		}
	case *rsa.PrivateKey:
		return checkKeyType(alg, &k.PublicKey)
	case *ecdsa.PublicKey:
		if alg == "ES256" && k.Curve == elliptic.P256() {
			return nil
		}
	case *ecdsa.PrivateKey:
		return checkKeyType(alg, &k.PublicKey)
	case ed25519.PublicKey:
		if alg == "EdDSA" && len(k) == ed25519.PublicKeySize {
			return nil
		}
	case ed25519.PrivateKey:
		if len(k) == ed25519.PrivateKeySize {
			return checkKeyType(alg, k.Public())
		}
	}
	return fmt.Errorf("a %T is not a key for %s", key, alg)
}

// openSigningKey decrypts a stored private key with the system secret that
// sealed it: the one whose fingerprint the row names first, then the others.
func openSigningKey(row *storage.SigningKey, secrets [][]byte) (crypto.Signer, error) {
	type candidate struct {
		aead cipher.AEAD
		fp   string
	}
	var matching, others []candidate
	for _, s := range secrets {
		aead, fp, err := sealer(s)
		if err != nil {
			return nil, err
		}
		if fp == row.SecretFingerprint {
			matching = append(matching, candidate{aead, fp})
		} else {
			others = append(others, candidate{aead, fp})
		}
	}
	var der []byte
	for _, c := range append(matching, others...) {
		if plain, err := c.aead.Open(nil, nil, row.PrivateKey, []byte(row.KID)); err == nil {
			der = plain
			break
		}
	}
	if der == nil {
		if len(matching) > 0 {
			return nil, fmt.Errorf("signing key %s: its private key does not decrypt with the secret that sealed it (fingerprint %s): the stored row was altered or copied from another key",
				row.KID, row.SecretFingerprint)
		}
		return nil, fmt.Errorf("signing key %s: no secret in AUTHZ_SECRETS decrypts its private key; it was sealed with the secret whose fingerprint is %s: add that secret back to AUTHZ_SECRETS (after the new one), or rotate the key with: authz keys rotate",
			row.KID, row.SecretFingerprint)
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: decrypted private key: %w", row.KID, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: decrypted private key is a %T", row.KID, key)
	}
	if err := checkKeyType(row.Algorithm, signer); err != nil {
		return nil, fmt.Errorf("signing key %s: decrypted private key: %w", row.KID, err)
	}
	if tp, err := thumbprint(signer.Public()); err != nil || tp != row.KID {
		return nil, fmt.Errorf("signing key %s: decrypted private key does not match the kid", row.KID)
	}
	return signer, nil
}

// seal encrypts a private key with AES-256-GCM under a key derived from
// secret, with the kid as additional data so that the ciphertext is only
// good in its own row. It returns nonce || ciphertext || tag and the
// secret's fingerprint.
func seal(secret []byte, kid string, plaintext []byte) (sealed []byte, fingerprint string, err error) {
	aead, fp, err := sealer(secret)
	if err != nil {
		return nil, "", err
	}
	return aead.Seal(nil, nil, plaintext, []byte(kid)), fp, nil
}

// sealer derives the sealing key from a system secret (HKDF-SHA256, no salt:
// the secret is already uniformly random enough, and the info string keeps
// the key apart from fosite's use of the same secret) and returns its AEAD
// and fingerprint: the first 8 hex digits of the SHA-256 of the derived key,
// which names the secret without revealing anything usable about it.
func sealer(secret []byte) (cipher.AEAD, string, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, sealInfo, 32)
	if err != nil {
		return nil, "", fmt.Errorf("derive signing-key encryption key: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", fmt.Errorf("signing-key encryption: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, "", fmt.Errorf("signing-key encryption: %w", err)
	}
	sum := sha256.Sum256(key)
	return aead, hex.EncodeToString(sum[:4]), nil
}
