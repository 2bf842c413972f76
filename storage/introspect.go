package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// AccessTokenView is what introspection answers about an access token,
// read without building a fosite request: the row's own columns, its
// client (from the client cache) and the stored session, left encoded for
// the caller to read what it needs of it.
type AccessTokenView struct {
	RequestedAt     time.Time
	GrantedScopes   []string
	GrantedAudience []string
	Active          bool
	Client          *Client
	Session         []byte
}

// introspectSQL reads a signature from both token tables in one
// statement, access tokens first. LIMIT 1 stops the Append at the first
// row found, so an access token (the usual question) costs one index
// probe, not two.
const introspectSQL = `(SELECT true AS access, t.request_id, t.requested_at, t.requested_scopes,
		t.granted_scopes, t.requested_audience, t.granted_audience, t.form, t.session, t.active,
		NULL::timestamptz AS rotated_at, t.client_id
	FROM access_tokens t WHERE t.signature = $1)
	UNION ALL
	(SELECT false, t.request_id, t.requested_at, t.requested_scopes,
		t.granted_scopes, t.requested_audience, t.granted_audience, t.form, t.session, t.active,
		t.rotated_at, t.client_id
	FROM refresh_tokens t WHERE t.signature = $1)
	LIMIT 1`

// LookupForIntrospection reads, in one statement, the token that has
// these access and refresh signatures. An access token comes back as a
// view; a refresh token, or no token at all, comes back nil, with what was
// found remembered for the fosite path that then answers (ctx must come
// from WithReads). When the two signatures differ (a JWT), or without a
// live client cache, it only prefetches, as PrefetchToken does.
func (s *Store) LookupForIntrospection(ctx context.Context, accessSignature, refreshSignature string) (*AccessTokenView, error) {
	m := memoOf(ctx)
	signature := accessSignature
	if m == nil || scopeOf(ctx) != nil || !s.clients.live.Load() || !textKey(signature) || refreshSignature != signature {
		return nil, s.PrefetchToken(ctx, accessSignature, refreshSignature)
	}
	var (
		access   bool
		row      requestRow
		clientID string
	)
	err := s.db(ctx).QueryRow(ctx, introspectSQL, signature).Scan(&access, &row.RequestID, &row.RequestedAt,
		&row.RequestedScopes, &row.GrantedScopes, &row.RequestedAudience, &row.GrantedAudience,
		&row.Form, &row.Session, &row.Active, &row.RotatedAt, &clientID)
	if errors.Is(err, pgx.ErrNoRows) {
		m.put(accessTable, signature, memoRow{})
		m.put(refreshTable, signature, memoRow{})
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
		return &AccessTokenView{
			RequestedAt:     row.RequestedAt.UTC(),
			GrantedScopes:   row.GrantedScopes,
			GrantedAudience: row.GrantedAudience,
			Active:          row.Active,
			Client:          cl,
			Session:         row.Session,
		}, nil
	}
	// The access table was asked first and had nothing.
	row.clientRow = *cl
	m.put(accessTable, signature, memoRow{})
	m.put(refreshTable, signature, memoRow{row: &row})
	return nil, nil
}
