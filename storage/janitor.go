package storage

import (
	"context"
	"fmt"
)

// expiringTables are the tables whose rows carry expires_at and may be
// deleted once it has passed.
var expiringTables = []string{
	string(codesTable), string(accessTable), string(refreshTable), string(pkceTable), string(oidcTable),
	"login_sessions", "consents", "client_assertion_jtis", "login_throttle", "signing_keys",
}

// rowKeys names, for a table whose rows are rewritten in place all the
// time, the primary key the janitor picks rows by: a row's ctid changes
// with every update, so a ctid chosen in the sub-select may name another
// version by the time the DELETE runs. Other tables go by ctid.
var rowKeys = map[string]string{"login_throttle": "key"}

// DeleteExpired deletes rows whose expiry has passed, at most batch rows per
// statement so no statement holds locks for long. It reports how many rows
// it deleted from each table.
func (s *Store) DeleteExpired(ctx context.Context, batch int) (map[string]int64, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("delete expired: batch must be positive, got %d", batch)
	}
	now := s.now().UTC()
	deleted := make(map[string]int64)
	for _, table := range expiringTables {
		key := "ctid"
		if k, ok := rowKeys[table]; ok {
			key = k
		}
		for {
			tag, err := s.pool.Exec(ctx, `
				DELETE FROM `+table+` WHERE `+key+` = ANY (ARRAY(
					SELECT `+key+` FROM `+table+` WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`,
				now, batch)
			if err != nil {
				return deleted, fmt.Errorf("delete expired %s: %w", table, err)
			}
			deleted[table] += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return deleted, nil
}
