package publisher

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/pcm-project/pcm/events"
)

// NewSigningKey creates a signing key pair (an nkeys user key, ed25519),
// writes its seed to path with mode 0600 (creating the directory, 0700, if
// needed) and returns its public key, the one agents trust. It never
// overwrites a file: an existing path fails with fs.ErrExist.
func NewSigningKey(path string) (publicKey string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("creating a signing key: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("creating a signing key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("creating a signing key: %w", err)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("creating the directory of signing key %s: %w", path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("signing key %s: %w: a key file is never overwritten; choose another path or remove the old key first", path, err)
	}
	if err != nil {
		return "", fmt.Errorf("writing signing key %s: %w", path, err)
	}
	_, err = f.Write(append(seed, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("writing signing key %s: %w", path, err)
	}
	return pub, nil
}

// ReadSigningKey reads the signing key pair in path: a file holding an
// nkeys user or account seed (as NewSigningKey writes, or nk -gen user), or
// a NATS credentials file whose seed is a user's. Errors name the file,
// never its content; a file that holds no usable seed wraps
// events.ErrInvalidKey.
func ReadSigningKey(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key %s: %w (create one with pcm keys new --out FILE)", path, err)
	}
	defer wipe(b)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		kp, err = nkeys.ParseDecoratedNKey(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s holds no nkeys seed (a line starting with SU or SA): create one with pcm keys new --out FILE", events.ErrInvalidKey, path)
	}
	if _, err := events.SignerOf(kp); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return kp, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
