package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Names of the files of an authority directory.
const (
	// OperatorJWTFile is the operator JWT (public): what every broker
	// trusts.
	OperatorJWTFile = "operator.jwt"
	// OperatorSeedFile is the operator's own nkey seed (secret, 0600): it
	// signs the operator JWT, and is needed only to change it (a new
	// signing key).
	OperatorSeedFile = "operator.nk"
	// AccountJWTFile is the pcm account JWT (public): the account that
	// holds the streams and buckets, with its exports.
	AccountJWTFile = "account.jwt"
	// AccountSeedFile is the pcm account's own nkey seed (secret, 0600).
	AccountSeedFile = "account.nk"
	// SystemJWTFile is the JWT of nats-server's system account (public),
	// which exports the resolver's claims update and lookup to the pcm
	// account's admins.
	SystemJWTFile = "system.jwt"
	// IssuerFile holds the signing keys that make accounts and users
	// (secret, 0600): whoever holds it enrolls clients, issues and revokes
	// credentials (pcm enroll, pcm creds, pcm revoke --issuer).
	IssuerFile = "issuer.json"
	// AdminCredsFile is the first admin's credentials (secret, 0600).
	AdminCredsFile = "admin.creds"
)

// PublicFiles are the authority's public JWTs, which hold no secret: what
// a cluster member without the issuer or a branch site's broker copies
// (CopyPublic) to trust the authority.
var PublicFiles = []string{OperatorJWTFile, AccountJWTFile, SystemJWTFile}

// CopyPublic copies the authority's PublicFiles from the directory from
// to the directory to (made 0700 when missing; the files 0644).
func CopyPublic(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return fmt.Errorf("copying the authority's public JWTs: %w", err)
	}
	for _, f := range PublicFiles {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			return fmt.Errorf("copying the authority's public JWTs: %w", err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o644); err != nil {
			return fmt.Errorf("copying the authority's public JWTs: %w", err)
		}
	}
	return nil
}

// AccountName is the name in the pcm account's JWT.
const AccountName = "pcm"

// systemAccountName is the name in the system account's JWT.
const systemAccountName = "SYS"

// Authority is the root of trust of a deployment: the operator, the system
// account, the pcm account and the issuer's signing keys. Make one with
// Setup (or Load); it lives in a directory whose secret files are 0600.
type Authority struct {
	dir    string
	trust  Trust
	issuer *Issuer
}

