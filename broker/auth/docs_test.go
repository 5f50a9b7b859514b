package auth_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pcm-project/pcm/broker/auth"
)

var update = flag.Bool("update", false, "rewrite the permission tables in docs/security.md")

const (
	tablesStart = "<!-- permissions:start (generated: go test ./broker/auth -run TestSecurityDocTables -update) -->\n"
	tablesEnd   = "<!-- permissions:end -->"
)

// permissionTables renders every role's grants as markdown tables, with
// placeholders for the client id, a group of the client and the user name.
func permissionTables(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, u := range []struct {
		user  auth.User
		title string
	}{
		{auth.User{Role: auth.RoleAgent, Name: "CLIENT"}, "agent `<client>` (pcm agent; credentials from pcm enroll)"},
		{auth.User{Role: auth.RoleDesktop, Name: "CLIENT", Groups: []string{"GROUP"}}, "desktop `<client>` (pcm desktop; credentials from pcm enroll, with the client's groups)"},
		{auth.User{Role: auth.RolePublisher, Name: "who"}, "publisher `<name>` (pcm creds publisher NAME)"},
		{auth.User{Role: auth.RoleAuditor, Name: "who"}, "auditor `<name>` (pcm creds auditor NAME)"},
		{auth.User{Role: auth.RoleAdmin, Name: "who"}, "admin `<name>` (pcm creds admin NAME; pcm broker --auth writes the first)"},
	} {
		gs, err := auth.Grants(u.user)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "#### %s\n\n| | subject | needed to |\n|---|---|---|\n", u.title)
		for _, g := range gs {
			dir := "pub"
			if g.Sub {
				dir = "sub"
			}
			subj := strings.NewReplacer("CLIENT", "<client>", "GROUP", "<group>", "who", "<name>").Replace(g.Subject)
			fmt.Fprintf(&b, "| %s | `%s` | %s |\n", dir, subj, g.Why)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestSecurityDocTables fails when docs/security.md's permission tables do
// not match the permissions the code grants.
func TestSecurityDocTables(t *testing.T) {
	want := permissionTables(t)
	const path = "../../docs/security.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, tablesStart), strings.Index(s, tablesEnd)
	if i < 0 || j < i {
		t.Fatalf("docs/security.md lacks the markers %q ... %q", tablesStart, tablesEnd)
	}
	if s[i+len(tablesStart):j] == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(s[:i+len(tablesStart)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("docs/security.md's permission tables are out of date: run go test ./broker/auth -run TestSecurityDocTables -update")
}
