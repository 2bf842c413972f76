package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	fositestorage "github.com/ory/fosite/storage"
)

// Pin every fosite interface the provider composes: fosite's compose step uses
// unchecked type assertions and would otherwise panic at start-up.
var (
	_ fosite.ClientManager                 = (*Store)(nil)
	_ oauth2.CoreStorage                   = (*Store)(nil)
	_ oauth2.TokenRevocationStorage        = (*Store)(nil)
	_ oauth2.ClientCredentialsGrantStorage = (*Store)(nil)
	_ pkce.PKCERequestStorage              = (*Store)(nil)
	_ openid.OpenIDConnectRequestStorage   = (*Store)(nil)
	_ fositestorage.Transactional          = (*Store)(nil)
	_ fosite.Storage                       = (*Store)(nil)
)

// requestTable names a table holding fosite requests keyed by signature.
// They all share one shape (see migrations/001_initial.sql).
type requestTable string

const (
	codesTable   requestTable = "authorization_codes"
	accessTable  requestTable = "access_tokens"
	refreshTable requestTable = "refresh_tokens"
	pkceTable    requestTable = "pkce_requests"
	oidcTable    requestTable = "oidc_sessions"
)

// expiryKind says which of the session's expiry times bounds a table's rows.
func (t requestTable) expiryKind() fosite.TokenType {
	switch t {
	case accessTable:
		return fosite.AccessToken
	case refreshTable:
		return fosite.RefreshToken
	default: // codes and what is keyed by a code
		return fosite.AuthorizeCode
	}
}

func (s *Store) createRequest(ctx context.Context, table requestTable, signature string, r fosite.Requester, extraCol string, extraVal any) error {
	w, err := requestInsert(ctx, table, signature, r, extraCol, extraVal)
	if err != nil {
		return err
	}
	memoOf(ctx).forget(table, signature)
	return translate("create "+string(table), s.deferWrite(ctx, w))
}

// requestInsert is the insert of r's row into table.
func requestInsert(ctx context.Context, table requestTable, signature string, r fosite.Requester, extraCol string, extraVal any) (*write, error) {
	if r.GetClient() == nil {
		return nil, fmt.Errorf("create %s: request has no client", table)
	}
	session, err := json.Marshal(r.GetSession())
	if err != nil {
		return nil, fmt.Errorf("create %s: encode session: %w", table, err)
	}
	form, err := json.Marshal(formOrEmpty(r.GetRequestForm()))
	if err != nil {
		return nil, fmt.Errorf("create %s: encode form: %w", table, err)
	}
	var subject string
	var expiresAt *time.Time
	if sess := r.GetSession(); sess != nil {
		subject = sess.GetSubject()
		if exp := sess.GetExpiresAt(table.expiryKind()); !exp.IsZero() {
			exp = exp.UTC()
			expiresAt = &exp
		}
	}
	cols := `signature, request_id, requested_at, client_id, subject, requested_scopes, granted_scopes,
		requested_audience, granted_audience, form, session, expires_at`
	// JSON goes as text with a cast, which every pgx query exec mode
	// types right (as []byte, exec and simple_protocol would send bytea).
	vals := `$1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12`
	grantedScopes, grantedAudience := []string(r.GetGrantedScopes()), []string(r.GetGrantedAudience())
	if n := NarrowingOf(ctx); n != nil && n.applied && table == refreshTable {
		grantedScopes, grantedAudience = n.wholeScopes, n.wholeAudience
	}
	args := []any{
		signature, r.GetID(), r.GetRequestedAt().UTC(), r.GetClient().GetID(), subject,
		nonNil(r.GetRequestedScopes()), nonNil(grantedScopes),
		nonNil(r.GetRequestedAudience()), nonNil(grantedAudience),
		string(form), string(session), expiresAt,
	}
	if extraCol != "" {
		cols += ", " + extraCol
		vals += ", $13"
		args = append(args, extraVal)
	}
	row := `(` + vals + `)`
	return &write{
		table: table, insert: true, args: args, row: row, batchKey: r.GetClient().GetID(),
		sql: `INSERT INTO ` + string(table) + ` (` + cols + `) VALUES ` + row,
	}, nil
}

