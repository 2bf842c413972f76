package devserver

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/authz/authz/authz"
)

// secretFile holds the system secret dev made, in the data directory.
const secretFile = "secret"

// loadOrCreateSecret reads the system secret from path, or generates one
// (48 random bytes, base64) and writes it there, readable by the owner only.
func loadOrCreateSecret(path string) ([]byte, error) {
	secret, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	b := make([]byte, 48)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	text := base64.StdEncoding.EncodeToString(b)
	if err := writeFileAtomic(path, []byte(text+"\n")); err != nil {
		return nil, fmt.Errorf("write system secret: %w", err)
	}
	return []byte(text), nil
}

// ReadSecret returns the system secret dev keeps in dataDir, for CLI
// commands that work on dev's database and need it (keys rotate seals the
// new key with it). The error wraps fs.ErrNotExist when there is none.
func ReadSecret(dataDir string) ([]byte, error) {
	return readSecret(filepath.Join(dataDir, secretFile))
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read system secret: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < authz.MinSecretLength {
		return nil, fmt.Errorf("%s: the system secret is %d bytes, want at least %d (delete the file to have a new one made)",
			path, len(secret), authz.MinSecretLength)
	}
	return []byte(secret), nil
}

// writeFileAtomic writes data to path with mode 0600 through a temporary
// file, so that a crash leaves the old file or the new one, never half.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path) // CreateTemp made it 0600
}

// relPath shows path relative to the working directory when it is inside
// it, as people typed it.
func relPath(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}
