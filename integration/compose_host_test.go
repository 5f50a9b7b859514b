package integration_test

// Docker cannot run where these tests run. composeHost stands in for it: it
// lays out what each service's container sees, so that nats-server can
// parse the configuration files a Compose file mounts, and it runs the
// services as processes of this machine, in the order docker compose up
// starts them.

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/testenv"
)

// composeVolumes holds the named volumes of a Compose file's services, one
// directory each. Several loads of one file may share it (a check's
// mutations of a file whose one-shot services filled the volumes).
type composeVolumes struct{ dir string }

// newComposeVolumes makes an empty set of volumes, removed at cleanup.
func newComposeVolumes(t testing.TB) *composeVolumes { return &composeVolumes{dir: t.TempDir()} }

// path is the directory of volume name, made when absent.
func (v *composeVolumes) path(t testing.TB, name string) string {
	p := filepath.Join(v.dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// composeHost runs a Compose file's services on this machine as Docker
// would run their containers:
//   - each service sees its mounts under a root directory of its own: a
//     read-write mount is a link to its volume (or host path), a read-only
//     one a copy made when the service starts, in whose .conf files the
//     container paths are rewritten (a member's auth.conf names its own
//     store);
//   - the container paths in its command line, environment and working
//     directory are rewritten to its root;
//   - once it runs services (up), each container port of a nats service is
//     a free loopback port, and the addresses in command lines, environment
//     and configuration files (nats://n1:4222, 0.0.0.0:4222) are rewritten
//     to it;
//   - the pcm image's entrypoint is the pcm binary the tests built (also
//     first in PATH, for scripts), the nats image's the nats-server binary
//     of go.mod's version; a service whose entrypoint is /bin/sh SCRIPT runs
//     the script with this machine's sh. The user a service runs as is
//     ignored.
type composeHost struct {
	t       testing.TB
	c       *composeFile
	volumes *composeVolumes
	dir     string
	// ports maps "service:port" to a loopback port while services run; nil
	// while the host only lays out files for parsing.
	ports map[string]int
	nats  *stockCluster
}

// newComposeHost is a host for c whose services share volumes (new ones
// when nil).
func newComposeHost(t testing.TB, c *composeFile, volumes *composeVolumes) *composeHost {
	if volumes == nil {
		volumes = newComposeVolumes(t)
	}
	return &composeHost{t: t, c: c, volumes: volumes, dir: t.TempDir()}
}

// volume is the directory of the named volume.
func (h *composeHost) volume(name string) string { return h.volumes.path(h.t, name) }

// root is the directory service's container sees as /.
func (h *composeHost) root(service string) string { return filepath.Join(h.dir, service) }

// source is the host path behind mount m: its volume, or the path relative
// to the repository root.
func (h *composeHost) source(m composeMount) string {
	if m.named() {
		return h.volume(m.Source)
	}
	p, err := filepath.Abs(filepath.Join(composeRoot, m.Source))
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// layout makes service's root afresh, as Docker mounts its volumes when
// the container starts.
func (h *composeHost) layout(service string) {
	t := h.t
	t.Helper()
	root := h.root(service)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	mounts := slices.SortedFunc(slices.Values(h.c.Services[service].Volumes), func(a, b composeMount) int {
		return cmp.Compare(len(a.Target), len(b.Target))
	})
	for _, m := range mounts {
		dst := filepath.Join(root, m.Target)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case m.Source == "":
			err = os.MkdirAll(dst, 0o755) // anonymous volume
		case m.ReadOnly:
			err = h.copyMount(service, h.source(m), dst)
		default:
			err = os.Symlink(h.source(m), dst)
		}
		if err != nil {
			t.Fatalf("service %s: mounting %s at %s: %v", service, m.Source, m.Target, err)
		}
	}
}

// copyMount copies the file or tree src to dst, rewriting service's
// container paths and addresses in its .conf files.
func (h *composeHost) copyMount(service, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".conf") {
			b = []byte(h.rewrite(service, string(b)))
		}
		return os.WriteFile(to, b, info.Mode().Perm())
	})
}

var (
	// composePathToken is an absolute path in a command line argument or a
	// configuration file: at the start, or after white space, a quote or =.
	composePathToken = regexp.MustCompile(`(^|[\s"'=])(/[^\s"',;}\]]*)`)
	// composeServiceAddr is a service's address in a URL: //n1:4222.
	composeServiceAddr = regexp.MustCompile(`//([A-Za-z0-9_.-]+):(\d+)\b`)
	// composeAnyAddr is a listen address on every interface: 0.0.0.0:4222.
	composeAnyAddr = regexp.MustCompile(`\b0\.0\.0\.0:(\d+)\b`)
)

