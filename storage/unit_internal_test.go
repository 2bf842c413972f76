package storage

import (
	"slices"
	"testing"
)

// TestCombineRenumbers: writes combined into one statement keep their own
// parameters, whichever offset the same statement lands on, on its first
// combination and on later ones (which come from renumbered's memory).
func TestCombineRenumbers(t *testing.T) {
	a := &write{sql: `UPDATE t SET x = $1 WHERE y = $2`, args: []any{1, 2}}
	b := &write{sql: `INSERT INTO u VALUES ($1, $2, $10)`, args: []any{3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}
	tail := &write{sql: `SELECT $1::int`, args: []any{13}}
	for round := range 2 {
		sql, args := combine([]*write{a, b}, tail)
		want := `WITH w0 AS (UPDATE t SET x = $1 WHERE y = $2), w1 AS (INSERT INTO u VALUES ($3, $4, $12)) SELECT $13::int`
		if sql != want {
			t.Errorf("round %d: %s\nwant %s", round, sql, want)
		}
		if !slices.Equal(args, []any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}) {
			t.Errorf("round %d: args %v", round, args)
		}
		// The same statement at another offset.
		sql, _ = combine([]*write{b, a}, nil)
		want = `WITH w0 AS (INSERT INTO u VALUES ($1, $2, $10)) UPDATE t SET x = $11 WHERE y = $12`
		if sql != want {
			t.Errorf("round %d: %s\nwant %s", round, sql, want)
		}
		sql, _ = combine([]*write{tail, b}, nil)
		want = `WITH w0 AS (SELECT $1::int) INSERT INTO u VALUES ($2, $3, $11)`
		if sql != want {
			t.Errorf("round %d: %s\nwant %s", round, sql, want)
		}
	}
}
