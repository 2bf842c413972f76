package authz

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
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
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/storage"
)

// Signing keys. One current key signs ID tokens; `authz keys rotate` makes a
// new one current and keeps the old one published, for verification only,
// until every token it signed has expired (dex's model). The keys live in
// PostgreSQL, the private part sealed with the system secret, so every
// replica signs with the same key and publishes the same JWKS.
//
// A key's kid is its RFC 7638 thumbprint (SHA-256, base64url): a verifier
// can recompute it, two keys never share one, and on load the stored public
// key and the decrypted private key are both checked against it, so a row
// whose parts do not belong together is refused instead of signing tokens
// nobody can verify.

const (
	// DefaultSigningAlgorithm is the algorithm of the first key, the one
	// every OpenID Connect relying party must support.
	DefaultSigningAlgorithm = "RS256"
	// rsaKeyBits: 2048-bit RSA is what OpenID providers publish and every
	// verifier accepts, is good for 112-bit security past 2030 (NIST SP
	// 800-57), and keys are rotated, not kept for decades. 3072 would
	// triple the cost of every signature for no gain a rotating key needs.
	rsaKeyBits = 2048
	// keyCacheTTL is how long the keys read from the database are used
	// before they are read again, so a rotation made by another process is
	// picked up within it.
	keyCacheTTL = 30 * time.Second
	// unknownKIDRefresh is how often an unknown kid may make the keys be
	// read again before keyCacheTTL is up: another replica may sign with a
	// key this one has not read yet.
	unknownKIDRefresh = 5 * time.Second
	// sealInfo is the HKDF info for the key that seals private keys, so
	// that it is independent of every other use of the system secret.
	sealInfo = "authz signing-key encryption v1"
)

// SigningAlgorithms are the algorithms signing keys may have.
func SigningAlgorithms() []string { return []string{"RS256", "ES256"} }

// keyManager hands fosite the current signing key and serves the JWKS. It
// reads the keys from the database at most every keyCacheTTL.
type keyManager struct {
	store *storage.Store
	cfg   *Config
	log   *slog.Logger

	mu        sync.Mutex
	loadedAt  time.Time          // zero until the first load
	current   *josev3.JSONWebKey // private, for fosite
	published []publishedKey     // the current key first
	// fallbackUntil is set while current is not the database's current
	// key but the previous one (see loadLocked): when it stops being
	// published.
	fallbackUntil *time.Time
}

// publishedKey is a public key in the JWKS and how long it stays there.
type publishedKey struct {
	jwk       josev4.JSONWebKey
	expiresAt *time.Time // nil for the current key
}

func newKeyManager(store *storage.Store, cfg *Config, log *slog.Logger) *keyManager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &keyManager{store: store, cfg: cfg, log: log}
}

// ensure creates the first signing key when there is none, then loads the
// current key, so that a secret that cannot decrypt it stops the server at
// start-up. Replicas starting together each generate a key; one insert wins
// and the others use the winner's key.
func (m *keyManager) ensure(ctx context.Context) error {
	_, err := m.store.CurrentSigningKey(ctx)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		if len(m.cfg.Secrets) == 0 {
			return errors.New("create the first signing key: no system secret configured (AUTHZ_SECRETS)")
		}
		// Generated outside any transaction: RSA key generation takes long
		// enough that no lock should be held across it.
		k, err := newSigningKey(DefaultSigningAlgorithm, m.cfg.Secrets[0], m.cfg.now())
		if err != nil {
			return err
		}
		err = m.store.InsertFirstSigningKey(ctx, k)
		switch {
		case err == nil:
			m.log.Info("created the first signing key", "kid", k.KID, "alg", k.Algorithm)
		case errors.Is(err, storage.ErrAlreadyExists):
			m.log.Debug("another instance created the first signing key first")
		default:
			return err
		}
	case err != nil:
		return err
	}
	return m.load(ctx, true)
}

// signingKey returns the current private key, with its kid and algorithm,
// for fosite's JWT signer.
func (m *keyManager) signingKey(ctx context.Context) (*josev3.JSONWebKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	force := m.fallbackUntil != nil && !m.cfg.now().Before(*m.fallbackUntil)
	if err := m.loadLocked(ctx, force); err != nil {
		return nil, err
	}
	k := *m.current
	return &k, nil
}

