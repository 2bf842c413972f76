package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// AccessTokenView is what introspection answers about an access token,
// read without building a fosite request: the row's own columns, its
// client (from the client cache) and the one field of the stored session
// that has no column of its own. The session itself is neither sent by
// PostgreSQL nor decoded here.
type AccessTokenView struct {
	RequestedAt     time.Time
	ExpiresAt       time.Time // zero: the session set none
	Subject         string
	Username        string
	GrantedScopes   []string
	GrantedAudience []string
	Active          bool
	Client          *Client
}

// introspectAccessSQL reads an access token for introspection: its row
// without form and session. Its expiry and subject are columns written
// from the session (createRequest) and never changed, and the username is
// picked out of the jsonb by key. The columns are those of introspectSQL.
const introspectAccessSQL = `SELECT true AS access, t.request_id, t.requested_at, NULL::text[] AS requested_scopes,
		t.granted_scopes, NULL::text[] AS requested_audience, t.granted_audience, NULL::jsonb AS form,
		NULL::jsonb AS session, t.active, NULL::timestamptz AS rotated_at, t.client_id,
		t.expires_at, t.subject, COALESCE(t.session->>'username', '') AS username
	FROM access_tokens t WHERE t.signature = $1`

// introspectSQL reads a signature from both token tables in one
// statement, access tokens first. LIMIT 1 stops the Append at the first
// row found, so an access token (the usual question) costs one index
// probe, not two; but PostgreSQL still sets up both scans, which is why a
// caller told to expect an access token asks introspectAccessSQL alone. A
// refresh token's row comes whole, for fosite.
const introspectSQL = `(` + introspectAccessSQL + `)
	UNION ALL
	(SELECT false, t.request_id, t.requested_at, t.requested_scopes,
		t.granted_scopes, t.requested_audience, t.granted_audience, t.form, t.session, t.active,
		t.rotated_at, t.client_id, NULL, '', ''
	FROM refresh_tokens t WHERE t.signature = $1)
	LIMIT 1`

// LookupForIntrospection reads, in one statement, the token that has
// these access and refresh signatures. An access token comes back as a
// view; a refresh token, or no token at all, comes back nil, with what was
// found remembered for the fosite path that then answers (ctx must come
// from WithReads). With accessOnly (the caller's hint says access token)
// only the access table is read, and the fosite path reads the refresh
// table if the hint was wrong. When the two signatures differ (a JWT), or
// without a live client cache, it only prefetches, as PrefetchToken does.
func (s *Store) LookupForIntrospection(ctx context.Context, accessSignature, refreshSignature string, accessOnly bool) (*AccessTokenView, error) {
	m := memoOf(ctx)
	signature := accessSignature
	if m == nil || scopeOf(ctx) != nil || !s.clients.live.Load() || !textKey(signature) || refreshSignature != signature {
		return nil, s.PrefetchToken(ctx, accessSignature, refreshSignature)
	}
	var (
		access            bool
		row               requestRow
		clientID          string
		expiresAt         *time.Time
		subject, username string
	)
	sql := introspectSQL
	if accessOnly {
		sql = introspectAccessSQL
	}
	err := s.db(ctx).QueryRow(ctx, sql, signature).Scan(&access, &row.RequestID, &row.RequestedAt,
		&row.RequestedScopes, &row.GrantedScopes, &row.RequestedAudience, &row.GrantedAudience,
		&row.Form, &row.Session, &row.Active, &row.RotatedAt, &clientID, &expiresAt, &subject, &username)
	if errors.Is(err, pgx.ErrNoRows) {
		m.put(accessTable, signature, memoRow{})
		if !accessOnly {
			m.put(refreshTable, signature, memoRow{})
		}
		return nil, nil
	}
	if err != nil {
		return nil, translate("introspect", err)
	}
	cl, err := s.cachedClient(ctx, clientID)
	if errors.Is(err, ErrNotFound) {
		// The client was deleted since: its tokens go with it.
		m.put(accessTable, signature, memoRow{})
		m.put(refreshTable, signature, memoRow{})
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if access {
		v := &AccessTokenView{
			RequestedAt:     row.RequestedAt.UTC(),
			Subject:         subject,
			Username:        username,
			GrantedScopes:   row.GrantedScopes,
			GrantedAudience: row.GrantedAudience,
			Active:          row.Active,
			Client:          cl,
		}
		if expiresAt != nil {
			v.ExpiresAt = expiresAt.UTC()
		}
		return v, nil
	}
	// The access table was asked first and had nothing.
	row.clientRow = *cl
	m.put(accessTable, signature, memoRow{})
	m.put(refreshTable, signature, memoRow{row: &row})
	return nil, nil
}
