package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// What lets the token endpoint tell a client why its code or refresh token
// was refused. The lookups are read-only: they run on the pool, after the
// request's own transaction, and change nothing.

// CodeUse is what became of an authorization code that is no longer active.
type CodeUse int

const (
	// CodeActive: the code can still be redeemed.
	CodeActive CodeUse = iota
	// CodeExchanged: tokens were issued from the code.
	CodeExchanged
	// CodeSpentByFailure: an earlier exchange failed, which spends the
	// code, and no tokens were issued from it.
	CodeSpentByFailure
	// CodeUsedUnknown: the code is used up and nothing left tells how. A
	// second use revokes the access tokens of the first (deletes their
	// rows), so a code that gave only an access token looks like this.
	CodeUsedUnknown
)

// CodeHistory is an authorization code's state, for an error message.
type CodeHistory struct {
	ClientID string
	Use      CodeUse
	// RedirectURI is the redirect_uri of the authorization request, ""
	// when it named none.
	RedirectURI string
	ExpiresAt   time.Time
}

// CodeHistory looks up the code with signature. A code that tokens were
// issued from still shows it once they are revoked: refresh token rows
// stay (inactive) until they expire, and an OpenID Connect code's session
// is deleted only by a successful exchange. It returns ErrNotFound for an
// unknown code.
func (s *Store) CodeHistory(ctx context.Context, signature string) (CodeHistory, error) {
	var (
		h                          CodeHistory
		active, tokens, oidc, open bool
		expires                    *time.Time
	)
	if !textKey(signature) {
		return h, fmt.Errorf("code history: %w", ErrNotFound)
	}
	// Refresh tokens are found by subject and client (indexed; the
	// request id index covers active rows only), then request id.
	err := s.pool.QueryRow(ctx, `
		SELECT c.client_id, c.active, c.expires_at, COALESCE(c.form->'redirect_uri'->>0, ''),
		       'openid' = ANY (c.granted_scopes),
		       EXISTS (SELECT 1 FROM access_tokens a WHERE a.request_id = c.request_id)
		         OR EXISTS (SELECT 1 FROM refresh_tokens r
		                    WHERE r.subject = c.subject AND r.client_id = c.client_id AND r.request_id = c.request_id),
		       EXISTS (SELECT 1 FROM oidc_sessions o WHERE o.request_id = c.request_id)
		FROM authorization_codes c WHERE c.signature = $1`, signature).
		Scan(&h.ClientID, &active, &expires, &h.RedirectURI, &oidc, &tokens, &open)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, fmt.Errorf("code history: %w", ErrNotFound)
	}
	if err != nil {
		return h, translate("code history", err)
	}
	if expires != nil {
		h.ExpiresAt = expires.UTC()
	}
	switch {
	case active:
		h.Use = CodeActive
	case tokens || (oidc && !open):
		h.Use = CodeExchanged
	case oidc && open:
		h.Use = CodeSpentByFailure
	default:
		h.Use = CodeUsedUnknown
	}
	return h, nil
}

// RefreshInactive is the error for a refresh token that is no longer
// active: it is fosite.ErrInactiveToken (fosite then revokes the token's
// grant), and says whether the token was rotated or revoked. Only the
// lookup can say: fosite deletes the token's row right after it.
// GetRefreshTokenSession returns it.
type RefreshInactive struct {
	// RotatedAt is when the token was exchanged for a new one; zero for
	// a token revoked without being used (by RFC 7009 revocation, or with
	// its grant after a reuse was detected).
	RotatedAt time.Time
}

func (e *RefreshInactive) Error() string {
	if e.RotatedAt.IsZero() {
		return "refresh token revoked"
	}
	return "refresh token rotated at " + e.RotatedAt.UTC().Format(time.RFC3339)
}

// Unwrap makes it fosite.ErrInactiveToken to errors.Is and errors.As.
func (e *RefreshInactive) Unwrap() error { return fosite.ErrInactiveToken }
