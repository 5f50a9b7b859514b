package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/fleet"
)

// issuerUsage documents --issuer.
const issuerUsage = "the authority's issuer file (issuer.json in the auth dir of pcm broker --auth): it makes accounts and credentials; keep it with the operators"

// adminTTL bounds the admin credentials a command mints for itself from
// the issuer file when --creds is not given.
const adminTTL = 5 * time.Minute

// registerIssuer adds --issuer to cmd.
func registerIssuer(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "issuer", "", issuerUsage)
}

// adminSession is an admin connection for enrollment and revocation, with
// the accounts of the issuer (nil without --issuer: an open broker).
type adminSession struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	accts *fleet.Accounts
}

// Close closes the connection.
func (s *adminSession) Close() { s.nc.Close() }

// connectAdmin connects as an admin for a short-lived command: with --creds
// when given, else, with an issuer file, as a short-lived admin minted from
// it.
func (g *globals) connectAdmin(name, issuerPath string) (*adminSession, error) {
	return g.adminSession(name, issuerPath, false)
}

// adminSession connects as an admin; a long-lived one (a service) mints
// credentials that do not expire and reconnects for ever.
func (g *globals) adminSession(name, issuerPath string, longLived bool) (*adminSession, error) {
	var iss *auth.Issuer
	if issuerPath != "" {
		var err error
		if iss, err = auth.LoadIssuer(issuerPath); err != nil {
			return nil, err
		}
	}
	return g.adminSessionAt(g.url, name, iss, longLived)
}

// adminSessionAt is adminSession to the broker at url, with the issuer
// iss already loaded (nil: none).
func (g *globals) adminSessionAt(url, name string, iss *auth.Issuer, longLived bool) (*adminSession, error) {
	var extra []nats.Option
	ttl := adminTTL
	if longLived {
		ttl = 0
		extra = append(extra, nats.MaxReconnects(-1))
	}
	if g.sec.creds == "" && iss != nil {
		o, err := iss.Option(auth.User{Role: auth.RoleAdmin, Name: "pcm-cli", TTL: ttl})
		if err != nil {
			return nil, err
		}
		extra = append(extra, o)
	}
	nc, js, err := g.connectAt(url, name, extra...)
	if err != nil {
		return nil, err
	}
	s := &adminSession{nc: nc, js: js}
	if iss != nil {
		s.accts = fleet.NewAccounts(nc, iss)
	}
	return s, nil
}

// requireIssuer is the error of a command that needs --issuer.
func requireIssuer(what string) error {
	return fmt.Errorf("--issuer FILE (or PCM_ISSUER) is required to %s: it is %s in the auth dir of pcm broker --auth", what, auth.IssuerFile)
}
