package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is one key that signs, will sign, or signed, our tokens.
// Storage keeps it as it is given: the caller generates the key, puts only
// public members in PublicJWK and seals PrivateKey with a system secret.
//
// Each key signs for one interval, [ActivatesAt, RotatedAt), and its
// successor's starts where it ends, so at any moment exactly one key signs
// and every replica that knows the rows agrees which.
type SigningKey struct {
	KID       string `db:"kid"`
	Algorithm string `db:"algorithm"`
	// PublicJWK is the public key as a JSON Web Key.
	PublicJWK []byte `db:"public_jwk"`
	// PrivateKey is the sealed (encrypted) private key.
	PrivateKey []byte `db:"private_key"`
	// SecretFingerprint names the system secret that sealed PrivateKey.
	SecretFingerprint string    `db:"secret_fingerprint"`
	CreatedAt         time.Time `db:"created_at"`
	// ActivatesAt is when the key starts signing. A rotated-in key is
	// published for a while before it does, so that every replica has it
	// in its JWKS by then.
	ActivatesAt time.Time `db:"activates_at"`
	// RotatedAt is when the key stops signing: its successor's
	// ActivatesAt, which may still be ahead. Nil while the key is the
	// newest.
	RotatedAt *time.Time `db:"rotated_at"`
	// ExpiresAt is when the key leaves the JWKS: RotatedAt plus the
	// lifetime of the tokens it signed. Nil while the key is the newest.
	ExpiresAt *time.Time `db:"expires_at"`
}

// normalize puts times read from the database in UTC.
func (k *SigningKey) normalize() {
	k.CreatedAt = k.CreatedAt.UTC()
	k.ActivatesAt = k.ActivatesAt.UTC()
	if k.RotatedAt != nil {
		t := k.RotatedAt.UTC()
		k.RotatedAt = &t
	}
	if k.ExpiresAt != nil {
		t := k.ExpiresAt.UTC()
		k.ExpiresAt = &t
	}
}

const signingKeyColumns = `kid, algorithm, public_jwk, private_key, secret_fingerprint, created_at, activates_at, rotated_at, expires_at`

// The newest key first, then newest first.
const signingKeyOrder = ` ORDER BY rotated_at IS NULL DESC, activates_at DESC, created_at DESC, kid`

// maxRotationAttempts bounds how often one rotation retries after losing
// to concurrent ones; each loss means another rotation committed.
const maxRotationAttempts = 16

// NewestSigningKey returns the key of algorithm alg rotated in last, which
// signs now or will once its ActivatesAt has come, or ErrNotFound when
// there is no key of alg yet. Each algorithm has its own newest key.
func (s *Store) NewestSigningKey(ctx context.Context, alg string) (*SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys WHERE rotated_at IS NULL AND algorithm = $1`, alg)
	if err != nil {
		return nil, translate("get newest signing key", err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[SigningKey])
	if err != nil {
		return nil, translate("get newest signing key", err)
	}
	k.normalize()
	return k, nil
}

// PublishedSigningKeys returns the keys that belong in the JWKS at now: the
// newest one, active or not yet, and those rotated out whose expiry is
// after now; the newest first, then newest first.
//
// It reads outside any transaction ctx carries: the keys feed a cache, not
// the caller's unit of work, and a failed read must not abort that work.
func (s *Store) PublishedSigningKeys(ctx context.Context, now time.Time) ([]*SigningKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys
		WHERE rotated_at IS NULL OR expires_at > $1`+signingKeyOrder, now.UTC())
	return collectSigningKeys("list published signing keys", rows, err)
}