// publicKeys returns the keys to publish now: public members only, each
// with kid, alg and use.
func (m *keyManager) publicKeys(ctx context.Context) (josev4.JSONWebKeySet, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(ctx, false); err != nil {
		return josev4.JSONWebKeySet{}, err
	}
	set := josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{}}
	for _, p := range m.publishedLocked() {
		set.Keys = append(set.Keys, p.jwk)
	}
	return set, nil
}

// verificationKey returns the published public key with this kid. An
// unknown kid makes the keys be read again (at most every
// unknownKIDRefresh), in case another replica signed with a key rotated in
// since they were last read.
func (m *keyManager) verificationKey(ctx context.Context, kid string) (*josev4.JSONWebKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(ctx, false); err != nil {
		return nil, err
	}
	find := func() *josev4.JSONWebKey {
		for _, p := range m.publishedLocked() {
			if p.jwk.KeyID == kid {
				k := p.jwk
				return &k
			}
		}
		return nil
	}
	if k := find(); k != nil {
		return k, nil
	}
	if now := m.cfg.now(); now.Sub(m.loadedAt) >= unknownKIDRefresh || now.Before(m.loadedAt) {
		if err := m.loadLocked(ctx, true); err != nil {
			return nil, err
		}
		if k := find(); k != nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("no published signing key has kid %q", kid)
}

// algorithms returns the algorithms of the published keys, the current
// key's first.
func (m *keyManager) algorithms(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(ctx, false); err != nil {
		return nil, err
	}
	var algs []string
	for _, p := range m.publishedLocked() {
		if !slices.Contains(algs, p.jwk.Algorithm) {
			algs = append(algs, p.jwk.Algorithm)
		}
	}
	return algs, nil
}

// serveJWKS serves the published keys (GET /.well-known/jwks.json).
func (m *keyManager) serveJWKS(w http.ResponseWriter, r *http.Request) {
	set, err := m.publicKeys(r.Context())
	var body []byte
	if err == nil {
		body, err = json.Marshal(set)
	}
	if err != nil {
		m.log.Error("serve JWKS", "err", err)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"server_error","error_description":"The signing keys cannot be read right now."}` + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Verifiers may cache the set briefly; a rotated-in key is published
	// within keyCacheTTL, and verifiers refetch on an unknown kid.
	w.Header().Set("Cache-Control", "public, max-age=120")
	_, _ = w.Write(append(body, '\n'))
}

// publishedLocked returns the keys still published at the clock's now: the
// cache is read at most every keyCacheTTL, but a rotated-out key leaves the
// JWKS on time.
func (m *keyManager) publishedLocked() []publishedKey {
	now := m.cfg.now()
	var out []publishedKey
	for _, p := range m.published {
		if p.expiresAt == nil || p.expiresAt.After(now) {
			out = append(out, p)
		}
	}
	return out
}

// load reads the keys from the database; unless force, only when the ones
// in memory are older than keyCacheTTL.
func (m *keyManager) load(ctx context.Context, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadLocked(ctx, force)
}

func (m *keyManager) loadLocked(ctx context.Context, force bool) error {
	now := m.cfg.now()
	if !force && m.current != nil && !now.Before(m.loadedAt) && now.Sub(m.loadedAt) < keyCacheTTL {
		return nil
	}
	rows, err := m.store.PublishedSigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("read signing keys: %w", err)
	}
	var (
		current    *josev3.JSONWebKey
		published  = make([]publishedKey, 0, len(rows))
		openErr    error
		previousAt *time.Time // when the key in memory stops being published
	)
	for _, row := range rows {
		pub, err := parsePublicJWK(row)
		if err != nil {
			return err
		}
		published = append(published, publishedKey{jwk: pub, expiresAt: row.ExpiresAt})
		if m.current != nil && m.current.KeyID == row.KID {
			previousAt = row.ExpiresAt
		}
		if row.RotatedAt != nil {
			continue
		}
		if m.current != nil && m.current.KeyID == row.KID {
			current = m.current // already decrypted
			continue
		}
		priv, err := openSigningKey(row, m.cfg.Secrets)
		if err != nil {
			openErr = err
			continue
		}
		current = &josev3.JSONWebKey{Key: priv, KeyID: row.KID, Algorithm: row.Algorithm, Use: "sig"}
		if m.current != nil {
			m.log.Info("signing with a new key", "kid", row.KID, "alg", row.Algorithm, "previous_kid", m.current.KeyID)
		}
	}
	var fallbackUntil *time.Time
	switch {
	case current != nil:
	case openErr != nil && m.current != nil && previousAt != nil:
		// A key rotated in that this instance cannot decrypt (rotated with
		// another AUTHZ_SECRETS): keep signing with the previous key while
		// it is published, so that the mistake is an error in the log
		// rather than an outage. The JWKS publishes both.
		m.log.Error("cannot use the current signing key; signing with the previous one while it is published",
			"err", openErr, "previous_kid", m.current.KeyID, "until", previousAt.Format(time.RFC3339))
		current, fallbackUntil = m.current, previousAt
	case openErr != nil:
		return openErr
	default:
		return errors.New("read signing keys: there is no current signing key (the server creates one at start-up; or run: authz keys rotate)")
	}
	m.current, m.published, m.loadedAt, m.fallbackUntil = current, published, now, fallbackUntil
	return nil
}

// RotateSigningKey makes a new key of algorithm alg (RS256 or ES256) the
// current one and returns its kid. The previous key stays published until
// every token it signed has expired: ID tokens, and access tokens should
// they ever be JWTs. When there is no key yet, the new one is the first.
// Running replicas start signing with the new key within keyCacheTTL.
func RotateSigningKey(ctx context.Context, store *storage.Store, cfg Config, alg string) (kid string, err error) {
	if len(cfg.Secrets) == 0 {
		return "", errors.New("rotate signing key: no system secret configured (AUTHZ_SECRETS)")
	}
	publish := cfg.IDTokenLifespan + cfg.AccessTokenLifespan
	if cfg.IDTokenLifespan <= 0 || cfg.AccessTokenLifespan <= 0 {
		// Zero would unpublish the old key at once and break every token
		// it signed; an unvalidated Config is the only way here.
		return "", errors.New("rotate signing key: the ID token and access token lifespans must be positive")
	}
	now := cfg.now()
	// Generated before the transaction, which then holds its lock only for
	// two short statements.
	next, err := newSigningKey(alg, cfg.Secrets[0], now)
	if err != nil {
		return "", err
	}
	retireUntil := now.Add(publish)
	// A first key being inserted concurrently can make both steps miss;
	// each miss means the other step will now succeed.
	for range 3 {
		err = store.RotateSigningKey(ctx, next, retireUntil)
		if !errors.Is(err, storage.ErrNotFound) {
			break
		}
		err = store.InsertFirstSigningKey(ctx, next)
		if !errors.Is(err, storage.ErrAlreadyExists) {
			break
		}
	}
	if err != nil {
		return "", err
	}
	return next.KID, nil
}

// SigningKeyInfo describes a signing key without any of its key material.
type SigningKeyInfo struct {
	KID       string `json:"kid"`
	Algorithm string `json:"alg"`
	// State is "current" (it signs), "published" (rotated out, still in the
	// JWKS for verification) or "expired" (no longer published; the janitor
	// deletes it).
	State     string     `json:"state"`
	CreatedAt time.Time  `json:"created_at"`
	RotatedAt *time.Time `json:"rotated_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// SigningKeys lists every stored signing key, the current one first, then
// newest first.
func SigningKeys(ctx context.Context, store *storage.Store) ([]SigningKeyInfo, error) {
	rows, err := store.ListSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]SigningKeyInfo, 0, len(rows))
	for _, k := range rows {
		state := "current"
		switch {
		case k.RotatedAt == nil:
		case k.ExpiresAt != nil && k.ExpiresAt.After(now):
			state = "published"
		default:
			state = "expired"
		}
		out = append(out, SigningKeyInfo{KID: k.KID, Algorithm: k.Algorithm, State: state,
			CreatedAt: k.CreatedAt, RotatedAt: k.RotatedAt, ExpiresAt: k.ExpiresAt})
	}
	return out, nil
}

// newSigningKey generates a key of algorithm alg and seals its private part
// with secret.
func newSigningKey(alg string, secret []byte, now time.Time) (*storage.SigningKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, rsaKeyBits)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
		if alg == "RS256" && k.Size()*8 >= 2048 {
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
