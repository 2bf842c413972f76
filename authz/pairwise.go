package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Pairwise subject identifiers (OpenID Connect Core 8.1). Inside the
// server a session's Subject is always the user's id: lookups, consent,
// revocation by subject and the admin API rely on it. What a client (and
// a resource server asking about its tokens) is told is subjects.of: the
// user id for a public client, and for a pairwise one a value derived from
// the client's sector and the user id, so that apps in different sectors
// cannot join their users. The ID token's claims carry the sub the client
// sees; userinfo, introspection and JWT access tokens translate at their
// edge.

// subjects derives the sub each client sees.
type subjects struct {
	// salt is the installation's pairwise salt (storage.PairwiseSalt):
	// not a system secret, which rotates and would move every sub.
	salt []byte
}

// of is the sub client sees for userID.
func (s *subjects) of(client fosite.Client, userID string) string {
	if !isPairwise(client) || userID == "" {
		return userID
	}
	return pairwiseSubject(s.salt, client.(*storage.Client).Sector, userID)
}

// isPairwise reports whether client knows its users by pairwise subjects.
func isPairwise(client fosite.Client) bool {
	c, ok := client.(*storage.Client)
	return ok && c != nil && c.SubjectType == "pairwise"
}

// pairwiseSubject is base64url(HMAC-SHA256(salt, sector || 0x00 || user)):
// opaque, stable for one (sector, user), not reversible without the salt.
// The NUL, which no host contains, keeps apart pairs that would
// concatenate alike.
func pairwiseSubject(salt []byte, sector, userID string) string {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(sector))
	m.Write([]byte{0})
	m.Write([]byte(userID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// maxSectorDocumentBytes bounds a sector_identifier_uri document.
const maxSectorDocumentBytes = maxJWKSURIBytes

// resolveSector returns the sector of a client registered with m: "" for a
// public client; for a pairwise one the host of its sector_identifier_uri,
// whose document must list every redirect URI, or else the one host its
// redirect URIs share, when they are all https: the host of a URI proves
// something only when codes can reach nobody else through it. A client
// whose redirect URIs are private-use schemes or loopback addresses
// (anyone's app may use them, with any host in them), or on several
// hosts, or that signs no one in through a redirect (a device or machine
// client), has a sector of its own: "client:" and its id. It may fetch,
// so it runs outside any transaction, or is resolved before one
// (presolveSector).
func resolveSector(ctx context.Context, m *ClientMetadata) (string, error) {
	if m.SubjectType != "pairwise" {
		return "", nil
	}
	if r, ok := ctx.Value(resolvedSectorKey{}).(resolvedSector); ok && r.key == sectorKey(m) {
		return r.sector, nil
	}
	if m.SectorIdentifierURI != "" {
		return sectorFromDocument(ctx, m.SectorIdentifierURI, m.RedirectURIs)
	}
	if host, ok := redirectHost(m); ok {
		return host, nil
	}
	if m.ClientID == "" {
		return "", invalidMetadata("subject_type pairwise: the client has no id yet") // createClient assigns one first
	}
	return "client:" + m.ClientID, nil
}

// redirectHost is the one host of m's redirect URIs when the client signs
// people in through them and they are all https to that host (not a
// loopback address).
func redirectHost(m *ClientMetadata) (string, bool) {
	if !slices.Contains(m.GrantTypes, "authorization_code") && !slices.Contains(m.GrantTypes, "implicit") {
		return "", false
	}
	host := ""
	for _, raw := range m.RedirectURIs {
		u, err := url.Parse(raw)
		if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Hostname() == "" || loopbackRedirect(u) {
			return "", false
		}
		h := strings.ToLower(u.Hostname())
		if host != "" && h != host {
			return "", false
		}
		host = h
	}
	return host, host != ""
}

// sectorKey is what a client's sector is resolved from.
func sectorKey(m *ClientMetadata) string {
	return strings.Join(append([]string{m.ClientID, m.SubjectType, m.SectorIdentifierURI, strings.Join(m.GrantTypes, " ")}, m.RedirectURIs...), "\x00")
}

type resolvedSectorKey struct{}

type resolvedSector struct{ key, sector string }

// presolveSector resolves the sector of client id updated to m now,
// before the caller's transaction locks the client's row, so that
// UpdateClient, called within it with the same metadata, need not fetch
// a sector_identifier_uri while holding the lock and a connection. The
// error is the one UpdateClient would return.
func presolveSector(ctx context.Context, id string, m ClientMetadata) (context.Context, error) {
	m.ClientID = id
	m.Normalize()
	if m.SubjectType != "pairwise" {
		return ctx, nil
	}
	sector, err := resolveSector(ctx, &m)
	if err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, resolvedSectorKey{}, resolvedSector{sectorKey(&m), sector}), nil
}

// sectorFromDocument fetches the sector_identifier_uri document (OpenID
// Connect Registration 5), checks that it lists every redirect URI and
// returns its host. Every failure is the client's: invalid_client_metadata
// with the reason.
func sectorFromDocument(ctx context.Context, location string, redirectURIs []string) (string, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return "", invalidMetadata("sector_identifier_uri %q is not an https URL", location)
	}
	raw, _, err := fetchDocument(ctx, sectorClientOf(ctx), location, maxSectorDocumentBytes)
	if err != nil {
		return "", invalidMetadata("sector_identifier_uri %s could not be used: %v", location, err)
	}
	var listed []string
	if err := json.Unmarshal(raw, &listed); err != nil {
		return "", invalidMetadata("sector_identifier_uri %s does not serve a JSON array of URLs: %v", location, err)
	}
	for _, r := range redirectURIs {
		if !slices.Contains(listed, r) {
			return "", invalidMetadata("sector_identifier_uri %s does not list the redirect URI %s", location, r)
		}
	}
	return strings.ToLower(u.Hostname()), nil
}

// sectorClientKey is the context key of the HTTP client that fetches
// sector_identifier_uri documents.
type sectorClientKey struct{}

// withSectorClient returns ctx carrying c for sector_identifier_uri
// fetches: client management is called from the registration endpoint,
// the admin API and the CLI, and only the first two know the
// configuration.
func withSectorClient(ctx context.Context, c *http.Client) context.Context {
	return context.WithValue(ctx, sectorClientKey{}, c)
}

// sectorClientOf is the client ctx carries, else one with the jwks_uri
// rules and no exception: public addresses only.
func sectorClientOf(ctx context.Context) *http.Client {
	if c, ok := ctx.Value(sectorClientKey{}).(*http.Client); ok && c != nil {
		return c
	}
	return defaultSectorClient
}

var defaultSectorClient = newFetchClient(&Config{})

// sectorFetching is middleware that puts the sector_identifier_uri
// fetching client cfg asks for in each request's context
// (withSectorClient), for the handlers that create and update clients.
func sectorFetching(cfg *Config) func(http.Handler) http.Handler {
	client := newFetchClient(cfg)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(withSectorClient(r.Context(), client)))
		})
	}
}

// keepSector refuses an update that would move a pairwise client to
// another sector: every sub its users have would change under it.
// Moving between public and pairwise is allowed (and changes them all too;
// the README says so).
func keepSector(cur *storage.Client, next *storage.Client) error {
	if cur.SubjectType == "pairwise" && next.SubjectType == "pairwise" && cur.Sector != next.Sector {
		return invalidMetadata("this update would move the pairwise client from sector %s to %s, which would change the sub of every user it knows; "+
			"keep redirect URIs on %s or register a sector_identifier_uri on that host listing them all", cur.Sector, next.Sector, cur.Sector)
	}
	return nil
}
