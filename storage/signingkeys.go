package storage

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is one key that signs, or signed, our tokens. Storage keeps it
// as it is given: the caller generates the key, puts only public members in
// PublicJWK and seals PrivateKey with a system secret.
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
	// RotatedAt is when the key stopped signing; nil while it is current.
	RotatedAt *time.Time `db:"rotated_at"`
	// ExpiresAt is how long a rotated-out key stays published; nil while
	// it is current.
	ExpiresAt *time.Time `db:"expires_at"`
}

// normalize puts times read from the database in UTC.
func (k *SigningKey) normalize() {
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RotatedAt != nil {
		t := k.RotatedAt.UTC()
		k.RotatedAt = &t
	}
	if k.ExpiresAt != nil {
		t := k.ExpiresAt.UTC()
		k.ExpiresAt = &t
	}
}

const signingKeyColumns = `kid, algorithm, public_jwk, private_key, secret_fingerprint, created_at, rotated_at, expires_at`

// The current key first, then newest first.
const signingKeyOrder = ` ORDER BY rotated_at IS NULL DESC, created_at DESC, kid`

// CurrentSigningKey returns the key that signs now, or ErrNotFound when
// there is none yet.
func (s *Store) CurrentSigningKey(ctx context.Context) (*SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys WHERE rotated_at IS NULL`)
	if err != nil {
		return nil, translate("get current signing key", err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[SigningKey])
	if err != nil {
		return nil, translate("get current signing key", err)
	}
	k.normalize()
	return k, nil
}

// PublishedSigningKeys returns the keys that belong in the JWKS at now: the
// current one and those rotated out whose expiry is after now. The current
// key comes first, then the others newest first.
func (s *Store) PublishedSigningKeys(ctx context.Context, now time.Time) ([]*SigningKey, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys
		WHERE rotated_at IS NULL OR expires_at > $1`+signingKeyOrder, now.UTC())
	return collectSigningKeys("list published signing keys", rows, err)
}

// ListSigningKeys returns every stored key, the current one first, then the
// others newest first.
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

// InsertFirstSigningKey stores k as the current key when there is none.
// When there already is one (another replica starting at the same time won
// the race) it returns ErrAlreadyExists and the caller should use that key.
// A zero CreatedAt is set from the store's clock. On success k holds the
// stored row.
func (s *Store) InsertFirstSigningKey(ctx context.Context, k *SigningKey) error {
	return s.insertCurrentSigningKey(ctx, "insert first signing key", k)
}

func (s *Store) insertCurrentSigningKey(ctx context.Context, op string, k *SigningKey) error {
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	rows, err := s.db(ctx).Query(ctx, `
		INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key, secret_fingerprint, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		RETURNING `+signingKeyColumns,
		k.KID, k.Algorithm, k.PublicJWK, k.PrivateKey, k.SecretFingerprint, k.CreatedAt.UTC())
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

// RotateSigningKey makes next the current key, in one transaction: the
// current key is locked, marked rotated at next's creation time and kept
// published until retireUntil, and next is inserted as current. Concurrent
// rotations take turns; each one retires the key current when its turn
// comes. With no current key at all it returns ErrNotFound (use
// InsertFirstSigningKey). A zero next.CreatedAt is set from the store's
// clock. On success next holds the stored row.
func (s *Store) RotateSigningKey(ctx context.Context, next *SigningKey, retireUntil time.Time) error {
	const op = "rotate signing key"
	if next.CreatedAt.IsZero() {
		next.CreatedAt = s.now()
	}
	now := next.CreatedAt.UTC()
	return s.InTx(ctx, func(ctx context.Context) error {
		db := s.db(ctx)
		// Rotations (and first inserts) take turns on this lock; readers
		// are not blocked. The row lock alone is not enough under READ
		// COMMITTED: a rotation that waited for it would find the row no
		// longer current and the new current one not in its snapshot.
		if _, err := db.Exec(ctx, `LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return translate(op, err)
		}
		var current string
		err := db.QueryRow(ctx, `SELECT kid FROM signing_keys WHERE rotated_at IS NULL FOR UPDATE`).Scan(&current)
		if err != nil {
			return translate(op, err)
		}
		if _, err := db.Exec(ctx, `UPDATE signing_keys SET rotated_at = $2, expires_at = $3 WHERE kid = $1`,
			current, now, retireUntil.UTC()); err != nil {
			return translate(op, err)
		}
		return s.insertCurrentSigningKey(ctx, op, next)
	})
}
