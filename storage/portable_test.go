package storage_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestPortableSQL keeps out of storage and the migrations what only
// PostgreSQL itself offers and distributed SQL engines on its wire
// protocol do not: table locks, physical row ids, advisory locks and
// PostgreSQL's internal hash functions (issue 16).
func TestPortableSQL(t *testing.T) {
	forbidden := regexp.MustCompile(`(?i)\bLOCK\s+TABLE\b|\bctid\b|\bhashtext(extended)?\b|\bpg_(try_)?advisory_`)
	var files []string
	for _, pattern := range []string{"*.go", "../migrations/*.sql"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		if filepath.Base(f) == "portable_test.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, loc := range forbidden.FindAllIndex(b, -1) {
			t.Errorf("%s: %q is not portable SQL", f, b[loc[0]:loc[1]])
		}
	}
}
