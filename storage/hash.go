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
