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

// permissionTables renders what each principal's account imports and each
// role's user permissions as markdown tables, with placeholders for the
// client id, a group of the client and the user name.
func permissionTables(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	repl := strings.NewReplacer("CLIENT", "<client>", "GROUP", "<group>", "who", "<name>")
	for _, k := range []struct {
		p     auth.Principal
		title string
		roles []string
	}{
		{auth.Principal{Kind: auth.KindClient, Name: "CLIENT", Groups: []string{"GROUP"}}, "client `<client>` (pcm enroll CLIENT: its agent and desktop users)",
			[]string{"agent `<client>` (pcm agent)", "desktop `<client>` (pcm desktop)"}},
		{auth.Principal{Kind: auth.KindPublisher, Name: "who"}, "publisher `<name>` (pcm creds publisher NAME)", []string{"publisher `<name>`"}},
		{auth.Principal{Kind: auth.KindAuditor, Name: "who"}, "auditor `<name>` (pcm creds auditor NAME)", []string{"auditor `<name>`"}},
		{auth.Principal{Kind: auth.KindSite, Name: "who", Clients: []string{"CLIENT"}}, "branch site `<name>` at the hub (pcm creds site NAME: its broker's leaf connection, docs/sites.md)",
			[]string{"site `<name>` (leaf connections only)"}},
	} {
		imports, err := auth.Imports(k.p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "#### account of %s\n\n| import | subject | needed to |\n|---|---|---|\n", k.title)
		for _, im := range imports {
			kind := "service"
			if im.Stream {
				kind = "stream"
			}
			subj := "`" + repl.Replace(im.Subject) + "`"
			if im.Local != "" {
				subj = "`" + repl.Replace(im.Local) + "` (from `" + repl.Replace(im.Subject) + "`)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", kind, subj, im.Why)
		}
		b.WriteString("\n")
		for i, r := range k.p.Kind.Roles() {
			u := auth.User{Role: r, Name: k.p.Name}
			gs, err := auth.Grants(u)
			if err != nil {
				t.Fatal(err)
			}
			perms, err := auth.Permissions(u)
			if err != nil {
				t.Fatal(err)
			}
			if len(perms.Pub.Allow) == 1 && perms.Pub.Allow[0] == ">" {
				fmt.Fprintf(&b, "Its users, %s: its JWT allows its whole account (`>`, see \"The agent's JWT\"); what it uses:\n\n| | subject | needed to |\n|---|---|---|\n", k.roles[i])
			} else {
				fmt.Fprintf(&b, "Its users, %s:\n\n| | subject | needed to |\n|---|---|---|\n", k.roles[i])
			}
			for _, g := range gs {
				dir := "pub"
				if g.Sub {
					dir = "sub"
				}
				fmt.Fprintf(&b, "| %s | `%s` | %s |\n", dir, repl.Replace(g.Subject), g.Why)
			}
			b.WriteString("\n")
		}
	}
	gs, err := auth.Grants(auth.User{Role: auth.RoleAdmin, Name: "who"})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString("#### admin `<name>` (a user of the pcm account: pcm creds admin NAME; pcm broker --auth writes the first)\n\n| | subject | needed to |\n|---|---|---|\n")
	for _, g := range gs {
		dir := "pub"
		if g.Sub {
			dir = "sub"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s |\n", dir, g.Subject, g.Why)
	}
	b.WriteString("\n#### exports of the pcm account\n\n| export | subject | answers |\n|---|---|---|\n")
	for _, e := range auth.Exports() {
		kind, answers := "service", string(e.Response)
		if answers == "" {
			answers = "Singleton"
		}
		if e.Stream {
			kind, answers = "stream", ""
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s |\n", kind, e.Subject, answers)
	}
	b.WriteString("\n")
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
