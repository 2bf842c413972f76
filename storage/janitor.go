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
	"device_codes", "pushed_authorization_requests",
}

// primaryKeys names each expiring table's primary key, by which the
// janitor picks the rows it deletes (not by the physical row id, which is PostgreSQL's
// alone and changes with every update of a row).
var primaryKeys = map[string]string{
	string(codesTable): "signature", string(accessTable): "signature", string(refreshTable): "signature",
	string(pkceTable): "signature", string(oidcTable): "signature",
	"login_sessions": "id_hash", "consents": "user_id, client_id", "client_assertion_jtis": "jti",
	"login_throttle": "key", "signing_keys": "kid", "device_codes": "signature",
	"pushed_authorization_requests": "id_hash",
}

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
		key, ok := primaryKeys[table]
		if !ok {
			return deleted, fmt.Errorf("delete expired %s: no primary key known", table)
		}
		for {
			tag, err := s.pool.Exec(ctx, `
				DELETE FROM `+table+` WHERE (`+key+`) IN (
					SELECT `+key+` FROM `+table+` WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
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
