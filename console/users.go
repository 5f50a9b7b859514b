package console

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Role is what a console user may do.
type Role string

const (
	// RoleViewer reads every page.
	RoleViewer Role = "viewer"
	// RoleOperator also cancels, halts and resumes jobs, when the
	// console's own credentials allow it.
	RoleOperator Role = "operator"
)

// User is a console user.
type User struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	// secret is the user's token, also its basic-auth password.
	secret string
}

// Users are the console's users. A nil *Users means no authentication:
// every request is an operator's (for loopback only, see CheckListen).
type Users struct {
	list []User
}

// cookieName carries a token a user logged in with (/login?token=...).
const cookieName = "pcm_console"

// ParseUsers reads a users file: one user a line, "ROLE NAME TOKEN" (role
// viewer or operator; the token is also the password of basic auth), blank
// lines and lines starting with # ignored.
func ParseUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	defer f.Close()
	u := &Users{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("%w: %s line %d: want ROLE NAME TOKEN", ErrUsersFile, path, n)
		}
		role := Role(fields[0])
		if role != RoleViewer && role != RoleOperator {
			return nil, fmt.Errorf("%w: %s line %d: role %q is neither viewer nor operator", ErrUsersFile, path, n, fields[0])
		}
		if len(fields[2]) < 16 {
			return nil, fmt.Errorf("%w: %s line %d: the token of %s is shorter than 16 characters", ErrUsersFile, path, n, fields[1])
		}
		u.list = append(u.list, User{Name: fields[1], Role: role, secret: fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsersFile, err)
	}
	if len(u.list) == 0 {
		return nil, fmt.Errorf("%w: %s names no user", ErrUsersFile, path)
	}
	return u, nil
}

// NewUsers returns users given in code (tests, embedding).
func NewUsers(users ...User) *Users { return &Users{list: users} }

// NewUser is a user with its token.
func NewUser(name string, role Role, token string) User {
	return User{Name: name, Role: role, secret: token}
}

// byToken finds the user whose token is token.
func (u *Users) byToken(token string) (User, bool) {
	for _, x := range u.list {
		if token != "" && subtle.ConstantTimeCompare([]byte(x.secret), []byte(token)) == 1 {
			return x, true
		}
	}
	return User{}, false
}

// authenticate finds the user of r: a bearer token, basic auth (name and
// token) or the login cookie.
func (u *Users) authenticate(r *http.Request) (User, bool) {
	if u == nil {
		return User{Name: "local", Role: RoleOperator}, true
	}
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return u.byToken(strings.TrimPrefix(h, "Bearer "))
	}
	if name, pass, ok := r.BasicAuth(); ok {
		x, found := u.byToken(pass)
		if found && subtle.ConstantTimeCompare([]byte(x.Name), []byte(name)) == 1 {
			return x, true
		}
		return User{}, false
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return u.byToken(c.Value)
	}
	return User{}, false
}

// CheckListen refuses to listen beyond loopback without users.
func CheckListen(addr string, users *Users, loopback bool) error {
	if users == nil && !loopback {
		return fmt.Errorf("%w: %s is not a loopback address; give --users FILE (ROLE NAME TOKEN lines), or listen on 127.0.0.1", ErrUnsafeListen, addr)
	}
	return nil
}
