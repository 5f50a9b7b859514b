package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Issuer mints user credentials with the pcm account's signing key. The
// broker needs no change to accept them: it verifies the user JWT against
// the account, which lists the signing key.
type Issuer struct {
	signer  nkeys.KeyPair
	account string
}

// LoadIssuer reads a signing key file (AccountKeyFile of an authority: the
// account JWT, then the signing key seed).
func LoadIssuer(path string) (*Issuer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: signing key file %s does not exist: it is %s in the auth directory of pcm broker --auth (by default DATA/auth)",
			ErrNoAuthority, path, AccountKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAuthority, err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadAuthority, path, err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: %s holds no account JWT (%v): is it a signing key file (%s)?", ErrBadAuthority, path, err, AccountKeyFile)
	}
	kp, err := jwt.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s holds no signing key seed: %w", ErrBadAuthority, path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("%w: %s: the seed is not an account signing key", ErrBadAuthority, path)
	}
	if pub != ac.Subject && !ac.SigningKeys.Contains(pub) {
		return nil, fmt.Errorf("%w: %s: key %s is not a signing key of account %s", ErrBadAuthority, path, pub, ac.Subject)
	}
	return &Issuer{signer: kp, account: ac.Subject}, nil
}

// Account is the public key of the account the issuer signs for.
func (i *Issuer) Account() string { return i.account }

// Issue mints a new user (a new nkey) for u and returns its credentials
// file content: the user JWT with u's permissions, then its seed. They
// expire after u.TTL, or never; keep them 0600 (WriteCreds does).
func (i *Issuer) Issue(u User) ([]byte, error) {
	perms, err := Permissions(u)
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("%w: user key: %w", ErrIssue, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = u.UserName()
	uc.IssuerAccount = i.account
	uc.Permissions = perms
	uc.Tags.Add("pcm-role:" + string(u.Role))
	now := time.Now()
	uc.IssuedAt = now.Unix()
	if u.TTL > 0 {
		uc.Expires = now.Add(u.TTL).Unix()
	}
	tok, err := uc.Encode(i.signer)
	if err != nil {
		return nil, fmt.Errorf("%w: signing %s: %w", ErrIssue, u.UserName(), err)
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIssue, u.UserName(), err)
	}
	return creds, nil
}

// WriteCreds writes a credentials file 0600 (its directory is created 0700
// if missing), replacing any file at path.
func WriteCreds(path string, creds []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrIssue, err)
	}
	return writeFile(path, creds, 0o600)
}

// CredsUser reads the user JWT of a credentials file: its name, account,
// role tag and permissions.
func CredsUser(path string) (*jwt.UserClaims, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCreds, err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCreds, path, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("%w: %s holds no user JWT: %w", ErrCreds, path, err)
	}
	return uc, nil
}

// CredsOption is the nats.Option authenticating with credentials held in
// memory (as Issue returns them), for a process that mints its own.
func CredsOption(creds []byte) (nats.Option, error) {
	tok, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCreds, err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCreds, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCreds, err)
	}
	opts := []nats.Option{nats.UserJWTAndSeed(tok, string(seed))}
	if uc, err := jwt.DecodeUserClaims(tok); err == nil {
		if p := inboxPrefixOf(uc.Permissions.Sub.Allow); p != "" {
			opts = append(opts, nats.CustomInboxPrefix(p))
		}
	}
	return func(o *nats.Options) error {
		for _, opt := range opts {
			if err := opt(o); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
