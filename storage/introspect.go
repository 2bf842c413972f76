package storage

import (
	"context"
	"errors"
	"time"
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

// introspectAccess reads access tokens for introspection: their rows
// without form and session. A token's expiry and subject are columns
// written from the session (createRequest) and never changed, and the
// username is picked out of the jsonb by key.
const introspectAccess = `SELECT t.signature, true AS access, t.request_id, t.requested_at, NULL::text[] AS requested_scopes,
		t.granted_scopes, NULL::text[] AS requested_audience, t.granted_audience, NULL::jsonb AS form,
		NULL::jsonb AS session, t.active, NULL::timestamptz AS rotated_at, t.client_id,
		t.expires_at, t.subject, COALESCE(t.session->>'username', '') AS username
	FROM access_tokens t WHERE t.signature `

// introspectRefresh reads refresh tokens whole, for fosite, in the
// columns of introspectAccess.
const introspectRefresh = `
	UNION ALL
	SELECT t.signature, false, t.request_id, t.requested_at, t.requested_scopes,
		t.granted_scopes, t.requested_audience, t.granted_audience, t.form, t.session, t.active,
		t.rotated_at, t.client_id, NULL, '', ''
	FROM refresh_tokens t WHERE t.signature `

// The statements of a batch of lookups: signatures $1 from the access
// table and, unless every caller expects an access token, $2 from the
// refresh table as well (PostgreSQL sets up both scans for every
// statement that names both tables). A batch of one asks with = rather
// than = ANY: PostgreSQL plans an array parameter afresh at every
// execution, which cost a lone lookup ~50 us more.
const (
	introspectAccessSQL    = introspectAccess + `= ANY($1::text[])`
	introspectSQL          = introspectAccess + `= ANY($1::text[])` + introspectRefresh + `= ANY($2::text[])`
	introspectAccessOneSQL = introspectAccess + `= $1`
	introspectOneSQL       = introspectAccess + `= $1` + introspectRefresh + `= $1`
)

// How introspection lookups are batched (coalescer). One batch in flight
// at a time: under load the next batch gathers what arrived during the
// last one's round trip, and PostgreSQL's CPU per lookup was a third of a
// lone statement's at 32 concurrent callers (two in flight: half, with a
// higher p99). A batch running 25 ms, some hundred times a healthy one,
// lets another start beside it.
const (
	introspectInFlight = 1
	introspectBatch    = 64
	introspectStuck    = 25 * time.Millisecond
)

// introspectKey is one lookup: a signature, and whether the caller
// expects an access token (the refresh table is then not read).
type introspectKey struct {
	signature  string
	accessOnly bool
}

// introspectRow is what one lookup found, if anything: an access token's
// row (with the columns of AccessTokenView) or a refresh token's whole.
type introspectRow struct {
	found, access     bool
	row               requestRow
	clientID          string
	expiresAt         *time.Time
	subject, username string
}

// lookupTokens runs one batch of introspection lookups as one statement.
func (s *Store) lookupTokens(ctx context.Context, keys []introspectKey) ([]introspectRow, error) {
	access := make([]string, 0, len(keys))
	var refresh []string
	for _, k := range keys {
		access = append(access, k.signature)
		if !k.accessOnly {
			refresh = append(refresh, k.signature)
		}
	}
	sql, args := introspectAccessSQL, []any{access}
	switch {
	case len(keys) == 1 && refresh == nil:
		sql, args = introspectAccessOneSQL, []any{access[0]}
	case len(keys) == 1:
		sql, args = introspectOneSQL, []any{access[0]}
	case refresh != nil:
		sql, args = introspectSQL, []any{access, refresh}
	}
	found := make(map[string]introspectRow, len(keys))
	err := autocommit{s.pool}.retry(ctx, func(ctx context.Context, q querier) error {
		clear(found)
		rows, err := q.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				sig string
				r   = introspectRow{found: true}
			)
			if err := rows.Scan(&sig, &r.access, &r.row.RequestID, &r.row.RequestedAt,
				&r.row.RequestedScopes, &r.row.GrantedScopes, &r.row.RequestedAudience, &r.row.GrantedAudience,
				&r.row.Form, &r.row.Session, &r.row.Active, &r.row.RotatedAt, &r.clientID, &r.expiresAt,
				&r.subject, &r.username); err != nil {
				return err
			}
			// Were a signature in both tables, the access token answers,
			// as fosite's path (access first) would have it.
			if prev, ok := found[sig]; !ok || !prev.access {
				found[sig] = r
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	out := make([]introspectRow, len(keys))
	for i, k := range keys {
		if r, ok := found[k.signature]; ok && (r.access || !k.accessOnly) {
			out[i] = r
		}
	}
	return out, nil
}

// LookupForIntrospection reads, in one statement, the token that has
// these access and refresh signatures; concurrent lookups share one
// statement (coalescer). An access token comes back as a
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
	r, err := s.introspections.do(ctx, introspectKey{signature: signature, accessOnly: accessOnly})
	if err != nil {
		recordFault(ctx, err)
		return nil, translate("introspect", err)
	}
	if !r.found {
		m.put(accessTable, signature, memoRow{})
		if !accessOnly {
			m.put(refreshTable, signature, memoRow{})
		}
		return nil, nil
	}
	row := r.row
	cl, err := s.cachedClient(ctx, r.clientID)
	if errors.Is(err, ErrNotFound) {
		// The client was deleted since: its tokens go with it.
		m.put(accessTable, signature, memoRow{})
		m.put(refreshTable, signature, memoRow{})
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.access {
		v := &AccessTokenView{
			RequestedAt:     row.RequestedAt.UTC(),
			Subject:         r.subject,
			Username:        r.username,
			GrantedScopes:   row.GrantedScopes,
			GrantedAudience: row.GrantedAudience,
			Active:          row.Active,
			Client:          cl,
		}
		if r.expiresAt != nil {
			v.ExpiresAt = r.expiresAt.UTC()
		}
		return v, nil
	}
	// The access table was asked first and had nothing.
	row.clientRow = *cl
	m.put(accessTable, signature, memoRow{})
	m.put(refreshTable, signature, memoRow{row: &row})
	return nil, nil
}
