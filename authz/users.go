package authz

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/authz/authz/storage"
)

// Limits on what users choose. The CLI and the admin API both apply them,
// through CreateUser and UpdateUser.
const (
	MaxUsernameLength = 64
	MinPasswordLength = 8
	MaxPasswordLength = 1024 // bytes; beyond this, hashing is just work for nothing
	maxUserNameLength = 200  // the display name
	maxEmailLength    = 254
)

// UserStore is what user management needs of storage.
type UserStore interface {
	CreateUser(ctx context.Context, u *storage.User, password string) error
	User(ctx context.Context, id string) (*storage.User, error)
	UpdateUser(ctx context.Context, id string, up storage.UserUpdate) (*storage.User, error)
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

var _ UserStore = (*storage.Store)(nil)

// InvalidUserError says what is wrong with a user's details, in one line.
type InvalidUserError struct{ Message string }

func (e *InvalidUserError) Error() string { return e.Message }

func invalidUser(format string, args ...any) error {
	return &InvalidUserError{Message: fmt.Sprintf(format, args...)}
}

// ErrUsernameTaken is returned when another user has the username,
// whatever its case.
var ErrUsernameTaken = errors.New("a user with this username already exists (usernames ignore case)")

// NewUser is a user to create, as the admin API accepts it.
type NewUser struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	Name          string `json:"name,omitempty"`
	Disabled      bool   `json:"disabled,omitempty"`
}

// Validate returns an *InvalidUserError naming the first problem.
func (in *NewUser) Validate() error {
	if err := ValidateUsername(in.Username); err != nil {
		return err
	}
	if in.Password == "" {
		return invalidUser("a password is required")
	}
	if err := ValidatePassword(in.Password); err != nil {
		return err
	}
	return validateProfile(in.Email, in.EmailVerified, in.Name)
}

// CreateUser validates in and stores the user with a hash of the password.
// A username taken by another user, whatever its case, is ErrUsernameTaken.
func CreateUser(ctx context.Context, store UserStore, in NewUser) (*storage.User, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	u := &storage.User{
		Username:      in.Username,
		Email:         in.Email,
		EmailVerified: in.EmailVerified,
		Name:          in.Name,
		Disabled:      in.Disabled,
	}
	if err := store.CreateUser(ctx, u, in.Password); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return nil, fmt.Errorf("username %q: %w", in.Username, ErrUsernameTaken)
		}
		return nil, err
	}
	return u, nil
}

// UserChange holds the details of a user to change; nil fields stay as
// they are. An empty Email removes the address.
type UserChange struct {
	Password      *string `json:"password,omitempty"`
	Email         *string `json:"email,omitempty"`
	EmailVerified *bool   `json:"email_verified,omitempty"`
	Name          *string `json:"name,omitempty"`
	Disabled      *bool   `json:"disabled,omitempty"`
}

// UpdateUser changes user id as ch says and returns the result. A new
// email address is unverified unless ch says otherwise: email_verified
// vouches for one address, not for whatever replaces it. A new password or
// disabling the user ends their sessions and revokes their tokens. An
// unknown user is storage.ErrNotFound.
func UpdateUser(ctx context.Context, store UserStore, id string, ch UserChange) (*storage.User, error) {
	if ch.Password != nil {
		if err := ValidatePassword(*ch.Password); err != nil {
			return nil, err
		}
	}
	if ch.Email != nil && *ch.Email != "" {
		if err := ValidateEmail(*ch.Email); err != nil {
			return nil, err
		}
	}
	if ch.Name != nil {
		if err := validateDisplayName(*ch.Name); err != nil {
			return nil, err
		}
	}
	var out *storage.User
	err := store.InTx(ctx, func(ctx context.Context) error {
		cur, err := store.User(ctx, id)
		if err != nil {
			return err
		}
		up := storage.UserUpdate{Password: ch.Password, Email: ch.Email, EmailVerified: ch.EmailVerified, Name: ch.Name, Disabled: ch.Disabled}
		if ch.Email != nil && *ch.Email != cur.Email && ch.EmailVerified == nil {
			unverified := false
			up.EmailVerified = &unverified
		}
		email, verified := cur.Email, cur.EmailVerified
		if up.Email != nil {
			email = *up.Email
		}
		if up.EmailVerified != nil {
			verified = *up.EmailVerified
		}
		if verified && email == "" {
			return invalidUser("email_verified cannot be true without an email address")
		}
		if up == (storage.UserUpdate{}) {
			out = cur
			return nil
		}
		out, err = store.UpdateUser(ctx, id, up)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ValidateUsername allows 1 to 64 characters of valid UTF-8 without
// whitespace or control characters.
func ValidateUsername(name string) error {
	if !utf8.ValidString(name) {
		return invalidUser("username is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n < 1 || n > MaxUsernameLength {
		return invalidUser("username %q is %d characters long; it must have 1 to %d", name, n, MaxUsernameLength)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return invalidUser("username %q must not contain spaces or control characters", name)
		}
	}
	return nil
}

// ValidatePassword requires 8 or more characters of valid UTF-8 and at
// most 1024 bytes.
func ValidatePassword(password string) error {
	if !utf8.ValidString(password) {
		return invalidUser("the password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(password); n < MinPasswordLength {
		return invalidUser("password too short: it has %d characters; at least %d are required", n, MinPasswordLength)
	}
	if len(password) > MaxPasswordLength {
		return invalidUser("password too long: at most %d bytes", MaxPasswordLength)
	}
	return nil
}

// ValidateEmail accepts a bare address (alice@example.com), not a display
// form ("Alice <alice@example.com>").
func ValidateEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" || len(email) > maxEmailLength {
		return invalidUser("email %q is not an address like alice@example.com", email)
	}
	return nil
}

// validateProfile checks a new user's email address and display name.
func validateProfile(email string, verified bool, name string) error {
	if email != "" {
		if err := ValidateEmail(email); err != nil {
			return err
		}
	} else if verified {
		return invalidUser("email_verified cannot be true without an email address")
	}
	return validateDisplayName(name)
}

// validateDisplayName accepts up to 200 characters of valid UTF-8 without
// control characters.
func validateDisplayName(name string) error {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxUserNameLength {
		return invalidUser("name must be valid UTF-8 of at most %d characters", maxUserNameLength)
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		return invalidUser("name must not contain control characters")
	}
	return nil
}
