package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Names of the files of an authority directory.
const (
	// OperatorJWTFile is the operator JWT (public).
	OperatorJWTFile = "operator.jwt"
	// OperatorSeedFile is the operator's nkey seed (secret, 0600): it signs
	// the account JWT, and is needed only to re-sign it.
	OperatorSeedFile = "operator.nk"
	// AccountJWTFile is the pcm account JWT (public), signed by the operator.
	AccountJWTFile = "account.jwt"
	// AccountSeedFile is the account's own nkey seed (secret, 0600).
	AccountSeedFile = "account.nk"
	// SystemJWTFile is the JWT of nats-server's system account (public),
	// signed by the operator. JetStream needs a system account; pcm issues
	// no user in it.
	SystemJWTFile = "system.jwt"
	// AccountKeyFile holds the account JWT and the account signing key seed
	// (secret, 0600): whoever holds it mints users (pcm enroll, pcm creds).
	AccountKeyFile = "account-key.creds"
	// AdminCredsFile is the first admin's credentials (secret, 0600).
	AdminCredsFile = "admin.creds"
)

// AccountName is the name in the pcm account's JWT.
const AccountName = "pcm"

// Authority is the root of trust of a deployment: the operator, the pcm
// account it signs, and the account's signing key. Make one with Setup (or
// Load); it lives in a directory whose secret files are 0600.
type Authority struct {
	dir     string
	trust   Trust
	account string
	signer  nkeys.KeyPair
}

// Setup loads the authority in dir, creating it first when dir holds none:
// an operator, the pcm account with unlimited JetStream, an account signing
// key, and credentials for a first admin named admin. created tells whether
// it was created. dir is created 0700 if needed; seeds and credentials are
// written 0600.
func Setup(dir string) (a *Authority, created bool, err error) {
	_, statErr := os.Stat(filepath.Join(dir, OperatorJWTFile))
	switch {
	case statErr == nil:
		a, err = Load(dir)
		return a, false, err
	case !errors.Is(statErr, os.ErrNotExist):
		return nil, false, fmt.Errorf("%w: %s: %w", ErrBadAuthority, dir, statErr)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("%w: creating %s: %w", ErrIssue, dir, err)
	}
	if a, err = create(dir); err != nil {
		return nil, false, err
	}
	iss, err := a.Issuer()
	if err != nil {
		return nil, false, err
	}
	creds, err := iss.Issue(User{Role: RoleAdmin, Name: "admin"})
	if err != nil {
		return nil, false, err
	}
	if err := WriteCreds(filepath.Join(dir, AdminCredsFile), creds); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// create makes and writes a new operator, account and signing key.
func create(dir string) (*Authority, error) {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return nil, fmt.Errorf("%w: operator key: %w", ErrIssue, err)
	}
	acc, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("%w: account key: %w", ErrIssue, err)
	}
	signer, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrIssue, err)
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("%w: system account key: %w", ErrIssue, err)
	}
	opPub, _ := op.PublicKey()
	accPub, _ := acc.PublicKey()
	signerPub, _ := signer.PublicKey()
	sysPub, _ := sys.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "pcm"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("%w: operator JWT: %w", ErrIssue, err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = AccountName
	ac.SigningKeys.Add(signerPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1,
	}
	// A user minted without permissions gets none.
	ac.DefaultPermissions.Pub.Deny.Add(">")
	ac.DefaultPermissions.Sub.Deny.Add(">")
	accJWT, err := ac.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("%w: account JWT: %w", ErrIssue, err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("%w: system account JWT: %w", ErrIssue, err)
	}
	signing, err := signerFile(accJWT, signer)
	if err != nil {
		return nil, err
	}
	opSeed, _ := op.Seed()
	accSeed, _ := acc.Seed()
	for _, f := range []struct {
		name   string
		data   []byte
		secret bool
	}{
		{OperatorSeedFile, opSeed, true},
		{AccountSeedFile, accSeed, true},
		{AccountKeyFile, signing, true},
		{AccountJWTFile, []byte(accJWT), false},
		{SystemJWTFile, []byte(sysJWT), false},
		{OperatorJWTFile, []byte(opJWT), false}, // last: its presence marks a complete authority
	} {
		mode := os.FileMode(0o644)
		if f.secret {
			mode = 0o600
		}
		if err := writeFile(filepath.Join(dir, f.name), f.data, mode); err != nil {
			return nil, err
		}
	}
	return &Authority{dir: dir, trust: Trust{OperatorJWT: opJWT, AccountJWT: accJWT, SystemJWT: sysJWT}, account: accPub, signer: signer}, nil
}

// signerFile renders the signing key file: the account JWT, then the seed.
func signerFile(accJWT string, signer nkeys.KeyPair) ([]byte, error) {
	j, err := jwt.DecorateJWT(accJWT)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	seed, _ := signer.Seed()
	s, err := jwt.DecorateSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	return append(j, s...), nil
}

