package storage_test

import (
	"testing"

	"github.com/authz/authz/storage"
)

// The two ways a client secret is checked: a generated secret's SHA-256
// and an operator-chosen secret's Argon2id. Run with
// go test -run '^$' -bench Secret ./storage/ to compare them.

func BenchmarkCompareGeneratedSecret(b *testing.B) {
	secret, err := storage.GenerateSecret()
	if err != nil {
		b.Fatal(err)
	}
	hash := storage.HashGeneratedSecret(secret)
	for b.Loop() {
		if err := storage.CompareSecret(hash, secret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompareChosenSecret(b *testing.B) {
	secret := "an operator's chosen secret"
	hash, err := storage.HashPassword(secret)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := storage.CompareSecret(hash, secret); err != nil {
			b.Fatal(err)
		}
	}
}