// Setup loads the authority in dir, creating it first when dir holds none:
// an operator with a signing key, the system account, the pcm account with
// unlimited JetStream and its exports, the issuer's keys, and credentials
// for a first admin named admin. created tells whether it was created. dir
// is created 0700 if needed; seeds and credentials are written 0600.
//
// An existing authority whose issuer file is present is brought up to date:
// when this version of pcm exports or imports other subjects than the
// account JWTs say, they are signed again and rewritten (copy them to the
// other members of a cluster).
func Setup(dir string) (a *Authority, created bool, err error) {
	_, statErr := os.Stat(filepath.Join(dir, OperatorJWTFile))
	switch {
	case statErr == nil:
		if a, err = Load(dir); err != nil {
			return nil, false, err
		}
		return a, false, a.refresh()
	case !errors.Is(statErr, os.ErrNotExist):
		return nil, false, fmt.Errorf("%w: %s: %w", ErrBadAuthority, dir, statErr)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("%w: creating %s: %w", ErrIssue, dir, err)
	}
	if a, err = create(dir); err != nil {
		return nil, false, err
	}
	creds, err := a.issuer.Issue(User{Role: RoleAdmin, Name: "admin"})
	if err != nil {
		return nil, false, err
	}
	if err := WriteCreds(filepath.Join(dir, AdminCredsFile), creds); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// create makes and writes a new authority.
func create(dir string) (*Authority, error) {
	keys := make([]nkeys.KeyPair, 0, 7)
	for _, mk := range []func() (nkeys.KeyPair, error){
		nkeys.CreateOperator, nkeys.CreateOperator, // operator, its signing key
		nkeys.CreateAccount, nkeys.CreateAccount, nkeys.CreateAccount, // system, pcm, pcm's signing key
		nkeys.CreateAccount, // the principals' signing key
	} {
		kp, err := mk()
		if err != nil {
			return nil, fmt.Errorf("%w: creating a key: %w", ErrIssue, err)
		}
		keys = append(keys, kp)
	}
	op, opSigner, sys, acc, accSigner, prSigner := keys[0], keys[1], keys[2], keys[3], keys[4], keys[5]
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssue, err)
	}
	opPub, _ := op.PublicKey()
	opSignerPub, _ := opSigner.PublicKey()
	sysPub, _ := sys.PublicKey()
	accPub, _ := acc.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "pcm"
	oc.SystemAccount = sysPub
	oc.SigningKeys.Add(opSignerPub)
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("%w: operator JWT: %w", ErrIssue, err)
	}
	iss, err := newIssuer(issuerFile{Version: issuerFileVersion, Operator: opPub, System: sysPub, Account: accPub,
		OperatorSigningKey: seedOf(opSigner), AccountSigningKey: seedOf(accSigner),
		PrincipalSigningKey: seedOf(prSigner), PrincipalSecret: secret})
	if err != nil {
		return nil, err
	}
	sysJWT, accJWT, err := iss.authorityAccounts()
	if err != nil {
		return nil, err
	}
	issFile, err := iss.file.render()
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name   string
		data   []byte
		secret bool
	}{
		{OperatorSeedFile, []byte(seedOf(op)), true},
		{AccountSeedFile, []byte(seedOf(acc)), true},
		{IssuerFile, issFile, true},
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
	return &Authority{dir: dir, trust: Trust{OperatorJWT: opJWT, AccountJWT: accJWT, SystemJWT: sysJWT}, issuer: iss}, nil
}

// seedOf is a key pair's seed as a string.
func seedOf(kp nkeys.KeyPair) string {
	s, _ := kp.Seed()
	return string(s)
}

// refresh signs the system and pcm account JWTs again when they do not say
// what this version of pcm exports and imports (after an upgrade), if the
// issuer file is here; it is a no-op otherwise.
func (a *Authority) refresh() error {
	if a.issuer == nil {
		return nil
	}
	_, ac, err := a.trust.Decode()
	if err != nil {
		return err
	}
	sc, err := a.trust.System()
	if err != nil {
		return err
	}
	wantSys, wantAcc, err := a.issuer.authorityAccountClaims()
	if err != nil {
		return err
	}
	if sameAccount(sc, wantSys) && sameAccount(ac, wantAcc) {
		return nil
	}
	sysJWT, accJWT, err := a.issuer.authorityAccounts()
	if err != nil {
		return err
	}
	for name, data := range map[string]string{AccountJWTFile: accJWT, SystemJWTFile: sysJWT} {
		if err := writeFile(filepath.Join(a.dir, name), []byte(data), 0o644); err != nil {
			return err
		}
	}
	a.trust.AccountJWT, a.trust.SystemJWT = accJWT, sysJWT
	return nil
}

// sameAccount compares what pcm decides in an account JWT: its exports,
// imports, signing keys and limits.
func sameAccount(have, want *jwt.AccountClaims) bool {
	// Encoding sorts exports and imports by subject (not stably), so
	// their order says nothing: compare them as sets.
	key := func(ac *jwt.AccountClaims) string {
		var lines []string
		for _, e := range ac.Exports {
			lines = append(lines, fmt.Sprintf("e %s %s %s %d", e.Type, e.Subject, e.ResponseType, e.ResponseThreshold))
		}
		for _, i := range ac.Imports {
			lines = append(lines, fmt.Sprintf("i %s %s %s %s", i.Type, i.Account, i.Subject, i.LocalSubject))
		}
		keys := ac.SigningKeys.Keys()
		slices.Sort(keys)
		lines = append(lines, fmt.Sprintf("k %v", keys), fmt.Sprintf("l %+v", ac.Limits))
		slices.Sort(lines)
		return strings.Join(lines, "|")
	}
	return key(have) == key(want)
}

