package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Scope is an entry of the scope catalogue: what an operator says one of
// their scopes means, for the consent page and discovery.
type Scope struct {
	Name          string    `db:"name" json:"name"`
	Description   string    `db:"description" json:"description"`
	ShowOnConsent bool      `db:"show_on_consent" json:"show_on_consent"`
	Discoverable  bool      `db:"discoverable" json:"discoverable"`
	CreatedAt     time.Time `db:"created_at" json:"created_at"`
	UpdatedAt     time.Time `db:"updated_at" json:"updated_at"`
}

const scopeColumns = `name, description, show_on_consent, discoverable, created_at, updated_at`

// ScopeUpdate is what SetScope writes; nil fields keep their current value
// (a new scope's flags default to true).
type ScopeUpdate struct {
	Description   *string
	ShowOnConsent *bool
	Discoverable  *bool
}

// SetScope creates or changes the scope name and returns it, with whether
// it was created. Without a description it only changes a scope that
// exists (ErrNotFound otherwise): a scope always has one. Either way it is
// one statement, so concurrent calls never lose each other's fields.
func (s *Store) SetScope(ctx context.Context, name string, up ScopeUpdate) (sc *Scope, created bool, err error) {
	// In a transaction of its own, which InTx reruns should it lose a
	// serialization race (REPEATABLE READ, SERIALIZABLE).
	err = s.InTx(ctx, func(ctx context.Context) error {
		var err error
		sc, created, err = s.setScope(ctx, name, up)
		return err
	})
	return sc, created, err
}

func (s *Store) setScope(ctx context.Context, name string, up ScopeUpdate) (*Scope, bool, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	var rows pgx.Rows
	var err error
	if up.Description == nil {
		rows, err = s.db(ctx).Query(ctx, `
			UPDATE scopes SET
				show_on_consent = COALESCE($2, show_on_consent),
				discoverable    = COALESCE($3, discoverable),
				updated_at      = $4
			WHERE name = $1
			RETURNING `+scopeColumns+`, false AS created`,
			name, up.ShowOnConsent, up.Discoverable, now)
	} else {
		// xmax is 0 only in a row this statement inserted.
		rows, err = s.db(ctx).Query(ctx, `
			INSERT INTO scopes AS sc (name, description, show_on_consent, discoverable, created_at, updated_at)
			VALUES ($1, $2, COALESCE($3, true), COALESCE($4, true), $5, $5)
			ON CONFLICT (name) DO UPDATE SET
				description     = EXCLUDED.description,
				show_on_consent = COALESCE($3, sc.show_on_consent),
				discoverable    = COALESCE($4, sc.discoverable),
				updated_at      = EXCLUDED.updated_at
			RETURNING `+scopeColumns+`, (xmax = 0) AS created`,
			name, *up.Description, up.ShowOnConsent, up.Discoverable, now)
	}
	if err != nil {
		return nil, false, translate("set scope", err)
	}
	type row struct {
		Scope
		Created bool `db:"created"`
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[row])
	if err != nil {
		return nil, false, translate("set scope", err)
	}
	r.normalize()
	return &r.Scope, r.Created, nil
}

// Scope returns the catalogue's entry for name, or ErrNotFound.
func (s *Store) Scope(ctx context.Context, name string) (*Scope, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+scopeColumns+` FROM scopes WHERE name = $1`, name)
	if err != nil {
		return nil, translate("get scope", err)
	}
	sc, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Scope])
	if err != nil {
		return nil, translate("get scope", err)
	}
	sc.normalize()
	return sc, nil
}

// ListScopes returns up to limit scopes whose names sort after after, in
// byte order of the name (scope names are ASCII).
func (s *Store) ListScopes(ctx context.Context, after string, limit int) ([]*Scope, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+scopeColumns+` FROM scopes
		WHERE name COLLATE "C" > $1 ORDER BY name COLLATE "C" LIMIT $2`, after, limit)
	if err != nil {
		return nil, translate("list scopes", err)
	}
	scs, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[Scope])
	for _, sc := range scs {
		sc.normalize()
	}
	return scs, translate("list scopes", err)
}

// DeleteScope removes name from the catalogue, or returns ErrNotFound.
// Clients may still request the scope: the catalogue only describes.
func (s *Store) DeleteScope(ctx context.Context, name string) error {
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM scopes WHERE name = $1`, name)
	if err != nil {
		return translate("delete scope", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete scope: %w", ErrNotFound)
	}
	return nil
}

// normalize puts times read from the database in UTC.
func (sc *Scope) normalize() {
	sc.CreatedAt = sc.CreatedAt.UTC()
	sc.UpdatedAt = sc.UpdatedAt.UTC()
}
