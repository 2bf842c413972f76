package devserver

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/bff"
	"github.com/authz/authz/storage"
)

// The demo data that dev seeds once. The ids are fixed so that a restart
// finds them, and so that README examples can name them.
const (
	demoUsername    = "alice"
	demoBFF         = "demo-bff"
	demoSPA         = "demo-spa"
	demoAPI         = "demo-api"
	demoCLI         = "demo-cli" // a public device-flow client (RFC 8628)
	demoRedirectSPA = "http://localhost:5173/callback"

	// DefaultBFFListen and DefaultAPIListen are where --demo runs the demo
	// apps (internal/demo/bff and api).
	DefaultBFFListen = "127.0.0.1:3000"
	DefaultAPIListen = "127.0.0.1:4000"
	// How long the demo apps wait for discovery: the provider is up
	// already, so only an issuer this machine cannot reach takes long.
	demoStartupTimeout = 10 * time.Second
)

// demoFile keeps the demo credentials in the data directory.
const demoFile = "demo.json"

// demoClients are the demo clients; the BFF's pages are at bffOrigin
// (http://localhost:3000 unless --demo-bff-listen says another port), the
// origin of its redirect and post-logout redirect URIs. With a jwtResource
// (the demo API's URL) demo-bff gets JWT access tokens for it.
func demoClients(bffOrigin, jwtResource string) []authz.ClientMetadata {
	clients := []authz.ClientMetadata{{
		ClientID:                demoBFF,
		ClientName:              "Contacts demo",
		RedirectURIs:            []string{bffOrigin + "/callback"},
		Scope:                   bff.DefaultScope,
		TokenEndpointAuthMethod: "client_secret_basic",
		PostLogoutRedirectURIs:  []string{bffOrigin + "/"},
	}, {
		ClientID:                demoSPA,
		ClientName:              "Contacts SPA",
		RedirectURIs:            []string{demoRedirectSPA},
		Scope:                   "openid profile email",
		TokenEndpointAuthMethod: "none",
	}, {
		ClientID:                demoAPI,
		ClientName:              "Contacts API",
		GrantTypes:              []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}, {
		ClientID:                demoCLI,
		ClientName:              "Contacts CLI",
		GrantTypes:              []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"},
		Scope:                   "openid profile email",
		TokenEndpointAuthMethod: "none",
	}}
	if jwtResource != "" {
		clients[0].AccessTokenStrategy, clients[0].Audience = "jwt", []string{jwtResource}
	}
	return clients
}

// demoCredentials are the demo user's password and the demo clients'
// secrets, kept in the data directory (0600) so that every start can print
// them: the database has only their hashes.
type demoCredentials struct {
	Password      string            `json:"alice_password"`
	ClientSecrets map[string]string `json:"client_secrets"`

	// passwordUnknown: alice existed, with another password. She may be
	// someone's own test user, so she is left alone.
	passwordUnknown bool
}

func loadDemo(path string) (*demoCredentials, error) {
	d := &demoCredentials{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte("{}"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read demo credentials: %w", err)
	}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to have new demo credentials made)", path, err)
	}
	if d.ClientSecrets == nil {
		d.ClientSecrets = map[string]string{}
	}
	return d, nil
}

func (d *demoCredentials) save(path string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write demo credentials: %w", err)
	}
	return nil
}

// seedDemo makes sure the demo user and clients exist and that the
// credentials in path work: what is missing is created once. A demo
// client's secret that path does not know (the file was deleted, or the
// database was seeded from another data directory) is replaced, so that
// what the banner shows works, and its redirect URIs are set to this run's
// (the BFF's port may change); a user alice with another password is left
// alone (she may be someone's own, made by hand with authz users create).
func seedDemo(ctx context.Context, store *storage.Store, path string, clients []authz.ClientMetadata, logger *slog.Logger) (*demoCredentials, error) {
	creds, err := loadDemo(path)
	if err != nil {
		return nil, err
	}
	if err := seedUser(ctx, store, creds, path, logger); err != nil {
		return nil, err
	}
	for _, m := range clients {
		if err := seedClient(ctx, store, m, creds, path, logger); err != nil {
			return nil, err
		}
	}
	return creds, nil
}

func seedUser(ctx context.Context, store *storage.Store, creds *demoCredentials, path string, logger *slog.Logger) error {
	if creds.Password == "" {
		// Saved before it is used, so that it is never lost.
		creds.Password = strings.ToLower(rand.Text()[:16])
		if err := creds.save(path); err != nil {
			return err
		}
	}
	u, err := store.UserByUsername(ctx, demoUsername)
	if errors.Is(err, storage.ErrNotFound) {
		u = &storage.User{Username: demoUsername, Name: "Alice Example", Email: "alice@example.com", EmailVerified: true}
		err = store.CreateUser(ctx, u, creds.Password)
		if err == nil {
			logger.Info("created the demo user", "username", demoUsername)
			return nil
		}
		if !errors.Is(err, storage.ErrAlreadyExists) {
			return fmt.Errorf("create the demo user: %w", err)
		}
		u, err = store.UserByUsername(ctx, demoUsername) // another instance was first
	}
	if err != nil {
		return fmt.Errorf("look up the demo user: %w", err)
	}
	if storage.CompareSecret(u.PasswordHash, creds.Password) != nil {
		creds.passwordUnknown = true
		logger.Warn("the user "+demoUsername+" exists already with a password not in "+path+"; leaving her alone",
			"hint", "set one with: authz users set-password "+demoUsername+" --password-stdin")
	}
	return nil
}

