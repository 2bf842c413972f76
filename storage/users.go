package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is an end user who logs in with a username and password. ID is the
// OpenID Connect subject: random, stable and never reassigned.
type User struct {
	ID            string    `db:"id" json:"id"`
	Username      string    `db:"username" json:"username"`
	PasswordHash  string    `db:"password_hash" json:"-"`
	Email         string    `db:"email" json:"email,omitempty"`
	EmailVerified bool      `db:"email_verified" json:"email_verified"`
	Name          string    `db:"name" json:"name,omitempty"`
	Disabled      bool      `db:"disabled" json:"disabled"`
	CreatedAt     time.Time `db:"created_at" json:"created_at"`
	UpdatedAt     time.Time `db:"updated_at" json:"updated_at"`
}

// ErrInvalidCredentials is returned by Authenticate for an unknown user, a
// wrong password or a disabled account alike, so callers cannot tell them
// apart by the error.
var ErrInvalidCredentials = errors.New("invalid username or password")

// CredentialsError is the ErrInvalidCredentials of Authenticate, with why,
// for the operator's audit log only: what the person sees, and the work
// done, are the same for every reason.
type CredentialsError struct {
	Reason string // "unknown_user", "wrong_password" or "disabled"
	UserID string // "" for an unknown user
}

func (e *CredentialsError) Error() string        { return ErrInvalidCredentials.Error() }
func (e *CredentialsError) Is(target error) bool { return target == ErrInvalidCredentials }

// normalize puts times read from the database in UTC.
func (u *User) normalize() {
	u.CreatedAt = u.CreatedAt.UTC()
	u.UpdatedAt = u.UpdatedAt.UTC()
}

const userColumns = `id, username, password_hash, email, email_verified, name, disabled, created_at, updated_at`

// NewUserID returns a random user id (128 bits, hex).
func NewUserID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate user id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// CreateUser stores a user with the given password, hashed with Argon2id. An
// empty ID gets a random one. A username taken by another user, whatever its
// case, is ErrAlreadyExists.
func (s *Store) CreateUser(ctx context.Context, u *User, password string) error {
	if u.ID == "" {
		id, err := NewUserID()
		if err != nil {
			return err
		}
		u.ID = id
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	rows, err := s.db(ctx).Query(ctx, `
		INSERT INTO users (id, username, password_hash, email, email_verified, name, disabled)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		RETURNING `+userColumns, u.ID, u.Username, hash, u.Email, u.EmailVerified, u.Name, u.Disabled)
	if err != nil {
		return translate("create user", err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[User])
	if err != nil {
		return translate("create user", err)
	}
	stored.normalize()
	*u = stored
	return nil
}

// UserByUsername finds a user by username, ignoring case.
func (s *Store) UserByUsername(ctx context.Context, username string) (*User, error) {
	return s.oneUser(ctx, "get user", `SELECT `+userColumns+` FROM users WHERE lower(username) = lower($1)`, username)
}

// User finds a user by id.
func (s *Store) User(ctx context.Context, id string) (*User, error) {
	return s.oneUser(ctx, "get user", `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

func (s *Store) oneUser(ctx context.Context, op, sql string, args ...any) (*User, error) {
	rows, err := s.db(ctx).Query(ctx, sql, args...)
	if err != nil {
		return nil, translate(op, err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[User])
	if err != nil {
		return nil, translate(op, err)
	}
	u.normalize()
	return u, nil
}

// ListUsers returns up to limit users ordered by username, starting after
// the username given (empty for the first page).
func (s *Store) ListUsers(ctx context.Context, after string, limit int) ([]*User, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+userColumns+` FROM users
		WHERE lower(username) > lower($1) ORDER BY lower(username) LIMIT $2`, after, limit)
	if err != nil {
		return nil, translate("list users", err)
	}
	us, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[User])
	for _, u := range us {
		u.normalize()
	}
	return us, translate("list users", err)
}

// UserUpdate holds the fields to change; nil fields stay as they are.
type UserUpdate struct {
	Email         *string
	EmailVerified *bool
	Name          *string
	Disabled      *bool
	Password      *string
}

// UpdateUser changes the given fields of user id and returns the result.
// Disabling a user or setting a new password also ends their login
// sessions and revokes their tokens.
func (s *Store) UpdateUser(ctx context.Context, id string, up UserUpdate) (*User, error) {
	var hash *string
	if up.Password != nil {
		h, err := HashPassword(*up.Password)
		if err != nil {
			return nil, err
		}
		hash = &h
	}
	var u *User
	err := s.InTx(ctx, func(ctx context.Context) error {
		var err error
		u, err = s.oneUser(ctx, "update user", `
			UPDATE users SET
				email = coalesce($2, email),
				email_verified = coalesce($3, email_verified),
				name = coalesce($4, name),
				disabled = coalesce($5, disabled),
				password_hash = coalesce($6, password_hash),
				updated_at = now()
			WHERE id = $1
			RETURNING `+userColumns, id, up.Email, up.EmailVerified, up.Name, up.Disabled, hash)
		if err != nil {
			return err
		}
		// A new password or a disabled account ends everything the old
		// credentials started: after a takeover, the attacker's tokens too.
		if u.Disabled || up.Password != nil {
			return s.revokeUser(ctx, id)
		}
		return nil
	})
	return u, err
}

// DeleteUser removes a user, their tokens and, by cascade, their sessions
// and consents.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		tag, err := s.db(ctx).Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		if err != nil {
			return translate("delete user", err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("delete user: %w", ErrNotFound)
		}
		return s.revokeUser(ctx, id)
	})
}

// revokeUser ends a user's login sessions and revokes every code and token
// issued for them. Refresh tokens are deactivated rather than deleted, so a
// later use still counts as reuse.
func (s *Store) revokeUser(ctx context.Context, id string) error {
	db := s.db(ctx)
	for _, q := range []string{
		`DELETE FROM login_sessions WHERE user_id = $1`,
		`DELETE FROM access_tokens WHERE subject = $1`,
		`UPDATE authorization_codes SET active = false WHERE subject = $1 AND active`,
		`UPDATE refresh_tokens SET active = false WHERE subject = $1 AND active`,
	} {
		if _, err := db.Exec(ctx, q, id); err != nil {
			return translate("revoke user", err)
		}
	}
	return nil
}

// dummyHash is verified against when the username is unknown, so that an
// unknown user costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("not a real password")
	if err != nil {
		panic(err)
	}
	return h
})

// Authenticate checks a username and password. Unknown users, wrong
// passwords and disabled accounts all return ErrInvalidCredentials after
// the same amount of hashing work.
func (s *Store) Authenticate(ctx context.Context, username, password string) (*User, error) {
	u, err := s.UserByUsername(ctx, username)
	if errors.Is(err, ErrNotFound) {
		if err := CompareSecretContext(ctx, dummyHash(), password); errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return nil, ErrBusy
		}
		return nil, &CredentialsError{Reason: "unknown_user"}
	}
	if err != nil {
		return nil, err
	}
	if err := CompareSecretContext(ctx, u.PasswordHash, password); err != nil {
		if errors.Is(err, ErrBusy) || ctx.Err() != nil {
			return nil, ErrBusy
		}
		return nil, &CredentialsError{Reason: "wrong_password", UserID: u.ID}
	}
	if u.Disabled {
		return nil, &CredentialsError{Reason: "disabled", UserID: u.ID}
	}
	return u, nil
}