// ListSigningKeys returns every stored key, the newest first, then newest
// first.
func (s *Store) ListSigningKeys(ctx context.Context) ([]*SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys`+signingKeyOrder)
	return collectSigningKeys("list signing keys", rows, err)
}

func collectSigningKeys(op string, rows pgx.Rows, err error) ([]*SigningKey, error) {
	if err != nil {
		return nil, translate(op, err)
	}
	ks, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[SigningKey])
	if err != nil {
		return nil, translate(op, err)
	}
	for _, k := range ks {
		k.normalize()
	}
	return ks, nil
}

// InsertFirstSigningKey stores k as the newest key of its algorithm when
// that algorithm has none; it
// signs from its ActivatesAt, which when zero is its creation: nobody can
// have cached a key set without it. When there already is a key (another
// replica starting at the same time won the race) it returns
// ErrAlreadyExists and the caller should use that key. A zero CreatedAt is
// set from the store's clock. On success k holds the stored row.
func (s *Store) InsertFirstSigningKey(ctx context.Context, k *SigningKey) error {
	return s.insertNewestSigningKey(ctx, "insert first signing key", k)
}

func (s *Store) insertNewestSigningKey(ctx context.Context, op string, k *SigningKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	if k.ActivatesAt.IsZero() {
		k.ActivatesAt = k.CreatedAt
	}
	rows, err := s.db(ctx).Query(ctx, `
		INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key, secret_fingerprint, created_at, activates_at)
		VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
		RETURNING `+signingKeyColumns,
		k.KID, k.Algorithm, string(k.PublicJWK), k.PrivateKey, k.SecretFingerprint, k.CreatedAt.UTC(), k.ActivatesAt.UTC())
	if err != nil {
		return translate(op, err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[SigningKey])
	if err != nil {
		return translate(op, err)
	}
	stored.normalize()
	*k = stored
	return nil
}

// RotateSigningKey makes next the newest key of its algorithm, in one
// transaction, and returns the key of that algorithm it succeeds. next signs from next.ActivatesAt (zero: its
// creation), and the key newest until now stops signing then and stays
// published for publish after that. Should that key itself activate later
// (rotations racing, or clocks apart), next activates when it does
// instead, so that the keys' signing intervals stay one after the other.
//
// Racing rotations are safe: the newest key is retired by one conditional
// UPDATE, which one of them wins; a loser finds the winner's key in its
// next statement and retires that one, so every rotation succeeds, one
// after the other. With no key of next's algorithm it returns ErrNotFound (use
// InsertFirstSigningKey). A zero next.CreatedAt is set from the store's
// clock. On success next holds the stored row.
func (s *Store) RotateSigningKey(ctx context.Context, next *SigningKey, publish time.Duration) (previous *SigningKey, err error) {
	const op = "rotate signing key"
	if publish <= 0 {
		return nil, fmt.Errorf("%s: the publication period must be positive, not %s", op, publish)
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = s.now()
	}
	if next.ActivatesAt.IsZero() {
		next.ActivatesAt = next.CreatedAt
	}
	err = s.InTx(ctx, func(ctx context.Context) error {
		for range maxRotationAttempts {
			prev, err := s.retireNewestSigningKey(ctx, next.Algorithm, next.ActivatesAt, publish)
			if err != nil {
				return err
			}
			if prev == nil {
				continue // lost to a concurrent rotation
			}
			next.ActivatesAt = *prev.RotatedAt
			previous = prev
			return s.insertNewestSigningKey(ctx, op, next)
		}
		return fmt.Errorf("%s: %d concurrent rotations won first; try again", op, maxRotationAttempts)
	})
	return previous, err
}

// retireNewestSigningKey makes the newest key of alg stop signing at stopAt (or
// when it activates, if later) and stay published for publish after, and
// returns it. It returns nil and no error when a concurrent rotation
// retired that key first, and ErrNotFound when there is no key of alg.
func (s *Store) retireNewestSigningKey(ctx context.Context, alg string, stopAt time.Time, publish time.Duration) (*SigningKey, error) {
	const op = "rotate signing key"
	db := s.db(ctx)
	// Under READ COMMITTED an UPDATE that waited for a concurrent
	// rotation's row lock re-checks its WHERE on the row as that rotation
	// left it, finds it retired and updates nothing; the winner's new key
	// is not in this statement's snapshot, but it is in the next one's.
	rows, err := db.Query(ctx, `
		UPDATE signing_keys SET
			rotated_at = GREATEST($1, activates_at),
			expires_at = GREATEST($1, activates_at) + $2 * interval '1 microsecond'
		WHERE rotated_at IS NULL AND algorithm = $3
		RETURNING `+signingKeyColumns, stopAt.UTC(), publish.Microseconds(), alg)
	if err != nil {
		return nil, translate(op, err)
	}
	prev, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[SigningKey])
	if err == nil {
		prev.normalize()
		return prev, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, translate(op, err)
	}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM signing_keys WHERE rotated_at IS NULL AND algorithm = $1)`, alg).Scan(&exists); err != nil {
		return nil, translate(op, err)
	}
	if !exists {
		return nil, fmt.Errorf("%s: there is no %s signing key yet: %w", op, alg, ErrNotFound)
	}
	return nil, nil
}

// LongestClientTokenLifespan is the longest ID token or access token
// lifespan any client has of its own (0 when none has): a rotated-out key
// must stay published until the tokens it signed for such a client have
// expired too.
func (s *Store) LongestClientTokenLifespan(ctx context.Context) (time.Duration, error) {
	var secs int64
	err := s.db(ctx).QueryRow(ctx, `SELECT coalesce(max(greatest(id_token_lifespan, access_token_lifespan)), 0) FROM clients`).Scan(&secs)
	if err != nil {
		return 0, translate("longest client token lifespan", err)
	}
	return time.Duration(secs) * time.Second, nil
}