// Load reads the authority in dir: its JWTs, and its signing key when the
// signing key file is there (Issuer fails without it).
func Load(dir string) (*Authority, error) {
	t, err := LoadTrust(dir)
	if err != nil {
		return nil, err
	}
	ac, _ := jwt.DecodeAccountClaims(t.AccountJWT)
	a := &Authority{dir: dir, trust: t, account: ac.Subject}
	path := filepath.Join(dir, AccountKeyFile)
	if _, err := os.Stat(path); err == nil {
		iss, err := LoadIssuer(path)
		if err != nil {
			return nil, err
		}
		if iss.account != a.account {
			return nil, fmt.Errorf("%w: %s signs for account %s, but %s is account %s: the directory mixes two authorities",
				ErrBadAuthority, path, iss.account, filepath.Join(dir, AccountJWTFile), a.account)
		}
		a.signer = iss.signer
	}
	return a, nil
}

// Dir is the directory of the authority.
func (a *Authority) Dir() string { return a.dir }

// Trust is what a broker needs to verify the authority's users.
func (a *Authority) Trust() Trust { return a.trust }

// Account is the public key of the pcm account.
func (a *Authority) Account() string { return a.account }

// Issuer returns an Issuer minting users with the account signing key.
func (a *Authority) Issuer() (*Issuer, error) {
	if a.signer == nil {
		return nil, fmt.Errorf("%w: %s has no %s: issue credentials where the signing key is kept",
			ErrNoAuthority, a.dir, AccountKeyFile)
	}
	return &Issuer{signer: a.signer, account: a.account}, nil
}

// Trust is the public half of an authority: the operator JWT the broker
// trusts and the pcm account JWT it preloads. It holds no secret, so every
// member of a cluster can have a copy.
type Trust struct {
	// OperatorJWT is the operator's self-signed JWT.
	OperatorJWT string
	// AccountJWT is the pcm account's JWT, signed by the operator.
	AccountJWT string
	// SystemJWT is the system account's JWT, signed by the operator.
	SystemJWT string
}

// LoadTrust reads the operator and account JWTs of the authority in dir.
func LoadTrust(dir string) (Trust, error) {
	var t Trust
	op, err := os.ReadFile(filepath.Join(dir, OperatorJWTFile))
	if errors.Is(err, os.ErrNotExist) {
		return t, fmt.Errorf("%w: %s has no %s: run pcm broker --auth once to create the operator and account, or point --auth-dir at the directory holding them",
			ErrNoAuthority, dir, OperatorJWTFile)
	}
	if err != nil {
		return t, fmt.Errorf("%w: %w", ErrBadAuthority, err)
	}
	acc, err := os.ReadFile(filepath.Join(dir, AccountJWTFile))
	if err != nil {
		return t, fmt.Errorf("%w: %s: %w", ErrBadAuthority, dir, err)
	}
	sys, err := os.ReadFile(filepath.Join(dir, SystemJWTFile))
	if err != nil {
		return t, fmt.Errorf("%w: %s: %w", ErrBadAuthority, dir, err)
	}
	t = Trust{OperatorJWT: strings.TrimSpace(string(op)), AccountJWT: strings.TrimSpace(string(acc)), SystemJWT: strings.TrimSpace(string(sys))}
	if _, err := t.System(); err != nil {
		return Trust{}, fmt.Errorf("%w (in %s)", err, dir)
	}
	return t, nil
}

// Decode parses and checks the operator and pcm account JWTs: the account
// must be signed by the operator and allow JetStream. System decodes the
// system account.
func (t Trust) Decode() (*jwt.OperatorClaims, *jwt.AccountClaims, error) {
	oc, err := jwt.DecodeOperatorClaims(t.OperatorJWT)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: operator JWT: %w", ErrBadAuthority, err)
	}
	ac, err := jwt.DecodeAccountClaims(t.AccountJWT)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: account JWT: %w", ErrBadAuthority, err)
	}
	if !oc.DidSign(ac) {
		return nil, nil, fmt.Errorf("%w: account %s is not signed by operator %s", ErrBadAuthority, ac.Subject, oc.Subject)
	}
	if !ac.Limits.IsJSEnabled() {
		return nil, nil, fmt.Errorf("%w: account %s does not enable JetStream", ErrBadAuthority, ac.Subject)
	}
	return oc, ac, nil
}

// System parses and checks the system account JWT: the operator's system
// account, signed by the operator.
func (t Trust) System() (*jwt.AccountClaims, error) {
	oc, _, err := t.Decode()
	if err != nil {
		return nil, err
	}
	sc, err := jwt.DecodeAccountClaims(t.SystemJWT)
	if err != nil {
		return nil, fmt.Errorf("%w: system account JWT: %w", ErrBadAuthority, err)
	}
	if !oc.DidSign(sc) || sc.Subject != oc.SystemAccount {
		return nil, fmt.Errorf("%w: account %s is not the system account of operator %s", ErrBadAuthority, sc.Subject, oc.Subject)
	}
	return sc, nil
}

// writeFile writes data to path with mode, through a temporary file renamed
// into place, so that a reader never sees half a file and a secret is never
// readable by others, not even for an instant.
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: writing %s: %w", ErrIssue, path, err)
	}
	return nil
}
