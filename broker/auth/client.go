package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// ClientConfig is how a pcm client authenticates to the broker and checks
// its certificate. The zero value connects without either (the open
// loopback broker of pcm up).
type ClientConfig struct {
	// CredsFile is the user's credentials file (pcm enroll, pcm creds).
	CredsFile string
	// CAFile is the PEM bundle of the CA(s) that signed the broker's
	// certificate. Setting it makes the connection require TLS.
	CAFile string
	// CertFile and KeyFile are an optional client certificate, for brokers
	// that verify their clients.
	CertFile, KeyFile string
}

// Options returns the nats.Options of c: the user credentials with the
// user's private inbox prefix (read from its JWT), and TLS. It reads and
// checks every file now, so that a wrong path fails before dialling.
func (c ClientConfig) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if c.CredsFile != "" {
		uc, err := CredsUser(c.CredsFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
		if p := inboxPrefixOf(uc); p != "" {
			opts = append(opts, nats.CustomInboxPrefix(p))
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("%w: a client certificate needs both --tls-cert and --tls-key", ErrTLS)
	}
	if c.CAFile != "" || c.CertFile != "" {
		cfg, err := c.TLSConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// TLSConfig is the client TLS configuration of c: the CA pool and the
// optional client certificate.
func (c ClientConfig) TLSConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pool, err := LoadCAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate %s with key %s: %w", ErrTLS, c.CertFile, c.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCAPool reads a PEM bundle of CA certificates.
func LoadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: CA file: %w", ErrTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrTLS, path)
	}
	return pool, nil
}

// InboxPrefixOfCreds is the private inbox prefix of the user of a
// credentials file (what its subscription grants name): a site broker's
// own connections use its leaf credentials' prefix, the only inbox whose
// answers cross the leaf connection back from the hub.
func InboxPrefixOfCreds(path string) (string, error) {
	uc, err := CredsUser(path)
	if err != nil {
		return "", err
	}
	return inboxPrefixOf(uc), nil
}

// inboxPrefixOf is a pcm user's private inbox prefix: the one its
// subscription grants name, or, for an agent (whose JWT allows its whole
// account), the one its name makes. "" for a user without one (an admin).
func inboxPrefixOf(uc *jwt.UserClaims) string {
	for _, s := range uc.Permissions.Sub.Allow {
		if strings.HasPrefix(s, inboxPrefixStart) && strings.HasSuffix(s, ".>") {
			return strings.TrimSuffix(s, ".>")
		}
	}
	if r, _ := RoleOf(uc); r == RoleAgent {
		return inboxPrefixStart + uc.Name
	}
	return ""
}
