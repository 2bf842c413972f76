package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/ory/fosite"
	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's Password Storage Cheat Sheet recommends at
// least 19 MiB of memory, 2 iterations and 1 degree of parallelism.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// Prefixes of the stored hash formats; Compare picks the scheme from them.
const (
	argonPrefix  = "$argon2id$"
	sha256Prefix = "$sha256$"
)

var errMismatch = errors.New("secret does not match")

// ErrBusy is returned when too many slow hashes are already running: each
// takes 19 MiB, so they are capped instead of letting a flood of login
// attempts exhaust memory.
var ErrBusy = errors.New("too many password checks in progress")

// argonSlots bounds concurrent Argon2id verifications.
var argonSlots = make(chan struct{}, max(2, 2*runtime.NumCPU()))

// argonWait is how long a verification waits for a slot.
const argonWait = 5 * time.Second

// CompareSecretContext is CompareSecret for request paths: Argon2id checks
// wait at most a few seconds for one of a bounded number of slots.
func CompareSecretContext(ctx context.Context, hash, secret string) error {
	if !strings.HasPrefix(hash, argonPrefix) {
		return CompareSecret(hash, secret)
	}
	t := time.NewTimer(argonWait)
	defer t.Stop()
	select {
	case argonSlots <- struct{}{}:
	case <-t.C:
		return ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-argonSlots }()
	return CompareSecret(hash, secret)
}

// HashPassword hashes a secret a person chose (a password, or a client secret
// an operator typed) with Argon2id, in the PHC string format.
func HashPassword(secret string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(secret), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argonPrefix, argon2.Version,
		argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// HashGeneratedSecret hashes a secret the server generated with 256 bits of
// entropy. Guessing such a secret is hopeless whatever the hash, so a fast
// SHA-256 is as safe as a slow hash and costs microseconds per token request.
func HashGeneratedSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return sha256Prefix + base64.RawStdEncoding.EncodeToString(sum[:])
}

// GenerateSecret returns 32 random bytes, base64url-encoded without padding.
func GenerateSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CompareSecret checks secret against a stored hash in either format, in
// constant time with respect to the secret.
func CompareSecret(hash, secret string) error {
	switch {
	case strings.HasPrefix(hash, sha256Prefix):
		sum := sha256.Sum256([]byte(secret))
		want, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(hash, sha256Prefix))
		if err != nil {
			return fmt.Errorf("compare secret: malformed hash: %w", err)
		}
		if subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return errMismatch
		}
		return nil
	case strings.HasPrefix(hash, argonPrefix):
		return compareArgon2id(hash, secret)
	default:
		return errors.New("compare secret: unknown hash format")
	}
}

func compareArgon2id(hash, secret string) error {
	// $argon2id$v=19$m=19456,t=2,p=1$salt$key
	parts := strings.Split(hash, "$")
	if len(parts) != 6 {
		return errors.New("compare secret: malformed argon2id hash")
	}
	var version int
	var mem, iters uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("compare secret: unsupported argon2id version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iters, &threads); err != nil {
		return fmt.Errorf("compare secret: malformed argon2id parameters: %w", err)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return fmt.Errorf("compare secret: malformed salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return fmt.Errorf("compare secret: malformed key: %w", err)
	}
	got := argon2.IDKey([]byte(secret), salt, iters, mem, threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return errMismatch
	}
	return nil
}

// SecretHasher lets fosite verify client secrets against our stored hashes.
// Its Hash is the slow scheme, for secrets a person chose.
type SecretHasher struct{}

var _ fosite.Hasher = SecretHasher{}

func (SecretHasher) Compare(ctx context.Context, hash, data []byte) error {
	return CompareSecretContext(ctx, string(hash), string(data))
}

func (SecretHasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	h, err := HashPassword(string(data))
	return []byte(h), err
}
