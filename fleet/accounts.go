package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/pcm-project/pcm/broker/auth"
	"github.com/pcm-project/pcm/internal/backoff"
)

// Accounts makes, pushes and revokes the principals' accounts on the
// brokers of an authenticated deployment, and issues their users. It needs
// a connection of an admin of the pcm account (the pcm account imports the
// system account's claims update and lookup for its admins) and the
// authority's issuer.
type Accounts struct {
	nc  *nats.Conn
	iss *auth.Issuer
}

// NewAccounts returns Accounts using an admin's connection nc and the
// issuer iss.
func NewAccounts(nc *nats.Conn, iss *auth.Issuer) *Accounts { return &Accounts{nc: nc, iss: iss} }

// Issuer is the issuer the accounts are made with.
func (a *Accounts) Issuer() *auth.Issuer { return a.iss }

// lookupLinger is how long Lookup waits for a member holding the account
// after another answered that it holds none (a member that missed a push).
const lookupLinger = 300 * time.Millisecond

// Lookup returns the account JWT of p the brokers hold, decoded, or nil
// when they hold none. Each member of a cluster answers; the newest JWT
// wins.
func (a *Accounts) Lookup(ctx context.Context, p auth.Principal) (*jwt.AccountClaims, error) {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	pub, err := a.iss.AccountOf(p)
	if err != nil {
		return nil, err
	}
	inbox := a.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 16)
	sub, err := a.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("%w: looking up the account of %s: %w", ErrResolver, p, err)
	}
	defer sub.Unsubscribe()
	if err := a.nc.PublishRequest(auth.ClaimsLookupPrefix+pub, inbox, nil); err != nil {
		return nil, fmt.Errorf("%w: looking up the account of %s: %w", ErrResolver, p, err)
	}
	var best *jwt.AccountClaims
	var linger <-chan time.Time
	answered := false
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 || m.Header.Get("Status") != "" {
				if m.Header.Get("Status") == "503" {
					return nil, fmt.Errorf("%w: nobody answers account lookups: is this an admin of the pcm account on a broker with the full resolver (pcm broker --auth)?", ErrResolver)
				}
				if !answered {
					answered = true
					if a.nc.ConnectedClusterName() == "" {
						return best, nil // a single broker: it holds none
					}
					linger = time.After(lookupLinger)
				}
				continue
			}
			ac, err := jwt.DecodeAccountClaims(string(m.Data))
			if err != nil || ac.Subject != pub {
				continue
			}
			if best == nil || ac.IssuedAt > best.IssuedAt {
				best = ac
			}
			return best, nil
		case <-linger:
			return best, nil
		case <-ctx.Done():
			if answered {
				return best, nil
			}
			return nil, fmt.Errorf("%w: no broker answered the lookup of the account of %s: %w", ErrResolver, p, ctx.Err())
		}
	}
}

// claimUpdateAnswer is a resolver's answer to a claims update.
type claimUpdateAnswer struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// push stores an account JWT in the resolver of every broker (the members
// of a cluster each store it; the first answer is returned).
func (a *Accounts) push(ctx context.Context, what, token string) error {
	ctx, cancel := backoff.WithDefaultTimeout(ctx, defaultTimeout)
	defer cancel()
	m, err := a.nc.RequestWithContext(ctx, auth.ClaimsUpdateSubject, []byte(token))
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: nobody stores account JWTs: is this an admin of the pcm account on a broker with the full resolver (pcm broker --auth)?", ErrResolver)
	}
	if err != nil {
		return fmt.Errorf("%w: storing the account of %s: %w", ErrResolver, what, err)
	}
	var ans claimUpdateAnswer
	if err := json.Unmarshal(m.Data, &ans); err != nil {
		return fmt.Errorf("%w: storing the account of %s: unreadable answer %q", ErrResolver, what, m.Data)
	}
	if ans.Error != nil {
		return fmt.Errorf("%w: the broker refused the account of %s: %s", ErrResolver, what, ans.Error.Description)
	}
	return nil
}

// Ensure makes p's account what this version of pcm gives its kind (its
// imports and limits; for a client, the job subjects of p.Groups, the
// groups it is enrolled in), keeps the revocations the brokers hold for
// it, and pushes it to every broker.
func (a *Accounts) Ensure(ctx context.Context, p auth.Principal) error {
	cur, err := a.Lookup(ctx, p)
	if err != nil {
		return err
	}
	var rev jwt.RevocationList
	if cur != nil {
		rev = cur.Revocations
	}
	tok, err := a.iss.PrincipalAccount(p, rev)
	if err != nil {
		return err
	}
	return a.push(ctx, p.String(), tok)
}

// Issue mints credentials for u. An admin is a user of the pcm account. A
// publisher's or an auditor's account is made (or brought up to date)
// first; a site's is made when missing, and an existing one is kept as it
// is (its clients and its hub domain, which EnsureSiteAccount signs: a
// site's forwarding never loses its imports while its credentials are
// issued). A client's account must exist: it is made when the client is
// enrolled. After a revocation of the account, Issue waits until the
// clock has moved past it (at most a second), so the new credentials are
// not revoked with the old.
func (a *Accounts) Issue(ctx context.Context, u auth.User) ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	if u.Role == auth.RoleAdmin {
		return a.iss.Issue(u)
	}
	p := u.Principal()
	var cur *jwt.AccountClaims
	var err error
	if p.Kind == auth.KindClient {
		if cur, err = a.Lookup(ctx, p); err != nil {
			return nil, err
		}
		if cur == nil {
			return nil, fmt.Errorf("%w: client %s has no account on the brokers: enroll it first (pcm enroll %s --group ... --issuer ...)", ErrNotEnrolled, p.Name, p.Name)
		}
	} else {
		if p.Kind == auth.KindSite {
			if cur, err = a.Lookup(ctx, p); err != nil {
				return nil, err
			}
		}
		if cur == nil {
			if err := a.Ensure(ctx, p); err != nil {
				return nil, err
			}
			if cur, err = a.Lookup(ctx, p); err != nil {
				return nil, err
			}
		}
	}
	if cur != nil {
		if err := waitPast(ctx, cur.Revocations[jwt.All]); err != nil {
			return nil, err
		}
	}
	return a.iss.Issue(u)
}

// waitPast waits until the clock's second is after unix (a JWT's issue
// time has a second's resolution, and a revocation of every user revokes
// those issued up to its second).
func waitPast(ctx context.Context, unix int64) error {
	for time.Now().Unix() <= unix {
		wait := time.Until(time.Unix(unix+1, 0))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Revoke revokes every credential of p issued until now: the brokers
// refuse them from the next connection on and close the open ones, within
// seconds on every member. The account stays (and a client keeps its
// consumer and its pending offers): credentials issued afterwards, by a new
// enrollment, work. It returns the revocation's time.
func (a *Accounts) Revoke(ctx context.Context, p auth.Principal) (time.Time, error) {
	cur, err := a.Lookup(ctx, p)
	if err != nil {
		return time.Time{}, err
	}
	if cur == nil {
		return time.Time{}, fmt.Errorf("%w: %s has no account on the brokers: nothing to revoke", ErrNotEnrolled, p)
	}
	now := time.Now()
	if cur.Revocations == nil {
		cur.Revocations = jwt.RevocationList{}
	}
	cur.Revocations.Revoke(jwt.All, now)
	tok, err := a.iss.SignAccount(cur)
	if err != nil {
		return time.Time{}, err
	}
	if err := a.push(ctx, p.String(), tok); err != nil {
		return time.Time{}, err
	}
	return time.Unix(now.Unix(), 0), nil
}
