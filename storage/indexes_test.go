package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/storage/pgtest"
)

// TestHotQueriesUseTheirIndexes: the statements whose cost must not grow
// with the tables (a refresh revoking the rest of its family, revoking a
// user's tokens) are served by the indexes meant for them. Sequential
// scans are disabled so that the planner shows what it would use on big
// tables rather than what is cheapest on empty ones.
func TestHotQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sql, index string }{
		{`UPDATE refresh_tokens SET active = false WHERE request_id = 'r' AND active`, "refresh_tokens_active_request_id_idx"},
		{`DELETE FROM access_tokens WHERE request_id = 'r'`, "access_tokens_request_id_idx"},
		{`DELETE FROM access_tokens WHERE subject = 's'`, "access_tokens_subject_idx"},
		{`UPDATE refresh_tokens SET active = false WHERE subject = 's' AND active`, "refresh_tokens_subject_idx"},
		{`UPDATE authorization_codes SET active = false WHERE subject = 's' AND active`, "authorization_codes_subject_idx"},
		{`DELETE FROM refresh_tokens WHERE subject = 's' AND client_id = 'c'`, "refresh_tokens_subject_idx"},
	} {
		rows, err := conn.Query(ctx, `EXPLAIN `+tc.sql)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if all := strings.Join(lines, "\n"); !strings.Contains(all, tc.index) {
			t.Errorf("%s\nis not served by %s:\n%s", tc.sql, tc.index, all)
		}
	}
}
