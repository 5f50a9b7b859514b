package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// issuerFileVersion is the version of the issuer file's format.
const issuerFileVersion = 1

// issuerFile is the content of IssuerFile.
type issuerFile struct {
	Version int `json:"version"`
	// Operator, System and Account are the public keys of the operator,
	// the system account and the pcm account.
	Operator string `json:"operator"`
	System   string `json:"system"`
	Account  string `json:"account"`
	// OperatorSigningKey signs accounts (a signing key of the operator).
	OperatorSigningKey string `json:"operator_signing_key"`
	// AccountSigningKey signs the pcm account's users (admins).
	AccountSigningKey string `json:"account_signing_key"`
	// PrincipalSigningKey signs the users of every principal's account
	// (clients, publishers, auditors): each lists it as a signing key.
	PrincipalSigningKey string `json:"principal_signing_key"`
	// PrincipalSecret derives each principal's account key.
	PrincipalSecret []byte `json:"principal_secret"`
}

// render is the file's content.
func (f issuerFile) render() ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	return append(b, '\n'), nil
}

// Issuer makes what a broker needs to let a principal in (its account JWT)
// and the principals' users (credentials), with the authority's signing
// keys. A broker needs no restart to accept either: account JWTs are pushed
// to its resolver (fleet does that), user JWTs are verified against them.
type Issuer struct {
	file                               issuerFile
	opSigner, accSigner, principalSign nkeys.KeyPair
	principalSignPub                   string
}

// newIssuer checks f and reads its keys.
func newIssuer(f issuerFile) (*Issuer, error) {
	if f.Version != issuerFileVersion {
		return nil, fmt.Errorf("%w: issuer file version %d: this pcm reads version %d", ErrBadAuthority, f.Version, issuerFileVersion)
	}
	i := &Issuer{file: f}
	for _, k := range []struct {
		seed   string
		dst    *nkeys.KeyPair
		valid  func(string) bool
		what   string
		prefix nkeys.PrefixByte
	}{
		{f.OperatorSigningKey, &i.opSigner, nkeys.IsValidPublicOperatorKey, "operator_signing_key", nkeys.PrefixByteOperator},
		{f.AccountSigningKey, &i.accSigner, nkeys.IsValidPublicAccountKey, "account_signing_key", nkeys.PrefixByteAccount},
		{f.PrincipalSigningKey, &i.principalSign, nkeys.IsValidPublicAccountKey, "principal_signing_key", nkeys.PrefixByteAccount},
	} {
		kp, err := nkeys.FromSeed([]byte(k.seed))
		if err != nil {
			return nil, fmt.Errorf("%w: issuer file: %s: %w", ErrBadAuthority, k.what, err)
		}
		pub, _ := kp.PublicKey()
		if !k.valid(pub) {
			return nil, fmt.Errorf("%w: issuer file: %s is not a %s key", ErrBadAuthority, k.what, k.prefix)
		}
		*k.dst = kp
	}
	i.principalSignPub, _ = i.principalSign.PublicKey()
	if !nkeys.IsValidPublicOperatorKey(f.Operator) || !nkeys.IsValidPublicAccountKey(f.System) || !nkeys.IsValidPublicAccountKey(f.Account) {
		return nil, fmt.Errorf("%w: issuer file: operator, system or account is not a public key", ErrBadAuthority)
	}
	if len(f.PrincipalSecret) < 32 {
		return nil, fmt.Errorf("%w: issuer file: principal_secret is shorter than 32 bytes", ErrBadAuthority)
	}
	return i, nil
}

// LoadIssuer reads an issuer file (IssuerFile of an authority).
func LoadIssuer(path string) (*Issuer, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: issuer file %s does not exist: it is %s in the auth directory of pcm broker --auth (by default DATA/auth)",
			ErrNoAuthority, path, IssuerFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAuthority, err)
	}
	var f issuerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %s is not an issuer file (%v): give %s of the auth directory", ErrBadAuthority, path, err, IssuerFile)
	}
	iss, err := newIssuer(f)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return iss, nil
}

// Account is the public key of the pcm account.
func (i *Issuer) Account() string { return i.file.Account }

// Operator is the public key of the operator.
func (i *Issuer) Operator() string { return i.file.Operator }

// AccountOf is the public key of p's account.
func (i *Issuer) AccountOf(p Principal) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	kp, err := accountKey(i.file.PrincipalSecret, p)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

// PrincipalAccount signs p's account JWT: its imports and limits (see
// Imports), the principals' signing key, and the revocations rev (carried
// over from the JWT the brokers hold: a new enrollment must not bring
// revoked credentials back).
func (i *Issuer) PrincipalAccount(p Principal, rev jwt.RevocationList) (string, error) {
	pub, err := i.AccountOf(p)
	if err != nil {
		return "", err
	}
	ac, err := principalAccount(pub, i.file.Account, i.principalSignPub, p, rev)
	if err != nil {
		return "", err
	}
	tok, err := ac.Encode(i.opSigner)
	if err != nil {
		return "", fmt.Errorf("%w: signing the account of %s: %w", ErrIssue, p, err)
	}
	return tok, nil
}

