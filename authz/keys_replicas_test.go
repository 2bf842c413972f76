package authz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
)

// TestKeyRotationAcrossReplicas: two servers on one database, whose key
// caches were read at different times, as two replicas behind a load
// balancer are. Around a rotation, every ID token either one issues
// verifies with the JWKS the other serves at that moment; after the
// activation both sign with the new key; the old key stays published until
// the tokens it signed have expired, then leaves both.
func TestKeyRotationAcrossReplicas(t *testing.T) {
	t.Parallel()
	e1 := newEnv(t)
	e2 := newEnvOnPool(t, e1.pool)
	_, provider, conf := oidcClient(t, e1)
	e1.createUser(t, "alice")
	tok, _, _ := signIn(t, e1, newBrowser(t), provider, conf, "alice")
	refresh := tok.RefreshToken

	advance := func(d time.Duration) {
		e1.clock.Advance(d)
		e2.clock.Advance(d)
	}
	// idToken has e issue an ID token, by a refresh.
	idToken := func(e *env) *josev4.JSONWebSignature {
		t.Helper()
		c := *conf
		c.Endpoint.TokenURL = e.url("/oauth2/token")
		fresh, err := c.TokenSource(t.Context(), &oauth2.Token{RefreshToken: refresh}).Token()
		if err != nil {
			t.Fatalf("refresh on %s: %v", e.issuer, err)
		}
		refresh = fresh.RefreshToken
		raw, _ := fresh.Extra("id_token").(string)
		jws, err := josev4.ParseSigned(raw, []josev4.SignatureAlgorithm{josev4.RS256, josev4.ES256})
		if err != nil {
			t.Fatalf("ID token from %s: %v", e.issuer, err)
		}
		return jws
	}
	jwks := func(e *env) josev4.JSONWebKeySet {
		t.Helper()
		resp, err := http.Get(e.url("/.well-known/jwks.json"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var set josev4.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("JWKS of %s: %d %s (%v)", e.issuer, resp.StatusCode, body, err)
		}
		return set
	}
	// The RS256 keys: the other algorithms' are not rotated here.
	kids := func(set josev4.JSONWebKeySet) []string {
		var out []string
		for _, k := range set.Keys {
			if k.Algorithm == "RS256" {
				out = append(out, k.KeyID)
			}
		}
		return out
	}
	kid := func(jws *josev4.JSONWebSignature) string { return jws.Signatures[0].Header.KeyID }

	// e1 reads the keys at 30s, e2 at 45s: at every moment one of them
	// has read them more recently than the other.
	advance(30 * time.Second)
	jwks(e1)
	advance(15 * time.Second)
	jwks(e2)

	r, err := authz.RotateSigningKey(t.Context(), e1.store, e1.cfg, "RS256")
	if err != nil {
		t.Fatal(err)
	}
	old, next := r.Previous.KID, r.Key.KID
	var lastOld *josev4.JSONWebSignature
	const step = 5 * time.Second
	// Up to a minute past the activation: both have read the keys again
	// by then, whatever the delay.
	for elapsed := time.Duration(0); elapsed <= authz.KeyActivationDelay+time.Minute; elapsed += step {
		for _, pair := range [][2]*env{{e1, e2}, {e2, e1}} {
			issuer, verifier := pair[0], pair[1]
			jws := idToken(issuer)
			// The test clock runs on in real time too: what counts is
			// whether the token was surely issued before the activation.
			issuedBefore := issuer.clock.Now().Before(r.Key.ActivatesAt)
			set := jwks(verifier)
			if _, err := jws.Verify(set); err != nil {
				t.Fatalf("%s after the rotation: an ID token of %s (kid %s) does not verify with the JWKS of %s %v: %v",
					elapsed, issuer.issuer, kid(jws), verifier.issuer, kids(set), err)
			}
			if issuedBefore && kid(jws) != old {
				t.Fatalf("%s after the rotation, before the activation, %s signs with %s, want the old key %s",
					elapsed, issuer.issuer, kid(jws), old)
			}
			if kid(jws) == old {
				lastOld = jws
			}
		}
		advance(step)
	}
	for _, e := range []*env{e1, e2} {
		if got := kid(idToken(e)); got != next {
			t.Errorf("after the activation %s signs with %s, want the new key %s", e.issuer, got, next)
		}
	}

	// The old key's tokens verify everywhere until they expire; then the
	// key leaves every JWKS.
	var claims struct{ Exp int64 }
	if err := json.Unmarshal(lastOld.UnsafePayloadWithoutVerification(), &claims); err != nil {
		t.Fatal(err)
	}
	if exp := time.Unix(claims.Exp, 0); exp.After(*r.Previous.ExpiresAt) {
		t.Errorf("an ID token signed with the old key expires at %v, after the key leaves the JWKS at %v", exp, r.Previous.ExpiresAt)
	}
	advance(r.Previous.ExpiresAt.Add(-time.Second).Sub(e1.clock.Now()))
	for _, e := range []*env{e1, e2} {
		set := jwks(e)
		if _, err := lastOld.Verify(set); err != nil || !slices.Equal(kids(set), []string{next, old}) {
			t.Errorf("a second before the old key expires %s publishes %v (%v), want [%s %s]", e.issuer, kids(set), err, next, old)
		}
	}
	advance(2 * time.Second)
	for _, e := range []*env{e1, e2} {
		if got := kids(jwks(e)); !slices.Equal(got, []string{next}) {
			t.Errorf("after the old key expired %s publishes %v, want [%s]", e.issuer, got, next)
		}
	}
}
