package storage

import (
	"crypto/sha256"
	"encoding/hex"
)

// hashKey turns a random bearer value (a cookie id, a code) into the key we
// store, so the table never holds a usable value.
func hashKey(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// HashToken is the stored form of a random bearer token such as a
// registration access token: its SHA-256, in hex. The token has 256 bits of
// entropy, so a fast hash is enough.
func HashToken(token string) string { return hashKey(token) }
