package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/pcm-project/pcm/broker/auth"
)

// TLSConfig turns on TLS for client connections and cluster routes. Leave
// it zero for plain TCP.
type TLSConfig struct {
	// CertFile and KeyFile are the broker's PEM certificate and key. The
	// certificate must name the host clients dial (a DNS or IP SAN). On a
	// cluster it is also the route certificate, presented both ways: give
	// it the server and client extended key usages.
	CertFile, KeyFile string
	// CAFile is a PEM bundle of the CA(s) that signed the certificates of
	// the cluster members (routes verify each other with it), and of the
	// clients that present a certificate.
	CAFile string
	// VerifyClients makes a client certificate signed by CAFile mandatory.
	// Without it a client certificate is verified when one is presented.
	VerifyClients bool
}

// enabled reports whether any TLS setting is present.
func (c TLSConfig) enabled() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" || c.VerifyClients
}

// validate checks that the files exist and load.
func (c TLSConfig) validate(clustered bool) error {
	if !c.enabled() {
		return nil
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return fmt.Errorf("%w: %w: Config.TLS needs both CertFile and KeyFile (--tls-cert, --tls-key)", ErrInvalidConfig, ErrInvalidTLS)
	}
	if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
		return fmt.Errorf("%w: %w: certificate %s with key %s: %v", ErrInvalidConfig, ErrInvalidTLS, c.CertFile, c.KeyFile, err)
	}
	if c.CAFile != "" {
		if _, err := auth.LoadCAPool(c.CAFile); err != nil {
			return fmt.Errorf("%w: %w: %w", ErrInvalidConfig, ErrInvalidTLS, err)
		}
	}
	if c.VerifyClients && c.CAFile == "" {
		return fmt.Errorf("%w: %w: Config.TLS.VerifyClients needs CAFile (--tls-ca), the CA of the client certificates", ErrInvalidConfig, ErrInvalidTLS)
	}
	if clustered && c.CAFile == "" {
		return fmt.Errorf("%w: %w: TLS on a cluster needs CAFile (--tls-ca): members verify each other's certificate with it", ErrInvalidConfig, ErrInvalidTLS)
	}
	return nil
}

// tlsTimeout is the TLS handshake timeout of clients and routes, in seconds.
const tlsTimeout = 5

// clientTLS is the server TLS configuration of the client port.
func (c TLSConfig) clientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.CAFile != "" {
		pool, err := auth.LoadCAPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if c.VerifyClients {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// routeTLS is the mutual TLS of cluster routes: each member presents its
// certificate and verifies the other's against the CA, both as a server
// and as a client.
func (c TLSConfig) routeTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	pool, err := auth.LoadCAPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		RootCAs:      pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// applySecurity adds the authentication and TLS settings of cfg to opts.
func applySecurity(cfg Config, opts *server.Options) error {
	if cfg.Auth != nil {
		oc, ac, err := cfg.Auth.Decode()
		if err != nil {
			return fmt.Errorf("%w: Config.Auth: %w", ErrInvalidConfig, err)
		}
		sc, err := cfg.Auth.System()
		if err != nil {
			return fmt.Errorf("%w: Config.Auth: %w", ErrInvalidConfig, err)
		}
		res, err := server.NewDirAccResolver(ResolverDir(cfg.StoreDir), 0, resolverSyncInterval, server.NoDelete)
		if err != nil {
			return fmt.Errorf("%w: Config.Auth: the account resolver in %s: %v", ErrInvalidConfig, ResolverDir(cfg.StoreDir), err)
		}
		// Preloading keeps a newer JWT a member already holds (one that
		// was pushed to it), and replaces an older one.
		if err := res.Store(ac.Subject, cfg.Auth.AccountJWT); err != nil {
			return fmt.Errorf("%w: Config.Auth: storing the account JWT: %v", ErrInvalidConfig, err)
		}
		if err := res.Store(sc.Subject, cfg.Auth.SystemJWT); err != nil {
			return fmt.Errorf("%w: Config.Auth: storing the system account JWT: %v", ErrInvalidConfig, err)
		}
		opts.TrustedOperators = []*jwt.OperatorClaims{oc}
		opts.AccountResolver = res
		opts.SystemAccount = sc.Subject
	}
	if cfg.TLS.enabled() {
		tc, err := cfg.TLS.clientTLS()
		if err != nil {
			return fmt.Errorf("%w: %w: %v", ErrInvalidConfig, ErrInvalidTLS, err)
		}
		opts.TLSConfig = tc
		opts.TLS = true
		opts.TLSVerify = cfg.TLS.VerifyClients
		opts.TLSTimeout = tlsTimeout
		if cfg.Cluster.enabled() {
			rc, err := cfg.TLS.routeTLS()
			if err != nil {
				return fmt.Errorf("%w: %w: %v", ErrInvalidConfig, ErrInvalidTLS, err)
			}
			opts.Cluster.TLSConfig = rc
			opts.Cluster.TLSTimeout = tlsTimeout
		}
	}
	return nil
}

// ResolverDir is where an authenticated broker keeps the account JWTs
// (nats-server's full resolver): the pcm and system accounts, and every
// principal's account pushed to it.
func ResolverDir(storeDir string) string { return filepath.Join(storeDir, "accounts") }

// resolverSyncInterval is how often the members of a cluster compare their
// resolvers and copy what one of them misses (a member that was down during
// an enrollment).
const resolverSyncInterval = time.Minute

// AuthAccount is the public key of the account whose JetStream holds pcm's
// data when Config.Auth is set; empty on an open broker (nats-server's
// global account).
func (c Config) AuthAccount() string {
	if c.Auth == nil {
		return ""
	}
	_, ac, err := c.Auth.Decode()
	if err != nil {
		return ""
	}
	return ac.Subject
}

// IsLoopback tells whether a host:port listens on loopback only.
func IsLoopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openDataIn tells whether storeDir holds JetStream data of the open
// broker's global account, which an authenticated broker does not see (its
// data lives under the pcm account).
func openDataIn(storeDir string) bool {
	_, err := os.Stat(filepath.Join(storeDir, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT, "streams"))
	return err == nil
}

// registerAccount loads the pcm account into the server at start, so that
// its JetStream streams are recovered before the first client connects
// (the resolver holds the account, so the lookup needs no network).
func (b *Broker) registerAccount() error {
	pub := b.cfg.AuthAccount()
	if pub == "" {
		return nil
	}
	if _, err := b.srv.LookupAccount(pub); err != nil {
		return fmt.Errorf("%w: loading the pcm account %s: %v", ErrStart, pub, err)
	}
	return nil
}
