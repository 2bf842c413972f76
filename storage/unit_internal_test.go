package storage

import (
	"context"
	"slices"
	"testing"
	"time"
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

// TestInsertWrites: inserts batched together make one multi-row INSERT
// per table, each row with its own parameters; the batch is bounded by
// the earliest deadline among its requests.
func TestInsertWrites(t *testing.T) {
	ins := func(table string, args ...any) *write {
		row := `($1, $2::jsonb)`
		return &write{table: requestTable(table), insert: true, args: args, row: row,
			sql: `INSERT INTO ` + table + ` (a, b) VALUES ` + row}
	}
	now := time.Now()
	due := func(d time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d))
		t.Cleanup(cancel)
		return ctx
	}
	calls := []insertCall{
		{ins("access_tokens", 1, 2), due(time.Hour)},
		{ins("refresh_tokens", 3, 4), due(10 * time.Minute)},
		{ins("access_tokens", 5, 6), context.Background()},
		{ins("access_tokens", 7, 8), due(2 * time.Hour)},
	}
	ws := insertWrites(calls)
	if len(ws) != 2 {
		t.Fatalf("%d statements, want 2", len(ws))
	}
	if want := `INSERT INTO access_tokens (a, b) VALUES ($1, $2::jsonb), ($3, $4::jsonb), ($5, $6::jsonb)`; ws[0].sql != want ||
		!slices.Equal(ws[0].args, []any{1, 2, 5, 6, 7, 8}) || ws[0].table != accessTable {
		t.Errorf("access tokens: %s %v\nwant %s", ws[0].sql, ws[0].args, want)
	}
	if want := `INSERT INTO refresh_tokens (a, b) VALUES ($1, $2::jsonb)`; ws[1].sql != want || !slices.Equal(ws[1].args, []any{3, 4}) {
		t.Errorf("refresh tokens: %s %v\nwant %s", ws[1].sql, ws[1].args, want)
	}
	if got := earliestDeadline(calls); !got.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("earliest deadline %v, want %v", got, now.Add(10*time.Minute))
	}
	if got := earliestDeadline(calls[2:3]); !got.IsZero() {
		t.Errorf("earliest deadline of a call without one: %v", got)
	}
}