// Open is the authority a broker runs with: on a single node, Setup (it is
// created at the first start); for a member of a cluster (member true),
// Load, refusing with ErrNoAuthority a dir that holds none, since every
// member must trust the same authority, created once (pcm broker
// init-auth) and copied to each.
func Open(dir string, member bool) (a *Authority, created bool, err error) {
	if !member {
		return Setup(dir)
	}
	if _, err := os.Stat(filepath.Join(dir, OperatorJWTFile)); errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("%w: cluster member with --auth: %s holds no authority; every member must trust the same one: create it once with pcm broker init-auth --auth-dir DIR and copy %s, %s and %s to each member's --auth-dir",
			ErrNoAuthority, dir, OperatorJWTFile, AccountJWTFile, SystemJWTFile)
	}
	a, err = Load(dir)
	return a, false, err
}

// Load reads the authority in dir: its JWTs, and its issuer when the issuer
// file is there (Issuer fails without it).
func Load(dir string) (*Authority, error) {
	t, err := LoadTrust(dir)
	if err != nil {
		return nil, err
	}
	a := &Authority{dir: dir, trust: t}
	path := filepath.Join(dir, IssuerFile)
	if _, err := os.Stat(path); err == nil {
		iss, err := LoadIssuer(path)
		if err != nil {
			return nil, err
		}
		if iss.Account() != t.Account() {
			return nil, fmt.Errorf("%w: %s issues for account %s, but %s is account %s: the directory mixes two authorities",
				ErrBadAuthority, path, iss.Account(), filepath.Join(dir, AccountJWTFile), t.Account())
		}
		a.issuer = iss
	}
	return a, nil
}

// Dir is the directory of the authority.
func (a *Authority) Dir() string { return a.dir }

// Trust is what a broker needs to verify the authority's users.
func (a *Authority) Trust() Trust { return a.trust }

// Account is the public key of the pcm account.
func (a *Authority) Account() string { return a.trust.Account() }

// Issuer returns the authority's issuer: it makes principals' accounts and
// users of every role.
func (a *Authority) Issuer() (*Issuer, error) {
	if a.issuer == nil {
		return nil, fmt.Errorf("%w: %s has no %s: issue credentials where the issuer file is kept",
			ErrNoAuthority, a.dir, IssuerFile)
	}
	return a.issuer, nil
}

// Trust is the public half of an authority: the operator JWT the broker
// trusts, and the system and pcm account JWTs it preloads into its
// resolver. It holds no secret, so every member of a cluster can have a
// copy.
type Trust struct {
	// OperatorJWT is the operator's self-signed JWT.
	OperatorJWT string
	// AccountJWT is the pcm account's JWT, signed by the operator.
	AccountJWT string
	// SystemJWT is the system account's JWT, signed by the operator.
	SystemJWT string
}

// LoadTrust reads the operator, pcm account and system account JWTs of the
// authority in dir.
func LoadTrust(dir string) (Trust, error) {
	var t Trust
	op, err := os.ReadFile(filepath.Join(dir, OperatorJWTFile))
	if errors.Is(err, os.ErrNotExist) {
		return t, fmt.Errorf("%w: %s has no %s: run pcm broker --auth once to create the operator and accounts, or point --auth-dir at the directory holding them",
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

// Account is the public key of the pcm account (empty when the JWT does
// not decode).
func (t Trust) Account() string {
	ac, err := jwt.DecodeAccountClaims(t.AccountJWT)
	if err != nil {
		return ""
	}
	return ac.Subject
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
