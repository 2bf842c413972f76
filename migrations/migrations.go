// Package migrations embeds the numbered SQL files that own the database
// schema. They are in tern's format (NNN_name.sql) and applied by
// storage.Migrate.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