// SignAccount signs account claims (an account of this authority, changed:
// a revocation) with the operator's signing key.
func (i *Issuer) SignAccount(ac *jwt.AccountClaims) (string, error) {
	tok, err := ac.Encode(i.opSigner)
	if err != nil {
		return "", fmt.Errorf("%w: signing account %s: %w", ErrIssue, ac.Name, err)
	}
	return tok, nil
}

// authorityAccountClaims are the system and pcm accounts this version of
// pcm wants: the system account exports the resolver's claims update and
// lookup, the pcm account imports them for its admins, has JetStream and
// exports what the principals import.
func (i *Issuer) authorityAccountClaims() (sys, acc *jwt.AccountClaims, err error) {
	sys = jwt.NewAccountClaims(i.file.System)
	sys.Name = systemAccountName
	sys.Exports.Add(
		&jwt.Export{Subject: sysClaimsUpdate, Type: jwt.Service, ResponseType: jwt.ResponseTypeStream},
		&jwt.Export{Subject: sysClaimsLookup, Type: jwt.Service, ResponseType: jwt.ResponseTypeStream},
	)
	acc = jwt.NewAccountClaims(i.file.Account)
	acc.Name = AccountName
	accSignPub, _ := i.accSigner.PublicKey()
	acc.SigningKeys.Add(accSignPub)
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1,
	}
	acc.Imports.Add(
		&jwt.Import{Account: i.file.System, Subject: sysClaimsUpdate, LocalSubject: ClaimsUpdateSubject, Type: jwt.Service},
		&jwt.Import{Account: i.file.System, Subject: sysClaimsLookup, LocalSubject: ClaimsLookupPrefix + "*", Type: jwt.Service},
	)
	acc.Exports = jwtExports()
	// A user minted without permissions gets none.
	acc.DefaultPermissions.Pub.Deny.Add(">")
	acc.DefaultPermissions.Sub.Deny.Add(">")
	return sys, acc, nil
}

// authorityAccounts signs the system and pcm account JWTs.
func (i *Issuer) authorityAccounts() (sysJWT, accJWT string, err error) {
	sys, acc, err := i.authorityAccountClaims()
	if err != nil {
		return "", "", err
	}
	if sysJWT, err = sys.Encode(i.opSigner); err != nil {
		return "", "", fmt.Errorf("%w: system account JWT: %w", ErrIssue, err)
	}
	if accJWT, err = acc.Encode(i.opSigner); err != nil {
		return "", "", fmt.Errorf("%w: account JWT: %w", ErrIssue, err)
	}
	return sysJWT, accJWT, nil
}

// Issue mints a new user (a new nkey) for u and returns its credentials
// file content: the user JWT with u's permissions and limits, then its
// seed. An admin is a user of the pcm account; the other roles are users
// of their principal's account, which must be on the brokers for the
// credentials to work (fleet pushes it). They expire after u.TTL, or never;
// keep them 0600 (WriteCreds does).
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
	uc.Permissions = perms
	uc.Limits = userLimits(u.Role)
	uc.BearerToken = false
	uc.Tags.Add(roleTag(u.Role))
	if u.Role == RoleSite {
		// A site's credentials are its broker's leaf connection, never a
		// client's.
		uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeLeafnode)
	}
	if u.InProcess {
		uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeInProcess)
	}
	signer := i.accSigner
	uc.IssuerAccount = i.file.Account
	if u.Role != RoleAdmin {
		if uc.IssuerAccount, err = i.AccountOf(u.Principal()); err != nil {
			return nil, err
		}
		signer = i.principalSign
	}
	if u.TTL > 0 {
		uc.Expires = time.Now().Add(u.TTL).Unix()
	}
	tok, err := uc.Encode(signer)
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

// roleTag is the tag of a user JWT that names its role.
func roleTag(r Role) string { return "pcm-role:" + string(r) }

// RoleOf is the role a user JWT was issued for (Issue tags it), and false
// for a JWT pcm did not issue.
func RoleOf(uc *jwt.UserClaims) (Role, bool) {
	for _, r := range Roles {
		if uc.Tags.Contains(roleTag(r)) {
			return r, true
		}
	}
	return "", false
}

// Option is the nats.Option of credentials of u minted now (Issue) and held
// in memory only (CredsOption): how a process that keeps the issuer file
// connects as a user it mints for itself.
func (i *Issuer) Option(u User) (nats.Option, error) {
	creds, err := i.Issue(u)
	if err != nil {
		return nil, err
	}
	return CredsOption(creds)
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
		if p := inboxPrefixOf(uc); p != "" {
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