// rewrite rewrites, in s, service's container paths to its root and, while
// services run, the services' addresses to their loopback ports.
func (h *composeHost) rewrite(service, s string) string {
	s = replaceSubmatches(composePathToken, s, 2, func(p string) string {
		for _, m := range h.c.Services[service].Volumes {
			if p == m.Target || strings.HasPrefix(p, strings.TrimSuffix(m.Target, "/")+"/") {
				return filepath.Join(h.root(service), p)
			}
		}
		return p
	})
	if h.ports == nil {
		return s
	}
	s = composeServiceAddr.ReplaceAllStringFunc(s, func(a string) string {
		if port, ok := h.ports[strings.TrimPrefix(a, "//")]; ok {
			return fmt.Sprintf("//127.0.0.1:%d", port)
		}
		return a
	})
	return composeAnyAddr.ReplaceAllStringFunc(s, func(a string) string {
		if port, ok := h.ports[service+":"+strings.TrimPrefix(a, "0.0.0.0:")]; ok {
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
		return a
	})
}

// replaceSubmatches replaces, in every match of re in s, submatch i by
// what f returns for it.
func replaceSubmatches(re *regexp.Regexp, s string, i int, f func(string) string) string {
	var b strings.Builder
	last := 0
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(s[last:m[2*i]])
		b.WriteString(f(s[m[2*i]:m[2*i+1]]))
		last = m[2*i+1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// containerPath is the container path of host path p under service's root
// (p itself when it is not under it).
func (h *composeHost) containerPath(service, p string) string {
	if rel, ok := strings.CutPrefix(p, h.root(service)+"/"); ok {
		return "/" + rel
	}
	return p
}

// argv is service's command line, with command instead of the service's own
// when not nil, as it runs here: its program and its rewritten arguments.
// The service's root must be laid out.
func (h *composeHost) argv(service string, command []string) []string {
	s := h.c.Services[service]
	if command == nil {
		command = s.Command
	}
	var argv []string
	switch {
	case len(s.Entrypoint) == 2 && s.Entrypoint[0] == "/bin/sh":
		argv = append([]string{"sh", s.Entrypoint[1]}, command...)
	case s.isPCM() && len(s.Entrypoint) == 0:
		argv = append([]string{pcmBinary}, command...)
	case s.isNATS() && (len(s.Entrypoint) == 0 || slices.Equal(s.Entrypoint, []string{"nats-server"})):
		if len(command) > 0 && command[0] == "nats-server" {
			command = command[1:]
		}
		argv = append([]string{natsServerBinary(h.t)}, command...)
	default:
		h.t.Fatalf("service %s: cannot run entrypoint %q with image %q on this machine", service, s.Entrypoint, s.Image)
	}
	for i := 1; i < len(argv); i++ {
		argv[i] = h.rewrite(service, argv[i])
	}
	return argv
}

// cmd is service's process, with command instead of the service's own when
// not nil, and its environment and working directory: a new container (its
// root laid out afresh).
func (h *composeHost) cmd(ctx context.Context, service string, command []string) *exec.Cmd {
	h.layout(service)
	s := h.c.Services[service]
	argv := h.argv(service, command)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// The environment of this machine without pcm's variables (a test in
	// secure mode sets some), the pcm binary first in PATH, and the
	// service's own.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PCM_") || strings.HasPrefix(kv, "PATH=")
	})
	env = append(env, "PATH="+filepath.Dir(pcmBinary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		env = append(env, k+"="+h.rewrite(service, s.Environment[k]))
	}
	cmd.Env = env
	// Docker makes the working directory when the image lacks it.
	cmd.Dir = filepath.Join(h.root(service), s.WorkingDir)
	if dir := h.rewrite(service, s.WorkingDir); s.WorkingDir != "" && dir != s.WorkingDir {
		cmd.Dir = dir
	}
	if err := os.MkdirAll(cmd.Dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	return cmd
}

// run runs service with command instead of its own (nil: its own) to
// completion, as docker compose run --rm does, and returns its stdout,
// stderr and exit code.
func (h *composeHost) run(service string, command ...string) (string, string, int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runCmd(h.t, h.cmd(ctx, service, command))
}

// mustRun is run that fails the test unless the command succeeds.
func (h *composeHost) mustRun(service string, command ...string) string {
	h.t.Helper()
	out, errOut, code := h.run(service, command...)
	if code != 0 {
		h.t.Fatalf("docker compose -f %s run %s %s: exit %d\n%s%s", h.c.name, service, strings.Join(command, " "), code, out, errOut)
	}
	return out
}

// oneShot reports whether another service waits for service to complete.
func (c *composeFile) oneShot(service string) bool {
	for _, s := range c.Services {
		if s.DependsOn[service] == "service_completed_successfully" {
			return true
		}
	}
	return false
}

// startOrder lists the services docker compose up starts (not those of a
// profile), each after its dependencies.
func (c *composeFile) startOrder() ([]string, error) {
	var order []string
	state := map[string]int{} // 1: being visited, 2: done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("%w: a cycle through %s", errComposeDependsOn, name)
		case 2:
			return nil
		}
		s, ok := c.Services[name]
		if !ok {
			return fmt.Errorf("%w: no service %s", errComposeDependsOn, name)
		}
		state[name] = 1
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			if err := visit(dep); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, name)
		return nil
	}
	for _, name := range c.serviceNames(func(s *composeService) bool { return len(s.Profiles) == 0 }) {
		if err := visit(name); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// up starts every service docker compose up starts, in its order: a
// one-shot service runs to completion (again while it fails, if its restart
// policy is on-failure); a nats service runs as a nats-server process, and
// a service waiting for it to be healthy waits for its /healthz; the
// others run as processes, killed at cleanup.
func (h *composeHost) up() {
	t := h.t
	t.Helper()
	order, err := h.c.startOrder()
	if err != nil {
		t.Fatal(err)
	}
	var nodes map[string]composeNATSNode
	for _, name := range order {
		s := h.c.Services[name]
		for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
			if s.DependsOn[dep] != "service_healthy" {
				continue
			}
			if _, ok := nodes[dep]; !ok {
				t.Fatalf("service %s waits for %s to be healthy: only a nats service's health can be checked here", name, dep)
			}
			h.nats.waitHealthy(t)
		}
		switch {
		case s.isNATS():
			if nodes == nil {
				nodes = h.network()
			}
			h.startNATS(name, nodes[name])
		case h.c.oneShot(name):
			h.complete(name)
		default:
			startCmd(t, h.dir, name, h.cmd(context.Background(), name, nil))
		}
	}
}

// network parses the nats services' command lines (the services they
// depend on have run) and gives each of their container ports a loopback
// port.
func (h *composeHost) network() map[string]composeNATSNode {
	t := h.t
	t.Helper()
	nodes, err := composeNATSNodes(h.c)
	if err != nil {
		t.Fatal(err)
	}
	h.ports = map[string]int{}
	names := slices.Sorted(maps.Keys(nodes))
	free := testenv.FreePorts(t, 3*len(names))
	for i, name := range names {
		o := nodes[name].opts
		for j, port := range []int{nodes[name].clientPort(), o.Cluster.Port, o.HTTPPort} {
			h.ports[name+":"+strconv.Itoa(port)] = free[3*i+j]
		}
	}
	return nodes
}

// startNATS starts nats service name as a member of h.nats.
func (h *composeHost) startNATS(name string, node composeNATSNode) {
	if h.nats == nil {
		h.nats = &stockCluster{t: h.t, bin: natsServerBinary(h.t)}
		h.t.Cleanup(h.nats.stopAll)
	}
	h.layout(name)
	port := func(p int) int { return h.ports[name+":"+strconv.Itoa(p)] }
	n := &stockNode{name: name, dir: h.root(name), logf: filepath.Join(h.dir, name+".log"), jetstream: true,
		client: port(node.clientPort()), route: port(node.opts.Cluster.Port), http: port(node.opts.HTTPPort),
		args: h.argv(name, nil)[1:]}
	h.nats.nodes = append(h.nats.nodes, n)
	h.nats.start(len(h.nats.nodes) - 1)
}

// complete runs one-shot service name until it succeeds: once, or while it
// fails within two minutes when its restart policy is on-failure.
func (h *composeHost) complete(name string) {
	t := h.t
	t.Helper()
	retry := strings.HasPrefix(h.c.Services[name].Restart, "on-failure")
	testenv.CheckFor(t, 2*time.Minute, 100*time.Millisecond, func() error {
		out, errOut, code := h.run(name)
		if code == 0 {
			return nil
		}
		err := fmt.Errorf("service %s did not complete: exit %d\n%s%s", name, code, out, errOut)
		if !retry {
			t.Fatalf("one-shot service %s failed (and is not restarted on failure): %v", name, err)
		}
		return err
	})
}
