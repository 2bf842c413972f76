package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// These tests run in the authz_test package's binary, whose TestMain is
// pgtest.Main.

var (
	keySecretOld   = []byte("old-secret-old-secret-old-secret-0123456789")
	keySecretNew   = []byte("new-secret-new-secret-new-secret-0123456789")
	keySecretOther = []byte("unrelated-unrelated-unrelated-unrelated-0123")
)

// keyClock is a clock that only moves when told.
type keyClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *keyClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *keyClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// keyEnv is a database with a clock, on which key managers are made.
type keyEnv struct {
	t     *testing.T
	pool  *pgxpool.Pool
	store *storage.Store
	clock *keyClock
}

func newKeyEnv(t *testing.T) *keyEnv {
	t.Helper()
	pool, err := storage.NewPool(t.Context(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	clock := &keyClock{now: time.Now().UTC().Truncate(time.Second)}
	return &keyEnv{t: t, pool: pool, store: storage.New(pool, storage.WithClock(clock.Now)), clock: clock}
}

func (e *keyEnv) config(secrets ...[]byte) *Config {
	return &Config{
		Secrets:             secrets,
		IDTokenLifespan:     time.Hour,
		AccessTokenLifespan: 30 * time.Minute,
		Now:                 e.clock.Now,
	}
}

// manager returns a fresh key manager (nothing cached) using secrets.
func (e *keyEnv) manager(secrets ...[]byte) *keyManager {
	return newKeyManager(e.store, e.config(secrets...), nil)
}

// ensured returns a fresh manager on which ensure has run.
func (e *keyEnv) ensured(secrets ...[]byte) *keyManager {
	e.t.Helper()
	m := e.manager(secrets...)
	if err := m.ensure(e.t.Context()); err != nil {
		e.t.Fatalf("ensure: %v", err)
	}
	return m
}

func (e *keyEnv) rotate(alg string, secrets ...[]byte) string {
	e.t.Helper()
	r, err := RotateSigningKey(e.t.Context(), e.store, *e.config(secrets...), alg)
	if err != nil {
		e.t.Fatalf("RotateSigningKey(%s): %v", alg, err)
	}
	return r.Key.KID
}

func (e *keyEnv) countKeys() int {
	e.t.Helper()
	all, err := e.store.ListSigningKeys(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(all)
}

// signingKID is the kid of the key that signs for a caller asking for no
// algorithm: an RS256 key.
func signingKID(t *testing.T, m *keyManager) string {
	t.Helper()
	return signingKIDOf(t, m, "")
}

func signingKIDOf(t *testing.T, m *keyManager, alg string) string {
	t.Helper()
	k, err := m.signingKey(t.Context(), alg)
	if err != nil {
		t.Fatalf("signingKey(%q): %v", alg, err)
	}
	return k.KeyID
}

// publishedKIDs lists the published keys of alg, or all of them for "".
func publishedKIDs(t *testing.T, m *keyManager, alg string) []string {
	t.Helper()
	set, err := m.publicKeys(t.Context())
	if err != nil {
		t.Fatalf("publicKeys: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		if alg == "" || k.Algorithm == alg {
			kids = append(kids, k.KeyID)
		}
	}
	return kids
}

func wantErrorContaining(t *testing.T, what string, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, wants)
		return
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not contain %q", what, err, w)
		}
	}
}

// TestKeyEnsureCreatesOneKey: ensure creates one key per algorithm, once,
// of the right type, active at once; the default algorithm is RS256.
func TestKeyEnsureCreatesOneKey(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	m := e.ensured(keySecretOld)
	if err := m.ensure(t.Context()); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	e.ensured(keySecretOld) // a restarted process
	if n := e.countKeys(); n != len(SigningAlgorithms()) {
		t.Fatalf("%d keys after ensuring three times, want one per algorithm (%d)", n, len(SigningAlgorithms()))
	}
	if !slices.Equal(SigningAlgorithms(), supportedIDTokenAlgs) {
		t.Errorf("keys are made for %v, clients may register %v", SigningAlgorithms(), supportedIDTokenAlgs)
	}
	if got, want := signingKID(t, m), signingKIDOf(t, m, "RS256"); got != want {
		t.Errorf("with no algorithm the manager signs with %s, want the RS256 key %s", got, want)
	}
	if _, err := m.signingKey(t.Context(), "HS256"); err == nil {
		t.Error("signingKey(HS256): no error")
	}
	for _, alg := range SigningAlgorithms() {
		k, err := m.signingKey(t.Context(), alg)
		if err != nil {
			t.Fatal(err)
		}
		if k.Algorithm != alg || k.Use != "sig" || k.KeyID == "" || checkKeyType(alg, k.Key) != nil {
			t.Errorf("first %s key: %T, alg %q, use %q, kid %q; want a %s signing key with a kid", alg, k.Key, k.Algorithm, k.Use, k.KeyID, alg)
		}
		cur, err := e.store.NewestSigningKey(t.Context(), alg)
		if err != nil {
			t.Fatal(err)
		}
		if cur.KID != k.KeyID || !cur.ActivatesAt.Equal(cur.CreatedAt) {
			t.Errorf("manager signs %s with %s, the database's newest key is %s, activating at %v (created %v): want the one key, active at once",
				alg, k.KeyID, cur.KID, cur.ActivatesAt, cur.CreatedAt)
		}
		if priv, ok := k.Key.(*rsa.PrivateKey); ok {
			if priv.N.BitLen() != rsaKeyBits {
				t.Errorf("%s key of %d bits, want %d", alg, priv.N.BitLen(), rsaKeyBits)
			}
			if bytes.Contains(cur.PrivateKey, priv.D.Bytes()) {
				t.Errorf("%s: the private exponent is stored in the clear", alg)
			}
		}
		if priv, ok := k.Key.(ed25519.PrivateKey); ok && bytes.Contains(cur.PrivateKey, priv.Seed()) {
			t.Errorf("%s: the private key is stored in the clear", alg)
		}
	}
}