func seedClient(ctx context.Context, store *storage.Store, m authz.ClientMetadata, creds *demoCredentials, path string, logger *slog.Logger) error {
	existing, err := store.Client(ctx, m.ClientID)
	if errors.Is(err, storage.ErrNotFound) {
		// The server generates confidential clients' secrets (256 bits,
		// stored with a fast hash); they are saved right after.
		created, err := authz.CreateClient(ctx, store, m)
		if err == nil {
			logger.Info("created a demo client", "client_id", m.ClientID)
			if created.ClientSecret == "" {
				return nil
			}
			creds.ClientSecrets[m.ClientID] = created.ClientSecret
			return creds.save(path)
		}
		if !errors.Is(err, authz.ErrClientExists) {
			return fmt.Errorf("create demo client %s: %w", m.ClientID, err)
		}
		existing, err = store.Client(ctx, m.ClientID) // another instance was first
	}
	if err != nil {
		return fmt.Errorf("look up demo client %s: %w", m.ClientID, err)
	}
	// The demo clients are dev's: their redirect URIs are this run's.
	moved := !slices.Equal(existing.RedirectURIs, m.RedirectURIs) || !slices.Equal(existing.PostLogoutRedirectURIs, m.PostLogoutRedirectURIs)
	if moved {
		existing.RedirectURIs, existing.PostLogoutRedirectURIs = m.RedirectURIs, m.PostLogoutRedirectURIs
	}
	// So are their access tokens: JWT or opaque, as this run asks.
	strategy := cmp.Or(m.AccessTokenStrategy, "opaque")
	retokened := cmp.Or(existing.AccessTokenStrategy, "opaque") != strategy || !slices.Equal(existing.Audience, m.Audience)
	if retokened {
		existing.AccessTokenStrategy, existing.Audience = strategy, m.Audience
	}
	secret := creds.ClientSecrets[m.ClientID]
	rekey := existing.TokenEndpointAuthMethod != "none" && (secret == "" || storage.CompareSecret(existing.SecretHash, secret) != nil)
	if rekey {
		if secret, err = storage.GenerateSecret(); err != nil {
			return err
		}
		creds.ClientSecrets[m.ClientID] = secret
		if err := creds.save(path); err != nil { // before it is used, so that it is never lost
			return err
		}
		existing.SecretHash = storage.HashGeneratedSecret(secret)
	}
	if !moved && !rekey && !retokened {
		return nil
	}
	if err := store.UpdateClient(ctx, existing); err != nil {
		return fmt.Errorf("update demo client %s: %w", m.ClientID, err)
	}
	if rekey {
		logger.Warn("gave a demo client a new secret: the one it had is not in "+path, "client_id", m.ClientID)
	}
	if retokened {
		logger.Info("set a demo client's access tokens", "client_id", m.ClientID, "access_token_strategy", strategy, "audience", m.Audience)
	}
	if moved {
		logger.Info("set a demo client's redirect URIs", "client_id", m.ClientID, "redirect_uris", m.RedirectURIs,
			"post_logout_redirect_uris", m.PostLogoutRedirectURIs)
	}
	return nil
}

// devHome is what the home page shows under dev: what the banner shows.
func devHome(issuer, bffOrigin string, creds *demoCredentials) *authz.DevHome {
	redirect := bffOrigin + "/callback"
	h := &authz.DevHome{
		Username:  demoUsername,
		Password:  creds.Password,
		SignInURL: demoAuthorizeURL(issuer, redirect),
		Clients: []authz.DevClient{
			{ID: demoBFF, Secret: creds.ClientSecrets[demoBFF], Kind: "confidential BFF", RedirectURIs: []string{redirect}},
			{ID: demoSPA, Kind: "public SPA, PKCE S256 required", RedirectURIs: []string{demoRedirectSPA}},
			{ID: demoAPI, Secret: creds.ClientSecrets[demoAPI], Kind: "resource server: introspection"},
			{ID: demoCLI, Kind: "public CLI, device flow (RFC 8628)"},
		},
	}
	if creds.passwordUnknown {
		h.Password = ""
	}
	return h
}

// demoAuthorizeURL is the demo BFF's authorization request, by hand.
func demoAuthorizeURL(issuer, redirectURI string) string {
	return issuer + "/oauth2/authorize?" + encodeOrdered(
		"response_type", "code",
		"client_id", demoBFF,
		"redirect_uri", redirectURI,
		"scope", "openid profile contacts",
		"state", "demo")
}

// encodeOrdered is url.Values.Encode keeping the order given, with
// spaces as %20: easier to read than the sorted, +-for-space form.
func encodeOrdered(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + strings.ReplaceAll(url.QueryEscape(kv[i+1]), "+", "%20"))
	}
	return b.String()
}

// printCredentials prints the demo credentials as JSON, for --seed-only.
// alice_password is left out when alice existed with another password.
func printCredentials(w io.Writer, creds *demoCredentials) error {
	out := struct {
		Username      string            `json:"username"`
		Password      string            `json:"alice_password,omitempty"`
		ClientSecrets map[string]string `json:"client_secrets"`
	}{demoUsername, creds.Password, creds.ClientSecrets}
	if creds.passwordUnknown {
		out.Password = ""
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
