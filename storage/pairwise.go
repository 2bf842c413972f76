package storage

import (
	"context"
	"crypto/rand"
	"fmt"
)

// pairwiseSaltBytes is the length of a salt this store generates.
const pairwiseSaltBytes = 32

// PairwiseSalt returns the installation's pairwise subject salt (migration
// 018), creating it on the first call anywhere. Replicas starting together
// may each offer one; the first insert wins and every replica reads back
// the same salt.
func (s *Store) PairwiseSalt(ctx context.Context) ([]byte, error) {
	offer := make([]byte, pairwiseSaltBytes)
	if _, err := rand.Read(offer); err != nil {
		return nil, fmt.Errorf("generate pairwise salt: %w", err)
	}
	// Two statements: under READ COMMITTED the SELECT takes a new snapshot,
	// so it sees a row another replica committed while the INSERT waited.
	if _, err := s.db(ctx).Exec(ctx, `INSERT INTO pairwise_salt (salt) VALUES ($1) ON CONFLICT DO NOTHING`, offer); err != nil {
		return nil, translate("create pairwise salt", err)
	}
	var salt []byte
	if err := s.db(ctx).QueryRow(ctx, `SELECT salt FROM pairwise_salt`).Scan(&salt); err != nil {
		return nil, translate("read pairwise salt", err)
	}
	return salt, nil
}