func TestKeyEnsureConcurrent(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	const n = 5
	managers := make([]*keyManager, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range managers {
		managers[i] = e.manager(keySecretOld)
		wg.Go(func() {
			<-start
			errs[i] = managers[i].ensure(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("manager %d: ensure: %v", i, err)
		}
	}
	if n := e.countKeys(); n != len(SigningAlgorithms()) {
		t.Fatalf("%d keys after concurrent ensures, want one per algorithm", n)
	}
	for _, alg := range SigningAlgorithms() {
		want := signingKIDOf(t, managers[0], alg)
		for i, m := range managers[1:] {
			if got := signingKIDOf(t, m, alg); got != want {
				t.Errorf("manager %d signs %s with %s, manager 0 with %s", i+1, alg, got, want)
			}
		}
	}
}

// TestKeySigningKeyMatchesPublished signs a JWT with fosite's signer and the
// manager's key, for each algorithm, and verifies it with the published set.
func TestKeySigningKeyMatchesPublished(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	e.ensured(keySecretOld)
	for _, alg := range SigningAlgorithms() {
		kid := e.rotate(alg, keySecretOld)
		e.clock.Advance(KeyActivationDelay)
		m := e.manager(keySecretOld)
		priv, err := m.signingKey(t.Context(), alg)
		if err != nil {
			t.Fatal(err)
		}
		if priv.KeyID != kid || priv.Algorithm != alg {
			t.Fatalf("signingKey after rotating to %s: kid %s alg %s, want %s", alg, priv.KeyID, priv.Algorithm, kid)
		}
		pub, err := m.verificationKey(t.Context(), kid)
		if err != nil {
			t.Fatal(err)
		}
		if pub.KeyID != kid || pub.Algorithm != alg || pub.Use != "sig" || !pub.IsPublic() {
			t.Errorf("published key: kid %s alg %s use %s public %v", pub.KeyID, pub.Algorithm, pub.Use, pub.IsPublic())
		}
		switch k := priv.Key.(type) {
		case *rsa.PrivateKey:
			if !k.PublicKey.Equal(pub.Key) {
				t.Errorf("%s: published key is not the signing key's public part", alg)
			}
		case *ecdsa.PrivateKey:
			if !k.PublicKey.Equal(pub.Key) {
				t.Errorf("%s: published key is not the signing key's public part", alg)
			}
		case ed25519.PrivateKey:
			if !k.Public().(ed25519.PublicKey).Equal(pub.Key) {
				t.Errorf("%s: published key is not the signing key's public part", alg)
			}
		default:
			t.Fatalf("%s: signing key is a %T", alg, priv.Key)
		}

		signer := &jwt.DefaultSigner{GetPrivateKey: func(ctx context.Context) (any, error) { return m.signingKey(ctx, alg) }}
		token, _, err := signer.Generate(t.Context(), jwt.MapClaims{"sub": "alice"}, &jwt.Headers{})
		if err != nil {
			t.Fatalf("%s: fosite cannot sign with the key: %v", alg, err)
		}
		jws, err := josev4.ParseSignedCompact(token, []josev4.SignatureAlgorithm{josev4.RS256, josev4.PS256, josev4.ES256, josev4.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		if h := jws.Signatures[0].Header; h.KeyID != kid || h.Algorithm != alg {
			t.Errorf("token header kid %q alg %q, want %q %q", h.KeyID, h.Algorithm, kid, alg)
		}
		set, err := m.publicKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(set); err != nil {
			t.Errorf("%s: token does not verify with the published set: %v", alg, err)
		}
		// And with keySigner, as logout's id_token_hint is checked.
		if _, err := (&keySigner{keys: m}).Decode(t.Context(), token); err != nil {
			t.Errorf("%s: keySigner.Decode: %v", alg, err)
		}
	}
}

func TestKeyPublicKeysHaveNoPrivateMembers(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	e.ensured(keySecretOld)
	e.rotate("ES256", keySecretOld)
	m := e.manager(keySecretOld)
	set, err := m.publicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != len(SigningAlgorithms())+1 {
		t.Fatalf("%d keys published, want one per algorithm and the ES256 key rotated in:\n%s", len(doc.Keys), b)
	}
	for _, k := range doc.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("published key %v has private member %q", k["kid"], private)
			}
		}
		if k["kid"] == "" || k["kid"] == nil || k["alg"] == nil || k["use"] != "sig" {
			t.Errorf("published key lacks kid, alg or use sig: %v", k)
		}
	}
}

func TestKeySecretRotation(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	kid := signingKID(t, e.ensured(keySecretOld))

	// The operator rotates the system secret: the new one first.
	rotated := e.ensured(keySecretNew, keySecretOld)
	if got := signingKID(t, rotated); got != kid {
		t.Errorf("with [new, old] the manager signs with %s, want %s", got, kid)
	}

	// A secret the key was never sealed with: a clear error, at start-up.
	for _, secrets := range [][][]byte{{keySecretOther}, {keySecretNew}} {
		_, err := e.manager(secrets...).signingKey(ctx, "")
		wantErrorContaining(t, "signingKey with only unrelated secrets", err, kid, "AUTHZ_SECRETS", "add that secret back")
		err = e.manager(secrets...).ensure(ctx)
		wantErrorContaining(t, "ensure with only unrelated secrets", err, "AUTHZ_SECRETS")
	}

	// Keys rotated in after the secret rotation are sealed with the new
	// secret, so once every algorithm's key is, the old one can go; the
	// old keys stay published, which needs no secret.
	rs, err := RotateSigningKeys(ctx, e.store, *e.config(keySecretNew, keySecretOld), SigningAlgorithms())
	if err != nil || len(rs) != len(SigningAlgorithms()) || rs[0].Key.Algorithm != "RS256" {
		t.Fatalf("RotateSigningKeys: %+v, %v", rs, err)
	}
	newKID := rs[0].Key.KID
	// Until the new keys sign, the old ones do, and the old secret is
	// still needed.
	err = e.manager(keySecretNew).ensure(ctx)
	wantErrorContaining(t, "ensure with [new] before the new key signs", err, "AUTHZ_SECRETS")
	e.clock.Advance(KeyActivationDelay)
	m := e.ensured(keySecretNew)
	if got := signingKID(t, m); got != newKID {
		t.Errorf("with [new] after a key rotation the manager signs with %s, want %s", got, newKID)
	}
	if got := publishedKIDs(t, m, "RS256"); !slices.Equal(got, []string{newKID, kid}) {
		t.Errorf("published %v, want [%s %s]", got, newKID, kid)
	}
}

func TestKeyTamperedCiphertext(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	first := signingKID(t, e.ensured(keySecretOld))
	second := e.rotate("RS256", keySecretOld)
	e.clock.Advance(KeyActivationDelay)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := e.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	var original []byte
	if err := e.pool.QueryRow(ctx, `SELECT private_key FROM signing_keys WHERE kid = $1`, second).Scan(&original); err != nil {
		t.Fatal(err)
	}

	// A flipped bit.
	exec(`UPDATE signing_keys SET private_key = set_byte(private_key, 20, get_byte(private_key, 20) # 1) WHERE kid = $1`, second)
	_, err := e.manager(keySecretOld).signingKey(ctx, "")
	wantErrorContaining(t, "signingKey with a tampered ciphertext", err, second, "altered or copied")

	exec(`UPDATE signing_keys SET private_key = $2 WHERE kid = $1`, second, original)
	if got := signingKID(t, e.manager(keySecretOld)); got != second {
		t.Fatalf("after restoring the ciphertext the manager signs with %s, want %s", got, second)
	}

	// A ciphertext moved to another row: the kid is its additional data.
	exec(`UPDATE signing_keys SET private_key = (SELECT private_key FROM signing_keys WHERE kid = $1) WHERE kid = $2`, first, second)
	_, err = e.manager(keySecretOld).signingKey(ctx, "")
	wantErrorContaining(t, "signingKey with a ciphertext from another row", err, second, "altered or copied")

	// A public key that does not belong to the kid.
	exec(`UPDATE signing_keys SET private_key = $2 WHERE kid = $1`, second, original)
	exec(`UPDATE signing_keys SET public_jwk = (SELECT public_jwk FROM signing_keys WHERE kid = $1) WHERE kid = $2`, first, second)
	_, err = e.manager(keySecretOld).publicKeys(ctx)
	wantErrorContaining(t, "publicKeys with another key's public JWK", err, second, "does not match the kid")
}

// TestKeyRotationAndCache: a rotated-in key is published by every manager
// once it reads the keys, signs only from its activation time, and the key
// it replaces stays published until its tokens have expired, counted from
// when it stopped signing.
func TestKeyRotationAndCache(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	// An ES256 rotation; the other algorithms' keys are left alone.
	const alg = "ES256"
	m := e.ensured(keySecretOld)
	old := signingKIDOf(t, m, alg)
	rsKID := signingKID(t, m)

	rotatedAt := e.clock.Now()
	r, err := RotateSigningKey(ctx, e.store, *e.config(keySecretOld), alg)
	if err != nil {
		t.Fatal(err)
	}
	next := r.Key.KID
	activatesAt := rotatedAt.Add(KeyActivationDelay)
	wantUntil := activatesAt.Add(time.Hour + 30*time.Minute) // ID token + access token lifespans
	if next == old || r.Key.State != "next" || !r.Key.ActivatesAt.Equal(activatesAt) || r.Previous == nil ||
		r.Previous.KID != old || r.Previous.State != "current" || !r.Previous.RotatedAt.Equal(activatesAt) ||
		!r.Previous.ExpiresAt.Equal(wantUntil) {
		t.Fatalf("rotation: %+v, previous %+v; want a new key activating at %v, the old one signing until then and published until %v",
			r.Key, r.Previous, activatesAt, wantUntil)
	}
	if KeyActivationDelay < keyCacheTTL+jwksMaxAge {
		t.Errorf("KeyActivationDelay %s is shorter than the key cache plus the JWKS max-age (%s)", KeyActivationDelay, keyCacheTTL+jwksMaxAge)
	}

	// Within the cache window this manager neither publishes nor uses the
	// new key; one that has just started publishes it; both sign with the
	// old one.
	if got := publishedKIDs(t, m, alg); !slices.Equal(got, []string{old}) {
		t.Errorf("cached manager publishes %v, want [%s] until it reads again", got, old)
	}
	fresh := e.manager(keySecretOld)
	if got := publishedKIDs(t, fresh, alg); !slices.Equal(got, []string{next, old}) {
		t.Errorf("fresh manager publishes %v, want [%s %s]", got, next, old)
	}
	for name, mgr := range map[string]*keyManager{"cached": m, "fresh": fresh} {
		if got := signingKIDOf(t, mgr, alg); got != old {
			t.Errorf("%s manager signs with %s before the new key activates, want %s", name, got, old)
		}
	}

	e.clock.Advance(keyCacheTTL + time.Second)
	if got := publishedKIDs(t, m, alg); !slices.Equal(got, []string{next, old}) {
		t.Errorf("after the cache window published %v, want [%s %s]", got, next, old)
	}
	if got := signingKIDOf(t, m, alg); got != old {
		t.Errorf("after the cache window the manager signs with %s, want %s until %v", got, old, activatesAt)
	}

	// The switch follows the clock, not the reads: a manager that read
	// the keys a second before the activation switches on time.
	e.clock.Advance(activatesAt.Add(-time.Second).Sub(e.clock.Now()))
	justRead := e.manager(keySecretOld)
	if got := signingKIDOf(t, justRead, alg); got != old {
		t.Errorf("a second before the activation the manager signs with %s, want %s", got, old)
	}
	e.clock.Advance(time.Second)
	for name, mgr := range map[string]*keyManager{"cached": m, "just read": justRead} {
		if got := signingKIDOf(t, mgr, alg); got != next {
			t.Errorf("at the activation the %s manager signs with %s, want %s", name, got, next)
		}
	}
	if got := signingKID(t, m); got != rsKID {
		t.Errorf("after the ES256 rotation RS256 signs with %s, want its first key %s", got, rsKID)
	}
	if _, err := m.verificationKey(ctx, old); err != nil {
		t.Errorf("verificationKey(old) while published: %v", err)
	}

	// A key rotated in by another process: an unknown kid makes the
	// manager read again, but not more often than unknownKIDRefresh.
	e.clock.Advance(keyCacheTTL)
	if _, err := m.verificationKey(ctx, next); err != nil { // reads again
		t.Fatal(err)
	}
	third := e.rotate(alg, keySecretOld)
	if _, err := m.verificationKey(ctx, third); err == nil {
		t.Error("verificationKey found a key rotated in less than unknownKIDRefresh after the last read")
	}
	e.clock.Advance(unknownKIDRefresh)
	if k, err := m.verificationKey(ctx, third); err != nil || k.KeyID != third {
		t.Errorf("verificationKey(new kid) after unknownKIDRefresh: %v, %v", k, err)
	}
	_, err = m.verificationKey(ctx, "no-such-kid")
	wantErrorContaining(t, "verificationKey(unknown)", err, "no-such-kid")

	// Once the retire time has passed the old key leaves the JWKS at once,
	// cache or not.
	e.clock.Advance(wantUntil.Add(-time.Second).Sub(e.clock.Now()))
	if got := publishedKIDs(t, m, alg); !slices.Equal(got, []string{third, next, old}) {
		t.Errorf("a second before the first key's retire time: published %v, want [%s %s %s]", got, third, next, old)
	}
	e.clock.Advance(time.Second)
	if got := publishedKIDs(t, m, alg); !slices.Equal(got, []string{third, next}) {
		t.Errorf("at the first key's retire time: published %v, want [%s %s]", got, third, next)
	}
	_, err = m.verificationKey(ctx, old)
	wantErrorContaining(t, "verificationKey(old) after its retire time", err, old)
	if got := publishedKIDs(t, m, "RS256"); !slices.Equal(got, []string{rsKID}) || signingKID(t, m) != rsKID {
		t.Errorf("RS256 keys published %v, want [%s], which still signs", got, rsKID)
	}
}

// TestKeyReplicasNeverSignUnpublished: two managers on one database whose
// caches were read at different times, as two replicas' are. At every
// second around a rotation of every algorithm's key (authz keys rotate),
// neither signs with a key the other does not publish, in any algorithm.
// Without the activation delay the one that reads first would sign with
// the new key while the other still serves a JWKS without it.
func TestKeyReplicasNeverSignUnpublished(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	a := e.ensured(keySecretOld)
	e.clock.Advance(keyCacheTTL / 2)
	b := e.ensured(keySecretOld)
	old := map[string]string{}
	for _, alg := range SigningAlgorithms() {
		old[alg] = signingKIDOf(t, a, alg)
	}

	rs, err := RotateSigningKeys(t.Context(), e.store, *e.config(keySecretOld), SigningAlgorithms())
	if err != nil || len(rs) != len(SigningAlgorithms()) {
		t.Fatalf("RotateSigningKeys: %+v, %v", rs, err)
	}
	next := map[string]string{}
	for i, r := range rs {
		alg := SigningAlgorithms()[i]
		if r.Key.Algorithm != alg || r.Key.State != "next" || r.Previous == nil || r.Previous.KID != old[alg] {
			t.Fatalf("rotation of %s: %+v, previous %+v; want a next %s key replacing %s", alg, r.Key, r.Previous, alg, old[alg])
		}
		next[alg] = r.Key.KID
	}
	end := e.clock.Now().Add(KeyActivationDelay + keyCacheTTL)
	for e.clock.Now().Before(end) {
		for _, pair := range [][2]*keyManager{{a, b}, {b, a}} {
			for _, alg := range SigningAlgorithms() {
				kid := signingKIDOf(t, pair[0], alg)
				if !slices.Contains(publishedKIDs(t, pair[1], alg), kid) {
					t.Fatalf("%v after the rotation a replica signs %s with %s, which the other does not publish (%v)",
						e.clock.Now().Sub(end.Add(-KeyActivationDelay-keyCacheTTL)), alg, kid, publishedKIDs(t, pair[1], alg))
				}
			}
		}
		e.clock.Advance(time.Second)
	}
	for _, m := range []*keyManager{a, b} {
		for _, alg := range SigningAlgorithms() {
			if got := signingKIDOf(t, m, alg); got != next[alg] {
				t.Errorf("after the activation a replica signs %s with %s, want %s", alg, got, next[alg])
			}
			if got := publishedKIDs(t, m, alg); !slices.Equal(got, []string{next[alg], old[alg]}) {
				t.Errorf("after the activation a replica publishes %v for %s, want [%s %s]", got, alg, next[alg], old[alg])
			}
		}
	}
	// The old keys stay published until the tokens they signed have
	// expired (ID token and access token lifespans), then leave together.
	e.clock.Advance(rs[0].Previous.ExpiresAt.Sub(e.clock.Now()))
	if got := publishedKIDs(t, a, ""); len(got) != len(SigningAlgorithms()) || slices.Contains(got, old["EdDSA"]) {
		t.Errorf("after the old keys' expiry published %v, want only the new keys %v", got, next)
	}
}

func TestKeyRotateSigningKey(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()

	for _, alg := range []string{"HS256", "none", "", "rs256"} {
		_, err := RotateSigningKey(ctx, e.store, *e.config(keySecretOld), alg)
		wantErrorContaining(t, "RotateSigningKey("+alg+")", err, "not supported", "RS256, PS256, ES256, EdDSA")
	}
	_, err := RotateSigningKey(ctx, e.store, *e.config(), "RS256")
	wantErrorContaining(t, "RotateSigningKey without secrets", err, "AUTHZ_SECRETS")
	noLifespan := *e.config(keySecretOld)
	noLifespan.IDTokenLifespan = 0
	_, err = RotateSigningKey(ctx, e.store, noLifespan, "RS256")
	wantErrorContaining(t, "RotateSigningKey with a zero ID token lifespan", err, "lifespans must be positive")
	if n := e.countKeys(); n != 0 {
		t.Errorf("%d keys after failed rotations, want none", n)
	}

	// SigningKeys, which `authz keys list` shows, goes by the wall clock,
	// so the first rotations happen hours ago.
	hoursAgo := func(h int) Config {
		cfg := *e.config(keySecretOld)
		cfg.Now = func() time.Time { return time.Now().Add(-time.Duration(h) * time.Hour) }
		return cfg
	}
	// With no key of its algorithm yet, the rotated-in key is the first,
	// and signs at once.
	r, err := RotateSigningKey(ctx, e.store, hoursAgo(4), "ES256")
	if err != nil {
		t.Fatal(err)
	}
	first := r.Key.KID
	if r.Previous != nil || r.Key.State != "current" || !r.Key.ActivatesAt.Equal(r.Key.CreatedAt) {
		t.Errorf("first key: %+v, previous %+v; want current at once, with no previous key", r.Key, r.Previous)
	}
	if cur, err := e.store.NewestSigningKey(ctx, "ES256"); err != nil || cur.KID != first || cur.Algorithm != "ES256" {
		t.Fatalf("newest key %+v, %v; want the ES256 key %s", cur, err, first)
	}
	rotate := func(cfg Config) string {
		t.Helper()
		r, err := RotateSigningKey(ctx, e.store, cfg, "RS256")
		if err != nil {
			t.Fatal(err)
		}
		return r.Key.KID
	}
	// RS256 keys, rotated on their own: the first ES256 key signs
	// throughout. The first RS256 key stopped signing 3h ago (less the
	// delay) and its 90 minutes are up; the second stopped an hour ago and
	// is still published; the third signs until the fourth, just rotated
	// in, activates.
	rs1 := rotate(hoursAgo(4))
	second := rotate(hoursAgo(3))
	third := rotate(hoursAgo(1))
	fourth := e.rotate("RS256", keySecretOld)

	infos, err := SigningKeys(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range infos {
		got = append(got, k.KID+":"+k.State)
	}
	want := []string{fourth + ":next", first + ":current", third + ":current", second + ":published", rs1 + ":expired"}
	if !slices.Equal(got, want) {
		t.Errorf("SigningKeys = %v, want %v", got, want)
	}
	if infos[0].RotatedAt != nil || infos[0].ExpiresAt != nil || infos[1].RotatedAt != nil || infos[2].RotatedAt == nil || !infos[2].RotatedAt.Equal(infos[0].ActivatesAt) {
		t.Errorf("SigningKeys times: %+v", infos)
	}
}

func TestKeyServeJWKS(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	m := e.ensured(keySecretOld)

	rec := httptest.NewRecorder()
	m.serveJWKS(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200:\n%s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=120" {
		t.Errorf("Cache-Control %q, want public, max-age=120", cc)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("body is not JSON:\n%s", rec.Body)
	}
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatalf("body is not a JWK set: %v\n%s", err, rec.Body)
	}
	// One key per algorithm, each the one that signs, public, of the
	// key type and curve its algorithm needs (RFC 7518 6, RFC 8037 2).
	var doc struct {
		Keys []struct{ Kty, Crv, Alg, Use, Kid string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"RS256": "RSA/", "PS256": "RSA/", "ES256": "EC/P-256", "EdDSA": "OKP/Ed25519"}
	if len(doc.Keys) != len(want) || len(set.Keys) != len(want) {
		t.Fatalf("JWKS %s, want one key for each of %v", rec.Body, SigningAlgorithms())
	}
	for i, k := range doc.Keys {
		if w, ok := want[k.Alg]; !ok || k.Kty+"/"+k.Crv != w || k.Use != "sig" || k.Kid != signingKIDOf(t, m, k.Alg) {
			t.Errorf("JWKS key %+v: want kty/crv %q, use sig, the kid of the %s key that signs", k, w, k.Alg)
		}
		delete(want, k.Alg)
		if !set.Keys[i].IsPublic() || !set.Keys[i].Valid() {
			t.Errorf("JWKS key %s is not a valid public key", k.Kid)
		}
	}
}

// TestKeyNeverReadUnavailable: with the database unreachable and no keys
// ever read, the JWKS answers 503 temporarily_unavailable with
// Retry-After, and the cause is logged. (Discovery needs no keys: every
// algorithm has one from start-up.)
func TestKeyNeverReadUnavailable(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	closed, err := storage.NewPool(t.Context(), e.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	var logs bytes.Buffer
	cfg := e.config(keySecretOld)
	cfg.Issuer = "https://id.example.com"
	broken := newKeyManager(storage.New(closed), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	rec := httptest.NewRecorder()
	broken.serveJWKS(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	wantKeysUnavailable(t, "/.well-known/jwks.json", rec)
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "read signing keys") {
		t.Errorf("the failure was not logged at error level with its cause:\n%s", logs.String())
	}
}

func wantKeysUnavailable(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	var body struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable ||
		body.Error != "temporarily_unavailable" || body.ErrorDescription == "" {
		t.Errorf("%s: %d %q (%v), want 503 with JSON error temporarily_unavailable", what, rec.Code, rec.Body, err)
	}
	if rec.Header().Get("Retry-After") != "5" || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("%s: headers %v, want Retry-After 5, JSON, no-store", what, rec.Header())
	}
}

// TestKeyAnswersFromMemory: a running server whose database becomes
// unreachable keeps serving the JWKS and discovery from the keys it read
// last, through the whole handler (the key reads are not the request's
// database failures), logs the failure at warn at most once per
// keyCacheTTL, and signs with the keys in memory only while no key rotated
// in since could have started signing.
func TestKeyAnswersFromMemory(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	pool, err := storage.NewPool(ctx, e.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg, err := ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "https://id.example.com"
	cfg.Secrets = [][]byte{keySecretOld}
	cfg.Now = e.clock.Now
	var logs syncBuffer
	h, err := New(cfg, storage.New(pool, storage.WithClock(e.clock.Now)), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	e.rotate("ES256", keySecretOld) // a key waiting to sign: published all the same
	e.clock.Advance(keyCacheTTL)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://id.example.com"+path, nil))
		return rec
	}
	jwks, discovery := get("/.well-known/jwks.json"), get("/.well-known/openid-configuration")
	if jwks.Code != http.StatusOK || discovery.Code != http.StatusOK {
		t.Fatalf("with the database up: JWKS %d, discovery %d\n%s\n%s", jwks.Code, discovery.Code, jwks.Body, discovery.Body)
	}
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(jwks.Body.Bytes(), &set); err != nil || len(set.Keys) != len(SigningAlgorithms())+1 {
		t.Fatalf("JWKS %s (%v), want one key per algorithm and the one waiting", jwks.Body, err)
	}
	signer, err := h.keys.signingKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	pool.Close()
	warnings := func() int { return strings.Count(logs.String(), "level=WARN msg=\"cannot read the signing keys") }
	for i, step := range []struct {
		advance time.Duration
		warns   int
	}{
		{keyCacheTTL, 1},          // the cache is stale: a read fails, logged
		{0, 1},                    // within keyRetryInterval: memory, no read
		{keyRetryInterval, 1},     // read again, fails, not logged again
		{keyCacheTTL, 2},          // a keyCacheTTL after the first warning
		{keyRetryInterval / 2, 2}, // memory
	} {
		e.clock.Advance(step.advance)
		for _, path := range []string{"/.well-known/jwks.json", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			rec := get(path)
			want := jwks
			if path != "/.well-known/jwks.json" {
				want = discovery
			}
			if rec.Code != http.StatusOK || rec.Body.String() != want.Body.String() ||
				rec.Header().Get("Cache-Control") != want.Header().Get("Cache-Control") {
				t.Errorf("step %d, %s with the database gone: %d %s\nwant %d %s", i, path, rec.Code, rec.Body, want.Code, want.Body)
			}
		}
		if n := warnings(); n != step.warns {
			t.Errorf("step %d: %d warnings, want %d:\n%s", i, n, step.warns, logs.String())
		}
		if k, err := h.keys.verificationKey(ctx, signer.KeyID); err != nil || k.KeyID != signer.KeyID {
			t.Errorf("step %d: verificationKey from memory: %v, %v", i, k, err)
		}
		if k, err := h.keys.signingKey(ctx, ""); err != nil || k.KeyID != signer.KeyID {
			t.Errorf("step %d: signingKey from memory: %v, %v", i, k, err)
		}
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("serving from memory logged an error:\n%s", logs.String())
	}

	// Keys read more than KeyActivationDelay ago may miss a key that signs
	// by now: no more signing from memory.
	e.clock.Advance(KeyActivationDelay)
	_, err = h.keys.signingKey(ctx, "")
	wantErrorContaining(t, "signingKey from keys read too long ago", err, "last read")
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("signingKey from keys read too long ago: %v, want storage.ErrUnavailable", err)
	}
	if rec := get("/.well-known/jwks.json"); rec.Code != http.StatusOK {
		t.Errorf("JWKS from memory after KeyActivationDelay: %d", rec.Code)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestKeySealing covers the encryption at rest without a database.
func TestKeySealing(t *testing.T) {
	t.Parallel()
	k, err := newSigningKey("ES256", keySecretNew, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, fpNew, err := sealer(keySecretNew)
	if err != nil {
		t.Fatal(err)
	}
	_, fpOld, err := sealer(keySecretOld)
	if err != nil {
		t.Fatal(err)
	}
	if k.SecretFingerprint != fpNew || len(fpNew) != 8 || fpNew == fpOld {
		t.Errorf("fingerprints: key %q, new %q, old %q; want the new secret's, 8 hex digits, distinct", k.SecretFingerprint, fpNew, fpOld)
	}
	if strings.Contains(string(k.PublicJWK), `"d"`) {
		t.Errorf("public JWK has a private member: %s", k.PublicJWK)
	}
	// The fingerprint is a hint: a wrong one still finds the secret.
	k.SecretFingerprint = fpOld
	if _, err := openSigningKey(k, [][]byte{keySecretOld, keySecretNew}); err != nil {
		t.Errorf("open with a wrong fingerprint hint: %v", err)
	}
	moved := *k
	moved.KID = "someone-else"
	_, err = openSigningKey(&moved, [][]byte{keySecretNew})
	if err == nil {
		t.Error("a ciphertext opened under another kid")
	}
	_, err = openSigningKey(k, nil)
	wantErrorContaining(t, "open with no secrets", err, k.KID, "AUTHZ_SECRETS")
}

// TestKeyRotatedWithAnotherSecret: `authz keys rotate` run with the wrong
// AUTHZ_SECRETS makes a key the servers cannot decrypt. Running servers say
// so as soon as they read it, and keep signing with the previous key while
// it is published; a server starting then fails with the clear error.
func TestKeyRotatedWithAnotherSecret(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	var logs syncBuffer
	m := newKeyManager(e.store, e.config(keySecretOld), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := m.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	old := signingKID(t, m)
	// Short lifespans, so that the previous key stops being published
	// soon after the bad key activates.
	wrong := *e.config(keySecretOther)
	wrong.IDTokenLifespan, wrong.AccessTokenLifespan = 10*time.Second, 10*time.Second
	r, err := RotateSigningKey(ctx, e.store, wrong, "RS256")
	if err != nil {
		t.Fatal(err)
	}
	bad := r.Key.KID

	// The unknown kid makes the manager read the keys again, and the key
	// that cannot be decrypted is an error in the log before it is due.
	e.clock.Advance(unknownKIDRefresh)
	if _, err := m.verificationKey(ctx, bad); err != nil {
		t.Fatalf("verificationKey(new key): %v", err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), bad) {
		t.Errorf("the undecryptable key was not logged as an error:\n%s", logs.String())
	}
	if got := publishedKIDs(t, m, "RS256"); !slices.Equal(got, []string{bad, old}) {
		t.Errorf("published %v, want [%s %s]", got, bad, old)
	}
	err = e.manager(keySecretOld).ensure(ctx)
	wantErrorContaining(t, "ensure on a fresh manager", err, bad, "AUTHZ_SECRETS")

	// Once it should sign, the previous key signs instead while published.
	e.clock.Advance(r.Key.ActivatesAt.Sub(e.clock.Now()))
	if got := signingKID(t, m); got != old {
		t.Errorf("signs with %s, want the previous key %s", got, old)
	}
	if !strings.Contains(logs.String(), "cannot use the current signing key") {
		t.Errorf("signing with the previous key was not logged:\n%s", logs.String())
	}

	// Once the previous key is no longer published it no longer signs,
	// though the cache window has not passed.
	e.clock.Advance(20 * time.Second)
	for range 2 {
		_, err = m.signingKey(ctx, "")
		wantErrorContaining(t, "signingKey after the previous key's retire time", err, bad, "AUTHZ_SECRETS")
	}

	// The operator rotates again with the right secret: all is well once
	// the new key activates.
	good := e.rotate("RS256", keySecretOld)
	e.clock.Advance(KeyActivationDelay)
	if got := signingKID(t, m); got != good {
		t.Errorf("after a good rotation signs with %s, want %s", got, good)
	}
}

// BenchmarkSignIDToken signs an ID token's claims with the key of each
// algorithm, as the token endpoint does: the keys are in memory, so this
// is the signature's cost. Run: go test -run '^$' -bench SignIDToken ./authz/
func BenchmarkSignIDToken(b *testing.B) {
	pool, err := storage.NewPool(b.Context(), pgtest.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	clock := &keyClock{now: time.Now().UTC().Truncate(time.Second)}
	cfg := &Config{Secrets: [][]byte{keySecretOld}, IDTokenLifespan: time.Hour, AccessTokenLifespan: time.Hour, Now: clock.Now}
	m := newKeyManager(storage.New(pool, storage.WithClock(clock.Now)), cfg, nil)
	if err := m.ensure(b.Context()); err != nil {
		b.Fatal(err)
	}
	signer := &keySigner{keys: m}
	now := clock.Now()
	claims := jwt.MapClaims{
		"iss": "https://id.example.com", "sub": "0b7c9a4e-8d3f-4f57-9d0e-3f1c2b4a5d6e", "aud": []string{"client-id"},
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "auth_time": now.Unix(), "nonce": "n-0S6_WzA2Mj",
		"at_hash": "77QmUPtjPfzWtF2AnpK9RQ", "amr": []string{"pwd"}, "preferred_username": "alice",
	}
	for _, alg := range SigningAlgorithms() {
		b.Run(alg, func(b *testing.B) {
			ctx := withSigningAlg(b.Context(), alg)
			for b.Loop() {
				if _, _, err := signer.Generate(ctx, claims, &jwt.Headers{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestKeyPublishedForClientLifespans: a client whose own tokens outlive
// the server's lifespans keeps a rotated-out key published until they
// have expired, or its JWT access tokens would stop verifying first.
func TestKeyPublishedForClientLifespans(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	e.ensured(keySecretOld)
	long := &storage.Client{ID: "long-lived", TokenEndpointAuthMethod: "none", Public: true,
		AccessTokenLifespan: 24 * 60 * 60, AccessTokenStrategy: "jwt"}
	if err := e.store.CreateClient(ctx, long); err != nil {
		t.Fatal(err)
	}
	r, err := RotateSigningKey(ctx, e.store, *e.config(keySecretOld), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	want := r.Key.ActivatesAt.Add(24 * time.Hour)
	if r.Previous == nil || r.Previous.ExpiresAt == nil || !r.Previous.ExpiresAt.Equal(want) {
		t.Fatalf("previous key %+v; want it published until %v, when the client's day-long tokens have expired", r.Previous, want)
	}
}
