package storage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// LoginSession is a user's signed-in browser. The cookie carries a random id;
// the table keeps only its hash.
type LoginSession struct {
	UserID    string    `db:"user_id"`
	AuthTime  time.Time `db:"auth_time"`
	CreatedAt time.Time `db:"created_at"`
	ExpiresAt time.Time `db:"expires_at"`
}

// CreateLoginSession starts a session for userID lasting ttl and returns the
// value for the browser's cookie.
func (s *Store) CreateLoginSession(ctx context.Context, userID string, ttl time.Duration) (cookie string, sess *LoginSession, err error) {
	return s.StartLoginSession(ctx, userID, ttl, "")
}

// StartLoginSession starts a session for userID lasting ttl, under a new
// random id, and ends the session behind previous, the cookie the browser
// came with (if any), in the same statement. A sign-in never keeps an id
// someone else may have known or planted (session fixation).
func (s *Store) StartLoginSession(ctx context.Context, userID string, ttl time.Duration, previous string) (cookie string, sess *LoginSession, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("create login session: %w", err)
	}
	cookie = base64.RawURLEncoding.EncodeToString(b)
	now := s.now().UTC().Truncate(time.Microsecond) // what PostgreSQL keeps
	sess = &LoginSession{UserID: userID, AuthTime: now, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	var ended *string
	if previous != "" {
		h := hashKey(previous)
		ended = &h
	}
	_, err = s.db(ctx).Exec(ctx, `
		WITH ended AS (DELETE FROM login_sessions WHERE id_hash = $6)
		INSERT INTO login_sessions (id_hash, user_id, auth_time, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, hashKey(cookie), userID, sess.AuthTime, sess.CreatedAt, sess.ExpiresAt, ended)
	if err != nil {
		return "", nil, translate("create login session", err)
	}
	return cookie, sess, nil
}

// LoginSession returns the live session behind a cookie value. Expired
// sessions and sessions of disabled users are ErrNotFound.
func (s *Store) LoginSession(ctx context.Context, cookie string) (*LoginSession, error) {
	_, sess, err := s.SessionUser(ctx, cookie)
	return sess, err
}

// SessionUser returns the live session behind a cookie value together with
// its user, in one query: the authorize endpoint asks this on every request.
// Expired sessions and sessions of disabled users are ErrNotFound.
func (s *Store) SessionUser(ctx context.Context, cookie string) (*User, *LoginSession, error) {
	var (
		u    User
		sess LoginSession
	)
	err := s.db(ctx).QueryRow(ctx, `
		SELECT u.id, u.username, u.password_hash, u.email, u.email_verified, u.name, u.disabled,
		       u.created_at, u.updated_at, ls.user_id, ls.auth_time, ls.created_at, ls.expires_at
		FROM login_sessions ls JOIN users u ON u.id = ls.user_id
		WHERE ls.id_hash = $1 AND ls.expires_at > $2 AND NOT u.disabled`, hashKey(cookie), s.now().UTC()).Scan(
		&u.ID, &u.Username, &u.PasswordHash, &u.Email, &u.EmailVerified, &u.Name, &u.Disabled,
		&u.CreatedAt, &u.UpdatedAt, &sess.UserID, &sess.AuthTime, &sess.CreatedAt, &sess.ExpiresAt)
	if err != nil {
		return nil, nil, translate("get login session", err)
	}
	u.normalize()
	sess.AuthTime, sess.CreatedAt, sess.ExpiresAt = sess.AuthTime.UTC(), sess.CreatedAt.UTC(), sess.ExpiresAt.UTC()
	return &u, &sess, nil
}

// DeleteLoginSession ends the session behind a cookie value. Ending one that
// does not exist is not an error: logging out twice is fine.
func (s *Store) DeleteLoginSession(ctx context.Context, cookie string) error {
	_, err := s.db(ctx).Exec(ctx, `DELETE FROM login_sessions WHERE id_hash = $1`, hashKey(cookie))
	return translate("delete login session", err)
}

// DeleteUserLoginSessions ends every session of a user and reports how many.
func (s *Store) DeleteUserLoginSessions(ctx context.Context, userID string) (int64, error) {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM login_sessions WHERE user_id = $1`, userID)
	if err != nil {
		return 0, translate("delete login sessions", err)
	}
	return tag.RowsAffected(), nil
}

// Consent is what a user allowed a client.
type Consent struct {
	UserID    string     `db:"user_id"`
	ClientID  string     `db:"client_id"`
	Scopes    []string   `db:"scopes"`
	GrantedAt time.Time  `db:"granted_at"`
	ExpiresAt *time.Time `db:"expires_at"`
}

// SaveConsent remembers that userID allowed clientID the given scopes,
// adding to what was allowed before. ttl zero keeps it until withdrawn.
func (s *Store) SaveConsent(ctx context.Context, userID, clientID string, scopes []string, ttl time.Duration) error {
	now := s.now().UTC().Truncate(time.Microsecond)
	var exp *time.Time
	if ttl > 0 {
		e := now.Add(ttl)
		exp = &e
	}
	_, err := s.db(ctx).Exec(ctx, `
		INSERT INTO consents (user_id, client_id, scopes, granted_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, client_id) DO UPDATE SET
			scopes = CASE WHEN consents.expires_at IS NOT NULL AND consents.expires_at <= $4
				THEN EXCLUDED.scopes
				ELSE ARRAY(SELECT DISTINCT unnest(consents.scopes || EXCLUDED.scopes) ORDER BY 1) END,
			granted_at = EXCLUDED.granted_at,
			expires_at = EXCLUDED.expires_at`,
		userID, clientID, nonNilStrings(scopes), now, exp)
	return translate("save consent", err)
}

// HasConsent reports whether userID has allowed clientID every one of scopes
// and the consent has not expired.
func (s *Store) HasConsent(ctx context.Context, userID, clientID string, scopes []string) (bool, error) {
	var granted []string
	err := s.db(ctx).QueryRow(ctx, `
		SELECT scopes FROM consents
		WHERE user_id = $1 AND client_id = $2 AND (expires_at IS NULL OR expires_at > $3)`,
		userID, clientID, s.now().UTC()).Scan(&granted)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, translate("get consent", err)
	}
	for _, sc := range scopes {
		if !slices.Contains(granted, sc) {
			return false, nil
		}
	}
	return true, nil
}

// WithdrawConsents forgets what userID allowed (one client, or all when
// clientID is empty) and revokes the tokens those clients hold for the user.
// It reports how many consents were removed.
func (s *Store) WithdrawConsents(ctx context.Context, userID, clientID string) (int64, error) {
	var n int64
	err := s.InTx(ctx, func(ctx context.Context) error {
		db := s.db(ctx)
		tag, err := db.Exec(ctx, `DELETE FROM consents WHERE user_id = $1 AND ($2 = '' OR client_id = $2)`, userID, clientID)
		if err != nil {
			return translate("withdraw consents", err)
		}
		n = tag.RowsAffected()
		for _, table := range []requestTable{accessTable, refreshTable, codesTable} {
			if _, err := db.Exec(ctx, `DELETE FROM `+string(table)+`
				WHERE subject = $1 AND ($2 = '' OR client_id = $2)`, userID, clientID); err != nil {
				return translate("revoke tokens of withdrawn consent", err)
			}
		}
		return nil
	})
	return n, err
}
