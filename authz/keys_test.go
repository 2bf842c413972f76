package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
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
	kid, err := RotateSigningKey(e.t.Context(), e.store, *e.config(secrets...), alg)
	if err != nil {
		e.t.Fatalf("RotateSigningKey(%s): %v", alg, err)
	}
	return kid
}

func (e *keyEnv) countKeys() int {
	e.t.Helper()
	all, err := e.store.ListSigningKeys(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(all)
}

func signingKID(t *testing.T, m *keyManager) string {
	t.Helper()
	k, err := m.signingKey(t.Context())
	if err != nil {
		t.Fatalf("signingKey: %v", err)
	}
	return k.KeyID
}

func publishedKIDs(t *testing.T, m *keyManager) []string {
	t.Helper()
	set, err := m.publicKeys(t.Context())
	if err != nil {
		t.Fatalf("publicKeys: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
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

func TestKeyEnsureCreatesOneKey(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	m := e.ensured(keySecretOld)
	if err := m.ensure(t.Context()); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	e.ensured(keySecretOld) // a restarted process
	if n := e.countKeys(); n != 1 {
		t.Fatalf("%d keys after ensuring three times, want 1", n)
	}
	k, err := m.signingKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := k.Key.(*rsa.PrivateKey)
	if !ok || priv.N.BitLen() != rsaKeyBits || k.Algorithm != "RS256" || k.Use != "sig" || k.KeyID == "" {
		t.Errorf("first key: %T of %d bits, alg %q, use %q, kid %q; want an RS256 RSA-%d signing key with a kid",
			k.Key, priv.N.BitLen(), k.Algorithm, k.Use, k.KeyID, rsaKeyBits)
	}
	cur, err := e.store.CurrentSigningKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if cur.KID != k.KeyID {
		t.Errorf("manager signs with %s, the database's current key is %s", k.KeyID, cur.KID)
	}
	if bytes.Contains(cur.PrivateKey, priv.D.Bytes()) {
		t.Error("the private exponent is stored in the clear")
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
	if n := e.countKeys(); n != 1 {
		t.Fatalf("%d keys after concurrent ensures, want 1", n)
	}
	want := signingKID(t, managers[0])
	for i, m := range managers[1:] {
		if got := signingKID(t, m); got != want {
			t.Errorf("manager %d signs with %s, manager 0 with %s", i+1, got, want)
		}
	}
}

// TestKeySigningKeyMatchesPublished signs a JWT with fosite's signer and the
// manager's key, for each algorithm, and verifies it with the published set.
func TestKeySigningKeyMatchesPublished(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	e.ensured(keySecretOld)
	for _, alg := range []string{"ES256", "RS256"} {
		kid := e.rotate(alg, keySecretOld)
		m := e.manager(keySecretOld)
		priv, err := m.signingKey(t.Context())
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
		default:
			t.Fatalf("%s: signing key is a %T", alg, priv.Key)
		}

		signer := &jwt.DefaultSigner{GetPrivateKey: func(ctx context.Context) (any, error) { return m.signingKey(ctx) }}
		token, _, err := signer.Generate(t.Context(), jwt.MapClaims{"sub": "alice"}, &jwt.Headers{})
		if err != nil {
			t.Fatalf("%s: fosite cannot sign with the key: %v", alg, err)
		}
		jws, err := josev4.ParseSignedCompact(token, []josev4.SignatureAlgorithm{josev4.RS256, josev4.ES256})
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
	if len(doc.Keys) != 2 {
		t.Fatalf("%d keys published, want 2:\n%s", len(doc.Keys), b)
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
		_, err := e.manager(secrets...).signingKey(ctx)
		wantErrorContaining(t, "signingKey with only unrelated secrets", err, kid, "AUTHZ_SECRETS", "add that secret back")
		err = e.manager(secrets...).ensure(ctx)
		wantErrorContaining(t, "ensure with only unrelated secrets", err, kid, "AUTHZ_SECRETS")
	}

	// A key rotated in after the secret rotation is sealed with the new
	// secret, so the old one can go; the old key stays published, which
	// needs no secret.
	newKID := e.rotate("RS256", keySecretNew, keySecretOld)
	m := e.manager(keySecretNew)
	if got := signingKID(t, m); got != newKID {
		t.Errorf("with [new] after a key rotation the manager signs with %s, want %s", got, newKID)
	}
	if got := publishedKIDs(t, m); !slices.Equal(got, []string{newKID, kid}) {
		t.Errorf("published %v, want [%s %s]", got, newKID, kid)
	}
}

func TestKeyTamperedCiphertext(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	first := signingKID(t, e.ensured(keySecretOld))
	second := e.rotate("RS256", keySecretOld)
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
	_, err := e.manager(keySecretOld).signingKey(ctx)
	wantErrorContaining(t, "signingKey with a tampered ciphertext", err, second, "altered or copied")

	exec(`UPDATE signing_keys SET private_key = $2 WHERE kid = $1`, second, original)
	if got := signingKID(t, e.manager(keySecretOld)); got != second {
		t.Fatalf("after restoring the ciphertext the manager signs with %s, want %s", got, second)
	}

	// A ciphertext moved to another row: the kid is its additional data.
	exec(`UPDATE signing_keys SET private_key = (SELECT private_key FROM signing_keys WHERE kid = $1) WHERE kid = $2`, first, second)
	_, err = e.manager(keySecretOld).signingKey(ctx)
	wantErrorContaining(t, "signingKey with a ciphertext from another row", err, second, "altered or copied")

	// A public key that does not belong to the kid.
	exec(`UPDATE signing_keys SET private_key = $2 WHERE kid = $1`, second, original)
	exec(`UPDATE signing_keys SET public_jwk = (SELECT public_jwk FROM signing_keys WHERE kid = $1) WHERE kid = $2`, first, second)
	_, err = e.manager(keySecretOld).publicKeys(ctx)
	wantErrorContaining(t, "publicKeys with another key's public JWK", err, second, "does not match the kid")
}

func TestKeyRotationAndCache(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	m := e.ensured(keySecretOld)
	old := signingKID(t, m)

	rotatedAt := e.clock.Now()
	next := e.rotate("ES256", keySecretOld)
	if next == old {
		t.Fatal("rotation kept the kid")
	}
	all, err := e.store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantUntil := rotatedAt.Add(time.Hour + 30*time.Minute) // ID token + access token lifespans
	if len(all) != 2 || all[1].KID != old || all[1].ExpiresAt == nil || !all[1].ExpiresAt.Equal(wantUntil) {
		t.Fatalf("after rotation: %+v; want the old key published until %v", all, wantUntil)
	}

	// Within the cache window this manager still signs with the old key;
	// one that has just started reads the new one.
	if got := signingKID(t, m); got != old {
		t.Errorf("cached manager signs with %s, want %s until it reads again", got, old)
	}
	fresh := e.manager(keySecretOld)
	if got := signingKID(t, fresh); got != next {
		t.Errorf("fresh manager signs with %s, want %s", got, next)
	}
	if got := publishedKIDs(t, fresh); !slices.Equal(got, []string{next, old}) {
		t.Errorf("fresh manager publishes %v, want [%s %s]", got, next, old)
	}
	if algs, err := fresh.algorithms(ctx); err != nil || !slices.Equal(algs, []string{"ES256", "RS256"}) {
		t.Errorf("algorithms = %v, %v; want [ES256 RS256]", algs, err)
	}

	e.clock.Advance(keyCacheTTL + time.Second)
	if got := signingKID(t, m); got != next {
		t.Errorf("after the cache window the manager signs with %s, want %s", got, next)
	}
	if got := publishedKIDs(t, m); !slices.Equal(got, []string{next, old}) {
		t.Errorf("published %v, want [%s %s]", got, next, old)
	}
	if _, err := m.verificationKey(ctx, old); err != nil {
		t.Errorf("verificationKey(old) while published: %v", err)
	}

	// A key rotated in by another process: an unknown kid makes the
	// manager read again, but not more often than unknownKIDRefresh.
	third := e.rotate("RS256", keySecretOld)
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
	e.clock.Advance(wantUntil.Sub(e.clock.Now()))
	if got := publishedKIDs(t, m); !slices.Equal(got, []string{third, next}) {
		t.Errorf("after the first key's retire time: published %v, want [%s %s]", got, third, next)
	}
	_, err = m.verificationKey(ctx, old)
	wantErrorContaining(t, "verificationKey(old) after its retire time", err, old)
	if algs, err := m.algorithms(ctx); err != nil || !slices.Equal(algs, []string{"RS256", "ES256"}) {
		t.Errorf("algorithms = %v, %v; want [RS256 ES256]", algs, err)
	}
}

func TestKeyRotateSigningKey(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()

	for _, alg := range []string{"HS256", "none", "", "rs256"} {
		_, err := RotateSigningKey(ctx, e.store, *e.config(keySecretOld), alg)
		wantErrorContaining(t, "RotateSigningKey("+alg+")", err, "not supported", "RS256, ES256")
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
	// so the first two rotations happen hours ago: the first key was
	// retired three hours ago and its 90 minutes are up.
	hoursAgo := func(h int) Config {
		cfg := *e.config(keySecretOld)
		cfg.Now = func() time.Time { return time.Now().Add(-time.Duration(h) * time.Hour) }
		return cfg
	}
	// With no key yet, the rotated-in key is the first.
	first, err := RotateSigningKey(ctx, e.store, hoursAgo(4), "ES256")
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := e.store.CurrentSigningKey(ctx); err != nil || cur.KID != first || cur.Algorithm != "ES256" {
		t.Fatalf("current key %+v, %v; want the ES256 key %s", cur, err, first)
	}
	second, err := RotateSigningKey(ctx, e.store, hoursAgo(3), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	third := e.rotate("RS256", keySecretOld)

	infos, err := SigningKeys(ctx, e.store)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range infos {
		got = append(got, k.KID+":"+k.Algorithm+":"+k.State)
	}
	want := []string{third + ":RS256:current", second + ":RS256:published", first + ":ES256:expired"}
	if !slices.Equal(got, want) {
		t.Errorf("SigningKeys = %v, want %v", got, want)
	}
	if infos[0].RotatedAt != nil || infos[0].ExpiresAt != nil || infos[1].RotatedAt == nil || infos[1].ExpiresAt == nil {
		t.Errorf("SigningKeys times: %+v", infos)
	}
}

func TestKeyServeJWKS(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	m := e.ensured(keySecretOld)
	kid := signingKID(t, m)

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
	if len(set.Keys) != 1 || set.Keys[0].KeyID != kid || !set.Keys[0].IsPublic() || !set.Keys[0].Valid() {
		t.Errorf("JWKS %s, want the one public key %s", rec.Body, kid)
	}

	// The database is gone: a 500 with a JSON body, and the cause logged.
	closed, err := storage.NewPool(t.Context(), e.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	var logs bytes.Buffer
	broken := newKeyManager(storage.New(closed), e.config(keySecretOld), slog.New(slog.NewTextHandler(&logs, nil)))
	rec = httptest.NewRecorder()
	broken.serveJWKS(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status with the database closed %d, want 500", rec.Code)
	}
	var body struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "server_error" {
		t.Errorf("error body %q (%v), want JSON with error server_error", rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "read signing keys") {
		t.Errorf("the failure was not logged at error level with its cause:\n%s", logs.String())
	}
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
// AUTHZ_SECRETS makes a key the servers cannot decrypt. Running servers keep
// signing with the previous key while it is published, and say so; a server
// starting then fails with the clear error.
func TestKeyRotatedWithAnotherSecret(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	var logs bytes.Buffer
	m := newKeyManager(e.store, e.config(keySecretOld), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := m.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	old := signingKID(t, m)
	// Short lifespans, so that the previous key stops being published
	// within one cache window.
	wrong := *e.config(keySecretOther)
	wrong.IDTokenLifespan, wrong.AccessTokenLifespan = 10*time.Second, 10*time.Second
	bad, err := RotateSigningKey(ctx, e.store, wrong, "RS256")
	if err != nil {
		t.Fatal(err)
	}

	// The unknown kid makes the manager read the keys again.
	e.clock.Advance(unknownKIDRefresh)
	if _, err := m.verificationKey(ctx, bad); err != nil {
		t.Fatalf("verificationKey(new key): %v", err)
	}
	if got := signingKID(t, m); got != old {
		t.Errorf("signs with %s, want the previous key %s", got, old)
	}
	if got := publishedKIDs(t, m); !slices.Equal(got, []string{bad, old}) {
		t.Errorf("published %v, want [%s %s]", got, bad, old)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), bad) {
		t.Errorf("the undecryptable key was not logged as an error:\n%s", logs.String())
	}
	err = e.manager(keySecretOld).ensure(ctx)
	wantErrorContaining(t, "ensure on a fresh manager", err, bad, "AUTHZ_SECRETS")

	// Once the previous key is no longer published it no longer signs,
	// though the cache window has not passed.
	e.clock.Advance(20*time.Second - unknownKIDRefresh)
	for range 2 {
		_, err = m.signingKey(ctx)
		wantErrorContaining(t, "signingKey after the previous key's retire time", err, bad, "AUTHZ_SECRETS")
	}

	// The operator rotates again with the right secret: all is well.
	good := e.rotate("ES256", keySecretOld)
	e.clock.Advance(keyCacheTTL)
	if got := signingKID(t, m); got != good {
		t.Errorf("after a good rotation signs with %s, want %s", got, good)
	}
}