type narrowingKey struct{}

// Narrowing is what a token request asks its access token to carry when
// that is less than the grant it draws on (RFC 8707 resource, RFC 6749 6
// scope on refresh): set before fosite's handler issues the tokens, and
// applied to the request right before the access token is made (Apply),
// after fosite has copied the whole grant onto it. The refresh token
// issued beside it keeps the whole grant: its scope is identical to the
// one it replaces (RFC 6749 6).
type Narrowing struct {
	Scopes   []string // nil: the grant's
	Audience []string // nil: the grant's

	applied                    bool
	wholeScopes, wholeAudience []string
}

// WithNarrowing carries n to the handler that issues the tokens.
func WithNarrowing(ctx context.Context, n *Narrowing) context.Context {
	return context.WithValue(ctx, narrowingKey{}, n)
}

// NarrowingOf returns the narrowing ctx carries, or nil.
func NarrowingOf(ctx context.Context) *Narrowing {
	n, _ := ctx.Value(narrowingKey{}).(*Narrowing)
	return n
}

// Apply narrows r, remembering the whole grant for the refresh token.
func (n *Narrowing) Apply(r fosite.Requester) {
	ar, ok := r.(*fosite.AccessRequest)
	if !ok || n.applied {
		return
	}
	n.applied = true
	n.wholeScopes, n.wholeAudience = slices.Clone(ar.GrantedScope), slices.Clone(ar.GrantedAudience)
	if n.Scopes != nil {
		ar.GrantedScope = fosite.Arguments(n.Scopes)
	}
	if n.Audience != nil {
		ar.GrantedAudience = fosite.Arguments(n.Audience)
	}
}

// requestRow is one stored request with its client, read in one query.
type requestRow struct {
	RotatedAt         *time.Time
	RequestID         string
	RequestedAt       time.Time
	RequestedScopes   []string
	GrantedScopes     []string
	RequestedAudience []string
	GrantedAudience   []string
	Form              []byte
	Session           []byte
	Active            bool
	clientRow
}

// getRequest loads a request and hydrates session (a fresh value of the
// caller's type) from what was stored. It returns the request together with
// active, so callers decide what an inactive row means for them.
func (s *Store) getRequest(ctx context.Context, table requestTable, signature string, session fosite.Session) (*fosite.Request, bool, error) {
	row, err := s.getRow(ctx, table, signature)
	if err != nil {
		return nil, false, err
	}
	req, err := row.request(session)
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", table, err)
	}
	return req, row.Active, nil
}

func (s *Store) getRow(ctx context.Context, table requestTable, signature string) (*requestRow, error) {
	if !textKey(signature) {
		// A key no text column can hold names no row. Asking would fail,
		// and fail the request's transaction with it.
		return nil, fmt.Errorf("get %s: %w", table, fosite.ErrNotFound)
	}
	m := memoOf(ctx)
	if sc := scopeOf(ctx); sc != nil {
		if plan, ok := sc.u.plans[rowKey{table, signature}]; ok {
			delete(sc.u.plans, rowKey{table, signature})
			if err := s.prefetch(ctx, plan...); err != nil {
				return nil, err
			}
		}
	}
	if r, ok := m.get(table, signature); ok {
		if r.row == nil {
			return nil, fmt.Errorf("get %s: %w", table, fosite.ErrNotFound)
		}
		return r.row, nil
	}
	// Inside a transaction a code, or a refresh token the token endpoint
	// may rotate (WithRefreshReuse), is read with a row lock: a
	// concurrent exchange of the same code, or refresh with the same
	// token, waits here until the first one has committed, and then sees
	// it used. Revocation needs no lock: it only deactivates.
	_, rotating := ctx.Value(refreshReuseKey{}).(refreshReuse)
	lock := scopeOf(ctx) != nil && (table == codesTable || table == refreshTable && rotating)
	sql := selectRequest(table, "$1")
	if lock {
		sql += " FOR UPDATE OF t"
	}
	rows, err := s.db(ctx).Query(ctx, sql, signature)
	if err != nil {
		return nil, translate("get "+string(table), err)
	}
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[requestRow])
	if errors.Is(err, pgx.ErrNoRows) {
		m.put(table, signature, memoRow{})
	}
	if err != nil {
		return nil, translate("get "+string(table), err)
	}
	m.put(table, signature, memoRow{row: row, locked: lock})
	return row, nil
}

