package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// What the benchmark prepares before it measures anything.
const (
	benchUsers       = 16
	sessionsPerUser  = 4
	introspectTokens = 256  // distinct access tokens introspection cycles over
	unknownTokens    = 1000 // well-formed tokens the server never issued
	// sessionCookie is the login session cookie's name for an http issuer
	// at the root (authz's cookieNames); prepare checks it works.
	sessionCookie = "authz_session"
	redirectURI   = "https://app.example.com/callback"
	bffScope      = "openid profile email offline_access"
	machineScope  = "api.read"
)

// fixtures are the clients, users, sessions and tokens the runs use.
type fixtures struct {
	bff, resourceServer, machine authz.ClientMetadata // with their secrets
	sessions                     []string             // login session cookies
	accessTokens                 []string             // active, to introspect
	unknownTokens                []string
}

// prepare registers three clients: a BFF (confidential, skips consent, as
// a first-party app would), a resource server that introspects, and a
// machine client for client_credentials; it creates users with login
// sessions, and mints access tokens through the real signed-in flow.
func prepare(ctx context.Context, store *storage.Store, issuer, idTokenAlg string) (*fixtures, error) {
	f := &fixtures{}
	var err error
	if f.bff, err = authz.CreateClient(ctx, store, authz.ClientMetadata{
		ClientName: "bench BFF", RedirectURIs: []string{redirectURI}, Scope: bffScope,
		TokenEndpointAuthMethod: "client_secret_basic", SkipConsent: true, IDTokenSignedResponseAlg: idTokenAlg,
	}); err != nil {
		return nil, fmt.Errorf("create the BFF client: %w", err)
	}
	if f.resourceServer, err = authz.CreateClient(ctx, store, authz.ClientMetadata{
		ClientName: "bench API", GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: "client_secret_basic",
	}); err != nil {
		return nil, fmt.Errorf("create the resource server's client: %w", err)
	}
	if f.machine, err = authz.CreateClient(ctx, store, authz.ClientMetadata{
		ClientName: "bench machine", GrantTypes: []string{"client_credentials"}, Scope: machineScope + " api.write",
		TokenEndpointAuthMethod: "client_secret_basic",
	}); err != nil {
		return nil, fmt.Errorf("create the machine client: %w", err)
	}
	if f.sessions, err = createSessions(ctx, store); err != nil {
		return nil, err
	}
	// The signed-in flow, in this process: it checks the whole set-up
	// (cookie, client, consent skipped) before anything is measured.
	job := Job{
		Op: opFlow, Issuer: issuer, Concurrency: 8, Duration: time.Minute, MaxOutputs: introspectTokens,
		OutputAccess: true, Sessions: f.sessions, CookieName: sessionCookie,
		ClientID: f.bff.ClientID, Secret: f.bff.ClientSecret, RedirectURI: redirectURI, Scope: bffScope,
	}
	d, err := newDriver(job)
	if err != nil {
		return nil, err
	}
	res, err := d.run(ctx, hooks{})
	if err != nil {
		return nil, err
	}
	if res.Errors > 0 || len(res.Outputs) < introspectTokens {
		return nil, fmt.Errorf("the signed-in flow failed while preparing (%d of %d failed): %s", res.Errors, res.Requests, res.ErrorSample)
	}
	f.accessTokens = res.Outputs[:introspectTokens]
	f.unknownTokens = lookalikes(f.accessTokens[0], unknownTokens)
	return f, nil
}

// createSessions creates the users (each password hash takes Argon2id's
// time, so two at once) and signs each in a few times.
func createSessions(ctx context.Context, store *storage.Store) ([]string, error) {
	users := make([]*storage.User, benchUsers)
	errs := make([]error, benchUsers)
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := "bench-user-" + strconv.Itoa(i)
			u := &storage.User{Username: name, Email: name + "@example.com", EmailVerified: true, Name: "Bench User " + strconv.Itoa(i)}
			pw := make([]byte, 16)
			_, _ = rand.Read(pw)
			if err := store.CreateUser(ctx, u, fmt.Sprintf("%x", pw)); err != nil {
				errs[i] = fmt.Errorf("create user: %w", err)
				return
			}
			users[i] = u
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var cookies []string
	for range sessionsPerUser {
		for _, u := range users {
			c, _, err := store.CreateLoginSession(ctx, u.ID, 24*time.Hour)
			if err != nil {
				return nil, fmt.Errorf("create login session: %w", err)
			}
			cookies = append(cookies, c)
		}
	}
	return cookies, nil
}

// lookalikes returns n random tokens shaped like token: the same length,
// the same separators, URL-safe base64 elsewhere.
func lookalikes(token string, n int) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	out := make([]string, n)
	buf := make([]byte, len(token))
	for i := range out {
		_, _ = rand.Read(buf)
		b := []byte(token)
		for j := range b {
			if b[j] != '.' {
				b[j] = alphabet[buf[j]%64]
			}
		}
		out[i] = string(b)
	}
	return out
}