// selectRequest is the query for one row of table with its client, the
// signature given as arg.
func selectRequest(table requestTable, arg string) string {
	return selectRequestWith(table, arg, clientColumns("c"), " JOIN clients c ON c.id = t.client_id")
}

// selectRequestLean is selectRequest with only the client's id: the rest
// comes from the client cache.
func selectRequestLean(table requestTable, arg string) string {
	return selectRequestWith(table, arg, "t.client_id AS id", "")
}

func selectRequestWith(table requestTable, arg, client, join string) string {
	rotated := "NULL::timestamptz"
	if table == refreshTable {
		rotated = "t.rotated_at"
	}
	return `SELECT t.request_id, t.requested_at, t.requested_scopes, t.granted_scopes,
		       t.requested_audience, t.granted_audience, t.form, t.session, t.active,
		       ` + rotated + ` AS rotated_at, ` + client + `
		FROM ` + string(table) + ` t` + join + `
		WHERE t.signature = ` + arg
}

func (row *requestRow) request(session fosite.Session) (*fosite.Request, error) {
	form := url.Values{}
	if len(row.Form) > 0 {
		if err := json.Unmarshal(row.Form, &form); err != nil {
			return nil, fmt.Errorf("decode form: %w", err)
		}
	}
	if session != nil {
		if err := json.Unmarshal(row.Session, session); err != nil {
			return nil, fmt.Errorf("decode session: %w", err)
		}
	}
	client, err := row.clientRow.client()
	if err != nil {
		return nil, err
	}
	return &fosite.Request{
		ID:                row.RequestID,
		RequestedAt:       row.RequestedAt.UTC(),
		Client:            client,
		RequestedScope:    fosite.Arguments(row.RequestedScopes),
		GrantedScope:      fosite.Arguments(row.GrantedScopes),
		RequestedAudience: fosite.Arguments(row.RequestedAudience),
		GrantedAudience:   fosite.Arguments(row.GrantedAudience),
		Form:              form,
		Session:           session,
	}, nil
}

func (s *Store) deleteRequest(ctx context.Context, table requestTable, signature string) error {
	if !textKey(signature) {
		return fmt.Errorf("delete %s: %w", table, fosite.ErrNotFound)
	}
	m := memoOf(ctx)
	if r, ok := m.get(table, signature); ok && scopeOf(ctx) != nil {
		if r.row == nil {
			return fmt.Errorf("delete %s: %w", table, fosite.ErrNotFound)
		}
		// This transaction has seen the row; should another delete it
		// first, the outcome, no such row, is the same.
		m.put(table, signature, memoRow{})
		return s.deferWrite(ctx, &write{table: table, sql: `DELETE FROM ` + string(table) + ` WHERE signature = $1`, args: []any{signature}})
	}
	m.forget(table, signature)
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM `+string(table)+` WHERE signature = $1`, signature)
	if err != nil {
		return translate("delete "+string(table), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete %s: %w", table, fosite.ErrNotFound)
	}
	return nil
}

// Authorization codes.

func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.createRequest(ctx, codesTable, signature, r, "", nil)
}

// GetAuthorizeCodeSession returns the request of a code. A code that was
// already used returns the request and fosite.ErrInvalidatedAuthorizeCode, so
// fosite can revoke everything the first use issued.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, active, err := s.getRequest(ctx, codesTable, signature, session)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession marks a code used. Of several concurrent
// exchanges of one code exactly one succeeds, the others get
// fosite.ErrInvalidatedAuthorizeCode: either the transaction holds the
// code's row lock and has seen it active (getRow), and the update is
// deferred to its commit, or it is one conditional UPDATE now.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error {
	m := memoOf(ctx)
	if r, ok := m.get(codesTable, signature); ok && r.locked && r.row != nil {
		if !r.row.Active {
			return fmt.Errorf("invalidate authorization code: %w", fosite.ErrInvalidatedAuthorizeCode)
		}
		// Locked and active in this transaction: the update will match.
		spent := *r.row
		spent.Active = false
		m.put(codesTable, signature, memoRow{row: &spent, locked: true})
		return s.deferWrite(ctx, &write{table: codesTable, sql: `UPDATE authorization_codes SET active = false WHERE signature = $1`, args: []any{signature}})
	}
	m.forget(codesTable, signature)
	tag, err := s.db(ctx).Exec(ctx,
		`UPDATE authorization_codes SET active = false WHERE signature = $1 AND active`, signature)
	if err != nil {
		return translate("invalidate authorization code", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("invalidate authorization code: %w", fosite.ErrInvalidatedAuthorizeCode)
	}
	return nil
}

// Access tokens.

func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.createRequest(ctx, accessTable, signature, r, "", nil)
}

func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, active, err := s.getRequest(ctx, accessTable, signature, session)
	if err != nil {
		return nil, err
	}
	if !active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.deleteRequest(ctx, accessTable, signature)
}

// RevokeAccessToken deletes every access token issued under requestID.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	memoOf(ctx).forgetRequest(accessTable, requestID)
	err := s.deferWrite(ctx, &write{table: accessTable, sql: `DELETE FROM access_tokens WHERE request_id = $1`, args: []any{requestID}})
	return translate("revoke access tokens", err)
}

// Refresh tokens.

func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error {
	return s.createRequest(ctx, refreshTable, signature, r, "access_signature", accessSignature)
}

// ErrConcurrentRefresh is returned for a refresh token that was rotated
// within the request's reuse window (WithRefreshReuse): most likely two tabs
// of one app refreshing at once rather than a replay. The request fails
// and the family lives.
var ErrConcurrentRefresh = errors.New("the refresh token was rotated moments ago by another request")

type refreshReuseKey struct{}

type refreshReuse struct {
	start  time.Time
	window time.Duration
}

// WithRefreshReuse records when the request that ctx belongs to arrived
// and how long after a rotation a reuse of the rotated token still counts
// as concurrent with it. The window covers the time between the rotating
// request's UPDATE and its commit, and clock differences between replicas.
// Without it, or with a zero window, every reuse revokes the family
// (RFC 9700 4.14.2).
func WithRefreshReuse(ctx context.Context, start time.Time, window time.Duration) context.Context {
	return context.WithValue(ctx, refreshReuseKey{}, refreshReuse{start, window})
}

// GetRefreshTokenSession returns the request of a refresh token. A rotated or
// revoked token returns the request and a RefreshInactive, which is
// fosite.ErrInactiveToken, so reuse revokes the whole family; one rotated
// within the reuse window before this request started (WithRefreshReuse)
// returns ErrConcurrentRefresh instead.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	row, err := s.getRow(ctx, refreshTable, signature)
	if err != nil {
		return nil, err
	}
	req, err := row.request(session)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", refreshTable, err)
	}
	if !row.Active {
		reuse, ok := ctx.Value(refreshReuseKey{}).(refreshReuse)
		if ok && reuse.window > 0 && row.RotatedAt != nil && row.RotatedAt.Add(reuse.window).After(reuse.start) {
			return nil, ErrConcurrentRefresh
		}
		inactive := &RefreshInactive{}
		if row.RotatedAt != nil {
			inactive.RotatedAt = row.RotatedAt.UTC()
		}
		return req, inactive
	}
	return req, nil
}

func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.deleteRequest(ctx, refreshTable, signature)
}

// RevokeRefreshToken deactivates every refresh token issued under requestID.
// The rows stay until they expire, so a later use is recognised as reuse.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	memoOf(ctx).forgetRequest(refreshTable, requestID)
	err := s.deferWrite(ctx, &write{table: refreshTable, sql: `UPDATE refresh_tokens SET active = false WHERE request_id = $1 AND active`, args: []any{requestID}})
	return translate("revoke refresh tokens", err)
}

// RotateRefreshToken retires the refresh token being used and the access
// tokens of its grant. Of several concurrent refreshes with one token
// exactly one gets past the token's row lock (getRow) or its conditional
// update; the others get ErrConcurrentRefresh (and
// fosite.ErrSerializationFailure, which fosite knows) and their
// transaction rolls back.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	now := s.now().UTC()
	m := memoOf(ctx)
	if r, ok := m.get(refreshTable, signature); ok && r.locked && r.row != nil && r.row.RequestID == requestID {
		if !r.row.Active {
			return fmt.Errorf("rotate refresh token: already rotated: %w: %w", ErrConcurrentRefresh, fosite.ErrSerializationFailure)
		}
		// Locked and active in this transaction: the token is among the
		// family's active ones, and one update retires them all, marking
		// which one was rotated.
		m.forgetRequest(refreshTable, requestID)
		m.forgetRequest(accessTable, requestID)
		if err := s.deferWrite(ctx, &write{table: refreshTable, args: []any{signature, requestID, now}, sql: `UPDATE refresh_tokens
			SET active = false, rotated_at = CASE WHEN signature = $1 THEN $3::timestamptz ELSE rotated_at END
			WHERE request_id = $2 AND active`}); err != nil {
			return translate("rotate refresh token", err)
		}
		return s.RevokeAccessToken(ctx, requestID)
	}
	m.forgetRequest(refreshTable, requestID)
	tag, err := s.db(ctx).Exec(ctx,
		`UPDATE refresh_tokens SET active = false, rotated_at = $3 WHERE signature = $1 AND request_id = $2 AND active`,
		signature, requestID, now)
	if err != nil {
		return translate("rotate refresh token", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("rotate refresh token: already rotated: %w: %w", ErrConcurrentRefresh, fosite.ErrSerializationFailure)
	}
	if err := s.RevokeRefreshToken(ctx, requestID); err != nil {
		return err
	}
	return s.RevokeAccessToken(ctx, requestID)
}

// PKCE requests, keyed by the code's signature.

func (s *Store) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.createRequest(ctx, pkceTable, signature, r, "", nil)
}

func (s *Store) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	req, _, err := s.getRequest(ctx, pkceTable, signature, session)
	if err != nil {
		return nil, err
	}
	return req, nil
}

func (s *Store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.deleteRequest(ctx, pkceTable, signature)
}

// OpenID Connect sessions, keyed by the authorization code itself as fosite
// passes it. We store only its SHA-256 so no usable code rests in the table.

func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.createRequest(ctx, oidcTable, hashKey(code), r, "", nil)
}

// GetOpenIDConnectSession hydrates into the session of the request it is given.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	req, _, err := s.getRequest(ctx, oidcTable, hashKey(code), r.GetSession())
	if err != nil {
		return nil, err
	}
	return req, nil
}

func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.deleteRequest(ctx, oidcTable, hashKey(code))
}

func formOrEmpty(v url.Values) url.Values {
	if v == nil {
		return url.Values{}
	}
	return v
}

func nonNil(a fosite.Arguments) []string {
	if a == nil {
		return []string{}
	}
	return a
}

// textKey reports whether s can be stored in a text column: valid UTF-8
// without NUL. Tokens come from clients, and their signatures with them.
func textKey(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// fetch names one row for prefetch.
type fetch struct {
	table     requestTable
	signature string
	lock      bool
}

// prefetch reads several rows in one statement into the memo of ctx
// (a transaction's, or WithReads'), so the handlers that ask for them
// one by one are answered from memory. Rows to lock are locked.
func (s *Store) prefetch(ctx context.Context, fs ...fetch) error {
	m := memoOf(ctx)
	if m == nil {
		return nil
	}
	// With the client cache on, rows come without their client's columns
	// (a third of what a token's row costs to scan) and get the client
	// from memory. Inside a transaction they are read as they are, with
	// the client: what is decided there must not rest on a copy.
	lean := scopeOf(ctx) == nil && s.clients.live.Load()
	sel := selectRequest
	if lean {
		sel = selectRequestLean
	}
	var (
		ctes, parts []string
		args        []any
		asked       []fetch
	)
	for _, f := range fs {
		if _, ok := m.get(f.table, f.signature); ok {
			continue
		}
		if !textKey(f.signature) {
			m.put(f.table, f.signature, memoRow{})
			continue
		}
		n := len(asked)
		args = append(args, f.signature)
		q := sel(f.table, "$"+strconv.Itoa(n+1))
		if f.lock {
			q += " FOR UPDATE OF t"
		}
		ctes = append(ctes, fmt.Sprintf("f%d AS (%s)", n, q))
		parts = append(parts, fmt.Sprintf("SELECT %d AS fetch_n, f%d.* FROM f%d", n, n, n))
		asked = append(asked, f)
	}
	if len(asked) == 0 {
		return nil
	}
	rows, err := s.db(ctx).Query(ctx, "WITH "+strings.Join(ctes, ", ")+" "+strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return translate("prefetch", err)
	}
	scan := pgx.RowToAddrOfStructByName[fetchedRow]
	if lean {
		scan = pgx.RowToAddrOfStructByNameLax[fetchedRow]
	}
	found, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return translate("prefetch", err)
	}
	for _, f := range asked {
		m.put(f.table, f.signature, memoRow{})
	}
	for _, r := range found {
		if r.N < 0 || r.N >= len(asked) {
			return fmt.Errorf("prefetch: row for unknown part %d", r.N)
		}
		f := asked[r.N]
		if lean {
			cl, err := s.cachedClient(ctx, r.ID)
			if errors.Is(err, ErrNotFound) {
				continue // deleted since: its tokens go with it
			}
			if err != nil {
				return err
			}
			r.clientRow = *cl
		}
		m.put(f.table, f.signature, memoRow{row: &r.requestRow, locked: f.lock})
	}
	return nil
}

type fetchedRow struct {
	N int `db:"fetch_n"`
	requestRow
}

// PrefetchCode reads in one statement what a code exchange asks for: the
// code (locked in a transaction, as GetAuthorizeCodeSession does), its
// PKCE request and its OpenID Connect session.
//
// Inside a transaction it only plans the read, which runs when the code is
// first asked for: fosite asks after it has authenticated the client, and
// the code's row lock must not be held by a request whose credentials are
// still being checked (an Argon2id secret takes tens of milliseconds, and
// whoever holds an intercepted code could hold up its real exchange).
func (s *Store) PrefetchCode(ctx context.Context, signature, code string) error {
	sc := scopeOf(ctx)
	plan := []fetch{
		{table: codesTable, signature: signature, lock: sc != nil},
		{table: pkceTable, signature: signature},
		{table: oidcTable, signature: hashKey(code)},
	}
	if sc == nil {
		return s.prefetch(ctx, plan...)
	}
	if sc.u.plans == nil {
		sc.u.plans = make(map[rowKey][]fetch)
	}
	sc.u.plans[rowKey{codesTable, signature}] = plan
	return nil
}

// PrefetchToken reads in one statement what introspecting a token asks
// for: the token as an access token and as a refresh token. ctx must come
// from WithReads (or carry a transaction) for it to be of use.
func (s *Store) PrefetchToken(ctx context.Context, accessSignature, refreshSignature string) error {
	return s.prefetch(ctx,
		fetch{table: accessTable, signature: accessSignature},
		fetch{table: refreshTable, signature: refreshSignature, lock: scopeOf(ctx) != nil},
	)
}
