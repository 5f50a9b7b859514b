package integration_test

// Docker cannot run where these tests run, so docker-compose.yml, the
// Dockerfile and .dockerignore are checked statically: the Compose file is
// parsed, the nats-server command lines (and the configuration files they
// name, as composeHost lays them out) are parsed by nats-server's own
// parser, and every pcm command line is parsed by the built pcm binary.
// compose_auth_test.go checks docker-compose.auth.yml with the same checks
// and more, and runs it.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"sigs.k8s.io/yaml"
)

// The repository root, seen from this package's directory.
const composeRoot = ".."

// Problems found by the checks; each check wraps one of these.
var (
	// errComposeInterpolation: a ${VARIABLE} without a default, so the file
	// depends on the caller's environment.
	errComposeInterpolation = errors.New("compose variable without a default")
	// errComposeBuild: a service has no image and no build, or its build
	// context or Dockerfile does not exist, or its image is not pinned.
	errComposeBuild = errors.New("compose service image or build unusable")
	// errComposeNATS: a nats service's command line is wrong.
	errComposeNATS = errors.New("compose nats service misconfigured")
	// errComposeRoutes: the nats routes do not name exactly the nats services.
	errComposeRoutes = errors.New("compose nats routes inconsistent")
	// errComposePorts: two services publish the same host port.
	errComposePorts = errors.New("compose published ports clash")
	// errComposeDependsOn: depends_on names a missing service, a condition the
	// target cannot meet, or forms a cycle.
	errComposeDependsOn = errors.New("compose depends_on inconsistent")
	// errComposeVolumes: a named volume is undeclared, unused or shared.
	errComposeVolumes = errors.New("compose volumes inconsistent")
	// errComposePCMCommand: a pcm service's command does not parse with the
	// real pcm binary's flags.
	errComposePCMCommand = errors.New("compose pcm command does not parse")
	// errComposeProvision: the provision service is missing or wrong.
	errComposeProvision = errors.New("compose provision service wrong")
	// errComposeAgents: the agent services are missing or wrong.
	errComposeAgents = errors.New("compose agent services wrong")
	// errComposeAuth: an authenticated deployment's members or clients lack
	// operator mode, TLS, credentials or the controller.
	errComposeAuth = errors.New("compose authenticated deployment wrong")
	// errComposeSecrets: a service that must not hold a secret (the issuer,
	// an admin's credentials) mounts the volume it is in.
	errComposeSecrets = errors.New("compose secret reachable by the wrong service")
	// errDockerfile: the Dockerfile does not build pcm as expected.
	errDockerfile = errors.New("Dockerfile wrong")
	// errDockerignore: .dockerignore excludes a file the build needs.
	errDockerignore = errors.New(".dockerignore excludes a build input")
)

// composeFile is the part of a Compose file the checks read.
type composeFile struct {
	Services map[string]*composeService `json:"services"`
	Volumes  map[string]json.RawMessage `json:"volumes"`

	// name is the file's name in the repository root.
	name string
	// host lays out what each service's container sees, to parse the nats
	// services' configuration files (compose_host_test.go).
	host *composeHost
}

// composeService is the part of a service the checks read.
type composeService struct {
	Image       string              `json:"image"`
	Build       *composeBuild       `json:"build"`
	Entrypoint  composeStrings      `json:"entrypoint"`
	Command     composeStrings      `json:"command"`
	Ports       []composePort       `json:"ports"`
	Volumes     []composeMount      `json:"volumes"`
	DependsOn   composeDependsOn    `json:"depends_on"`
	Healthcheck *composeHealthcheck `json:"healthcheck"`
	Restart     string              `json:"restart"`
	Environment composeEnv          `json:"environment"`
	WorkingDir  string              `json:"working_dir"`
	Profiles    []string            `json:"profiles"`
}

// composeEnv is a service's environment: a map, or a list of NAME=value.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*e = composeEnv{}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = composeEnv{}
	for k, v := range m {
		(*e)[k] = fmt.Sprint(v)
	}
	return nil
}

// composeHealthcheck is a service's healthcheck.
type composeHealthcheck struct {
	Test    composeStrings `json:"test"`
	Disable bool           `json:"disable"`
}

// composeStrings is a command or entrypoint: a list, or a string split on
// white space (Compose splits it like a shell; no quoting is used here).
type composeStrings []string

func (s *composeStrings) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = strings.Fields(str)
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = make(composeStrings, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &(*s)[i]); err != nil {
			(*s)[i] = string(r) // a number or a boolean, as written
		}
	}
	return nil
}

// composeBuild is a service's build: a context path or an object.
type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

func (c *composeBuild) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.Context); err == nil {
		return nil
	}
	type plain composeBuild
	return json.Unmarshal(b, (*plain)(c))
}

// composePort is one published port, from the short or the long syntax.
type composePort struct {
	HostIP    string
	Published string // a port, a range a-b, or empty (none published)
	Target    string
	Protocol  string
}

func (p *composePort) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var long struct {
			Target    json.Number `json:"target"`
			Published json.Number `json:"published"`
			HostIP    string      `json:"host_ip"`
			Protocol  string      `json:"protocol"`
		}
		if err := json.Unmarshal(b, &long); err != nil {
			return err
		}
		*p = composePort{HostIP: long.HostIP, Published: long.Published.String(), Target: long.Target.String(), Protocol: long.Protocol}
	} else {
		// [[host_ip:]published:]target[/protocol]
		*p = composePort{}
		if i := strings.LastIndex(s, "/"); i >= 0 {
			s, p.Protocol = s[:i], s[i+1:]
		}
		parts := strings.Split(s, ":")
		p.Target = parts[len(parts)-1]
		if len(parts) >= 2 {
			p.Published = parts[len(parts)-2]
		}
		if len(parts) >= 3 {
			p.HostIP = strings.Trim(strings.Join(parts[:len(parts)-2], ":"), "[]")
		}
	}
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	return nil
}

// composeMount is one volume mount, from the short or the long syntax.
type composeMount struct {
	Source, Target string
	ReadOnly       bool
}

func (m *composeMount) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var long struct {
			Source   string `json:"source"`
			Target   string `json:"target"`
			ReadOnly bool   `json:"read_only"`
		}
		err := json.Unmarshal(b, &long)
		*m = composeMount{Source: long.Source, Target: long.Target, ReadOnly: long.ReadOnly}
		return err
	}
	parts := strings.Split(s, ":")
	switch len(parts) {
	case 1:
		*m = composeMount{Target: parts[0]} // anonymous volume
	case 2:
		*m = composeMount{Source: parts[0], Target: parts[1]}
	default:
		*m = composeMount{Source: parts[0], Target: parts[1], ReadOnly: slices.Contains(strings.Split(parts[2], ","), "ro")}
	}
	return nil
}

// named reports whether the mount is a named volume (not a bind mount and
// not anonymous).
func (m composeMount) named() bool {
	return m.Source != "" && !strings.ContainsAny(m.Source[:1], "./~$")
}

// composeDependsOn maps a dependency to its condition: a list of names
// (service_started) or a map of name to {condition}.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*d = composeDependsOn{}
		for _, name := range list {
			(*d)[name] = "service_started"
		}
		return nil
	}
	var long map[string]struct {
		Condition string `json:"condition"`
	}
	if err := json.Unmarshal(b, &long); err != nil {
		return err
	}
	*d = composeDependsOn{}
	for name, dep := range long {
		(*d)[name] = cmp.Or(dep.Condition, "service_started")
	}
	return nil
}

// composeVariable matches ${NAME}, ${NAME:-default} and ${NAME-default}.
var composeVariable = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolateCompose replaces every variable by its default, as Compose does
// with an empty environment, and refuses variables without one.
func interpolateCompose(raw []byte) ([]byte, error) {
	var errs []error
	out := composeVariable.ReplaceAllFunc(raw, func(m []byte) []byte {
		sub := composeVariable.FindSubmatch(m)
		if !bytes.Contains(m, []byte("-")) {
			errs = append(errs, fmt.Errorf("%w: ${%s}: give it a default, ${%s:-value}, so the file works without an environment", errComposeInterpolation, sub[1], sub[1]))
		}
		return sub[2]
	})
	return out, errors.Join(errs...)
}

// loadCompose parses docker-compose.yml from the repository root.
func loadCompose(t testing.TB) *composeFile {
	t.Helper()
	return loadComposeFile(t, "docker-compose.yml", nil)
}

// loadComposeFile parses the Compose file name from the repository root;
// its services see their named volumes in volumes (new ones when nil: see
// composeHost).
func loadComposeFile(t testing.TB, name string, volumes *composeVolumes) *composeFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(composeRoot, name))
	if err != nil {
		t.Fatal(err)
	}
	raw, err = interpolateCompose(raw)
	if err != nil {
		t.Fatal(err)
	}
	c := composeFile{name: name}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s does not parse: %v", name, err)
	}
	if len(c.Services) == 0 {
		t.Fatalf("%s has no services", name)
	}
	c.host = newComposeHost(t, &c, volumes)
	return &c
}

// serviceNames returns the names of the services matching keep, sorted.
func (c *composeFile) serviceNames(keep func(*composeService) bool) []string {
	var names []string
	for name, s := range c.Services {
		if keep(s) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// isNATS reports whether the service runs the official nats image.
func (s *composeService) isNATS() bool {
	repo, _, _ := strings.Cut(s.Image, ":")
	return s.Build == nil && (repo == "nats" || repo == "docker.io/library/nats" || repo == "library/nats")
}

// isPCM reports whether the service runs the pcm image built from the
// Dockerfile.
func (s *composeService) isPCM() bool { return s.Build != nil }

// pcmPath returns the subcommand words that start a pcm service's command.
func (s *composeService) pcmPath() string {
	var words []string
	for _, a := range s.Command {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// composeFlag returns the value of --name in args (as --name v or --name=v).
func composeFlag(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// composeNATSNode is a nats service with its parsed command line.
type composeNATSNode struct {
	name string
	opts *server.Options
}

// clientPort is the port the node serves clients on.
func (n composeNATSNode) clientPort() int {
	if n.opts.Port == 0 {
		return server.DEFAULT_PORT
	}
	return n.opts.Port
}

// composeNATSNodes parses the command line of every nats service with nats-server's
// own flag parser, as the nats-server binary in the container would.
func composeNATSNodes(c *composeFile) (map[string]composeNATSNode, error) {
	saved := server.FlagSnapshot // ConfigureOptions sets this global
	defer func() { server.FlagSnapshot = saved }()
	nodes := map[string]composeNATSNode{}
	var errs []error
	for _, name := range c.serviceNames((*composeService).isNATS) {
		s := c.Services[name]
		args := slices.Clone([]string(s.Command))
		switch {
		case slices.Equal(s.Entrypoint, []string{"nats-server"}):
		case len(s.Entrypoint) == 0 && len(args) > 0 && args[0] == "nats-server":
			args = args[1:]
		case len(s.Entrypoint) == 0:
			// the image's entrypoint prepends nats-server to flags
		default:
			errs = append(errs, fmt.Errorf("%w: service %s: entrypoint %q is not nats-server: drop it or set it to [nats-server]", errComposeNATS, name, s.Entrypoint))
			continue
		}
		// As the container sees them: a mounted configuration file, and the
		// files it includes or names, are read from the host's layout.
		c.host.layout(name)
		for i, a := range args {
			args[i] = c.host.rewrite(name, a)
		}
		fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		noop := func() {}
		opts, err := server.ConfigureOptions(fs, args, noop, noop, noop)
		if err == nil && opts == nil {
			err = errors.New("it only prints help or a version")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: service %s: nats-server refuses its command line %q: %v", errComposeNATS, name, s.Command, err))
			continue
		}
		opts.StoreDir = c.host.containerPath(name, opts.StoreDir)
		nodes[name] = composeNATSNode{name: name, opts: opts}
	}
	return nodes, errors.Join(errs...)
}

// checkComposeBuilds: every service has an image or a build, every build's
// context and Dockerfile exist, and images are pinned to a tag.
func checkComposeBuilds(c *composeFile) error {
	var errs []error
	for _, name := range c.serviceNames(func(*composeService) bool { return true }) {
		s := c.Services[name]
		switch {
		case s.Build != nil:
			ctx := filepath.Join(composeRoot, cmp.Or(s.Build.Context, "."))
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				errs = append(errs, fmt.Errorf("%w: service %s: build context %q is not a directory: point it at the repository root", errComposeBuild, name, s.Build.Context))
				continue
			}
			df := filepath.Join(ctx, cmp.Or(s.Build.Dockerfile, "Dockerfile"))
			if _, err := os.Stat(df); err != nil {
				errs = append(errs, fmt.Errorf("%w: service %s: Dockerfile %q does not exist in the build context: fix build.dockerfile", errComposeBuild, name, s.Build.Dockerfile))
			}
		case s.Image == "":
			errs = append(errs, fmt.Errorf("%w: service %s has neither image nor build: give it one", errComposeBuild, name))
		default:
			_, tag, ok := strings.Cut(s.Image, ":")
			if !ok || tag == "" || tag == "latest" || strings.Contains(tag, "/") {
				errs = append(errs, fmt.Errorf("%w: service %s: image %q has no version tag: pin one (nats:2.15.3-alpine)", errComposeBuild, name, s.Image))
				continue
			}
			if want, err := goModNATSServer(); s.isNATS() && (err != nil || (tag != want && !strings.HasPrefix(tag, want+"-"))) {
				errs = append(errs, fmt.Errorf("%w: service %s: image %q is not nats-server %s, the version go.mod pins (%v): use nats:%s-alpine",
					errComposeBuild, name, s.Image, want, err, want))
			}
		}
	}
	return errors.Join(errs...)
}

// goModNATSServer is the nats-server version go.mod pins, without its v.
func goModNATSServer() (string, error) {
	b, err := os.ReadFile(filepath.Join(composeRoot, "go.mod"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(b)
	if m == nil {
		return "", errors.New("go.mod requires no github.com/nats-io/nats-server/v2")
	}
	return string(m[1]), nil
}

// checkComposeNATS: three nats services forming one JetStream cluster, each
// with a server name, a store dir on a volume, a healthcheck on its
// monitoring port, and only its own ports published.
func checkComposeNATS(c *composeFile) error {
	nodes, err := composeNATSNodes(c)
	if err != nil {
		return err
	}
	if len(nodes) != 3 {
		return fmt.Errorf("%w: %d nats services (%v), want 3: a JetStream cluster with replicas 3 needs three nodes", errComposeNATS, len(nodes), slices.Sorted(maps.Keys(nodes)))
	}
	var errs []error
	names, clusters := map[string]string{}, map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		o, s := nodes[name].opts, c.Services[name]
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposeNATS, name}, args...)...))
		}
		if !o.JetStream {
			fail("JetStream is off: add --jetstream")
		}
		if o.StoreDir == "" {
			fail("no store dir: add --store_dir /data and mount a volume there")
		} else if !slices.ContainsFunc(s.Volumes, func(m composeMount) bool { return m.Target == o.StoreDir && m.named() }) {
			fail("store dir %s is not on a named volume: its streams would be lost with the container; mount one there", o.StoreDir)
		}
		if o.ServerName == "" {
			fail("no server name: add --server_name %s", name)
		} else if other, dup := names[o.ServerName]; dup {
			fail("server name %s is also %s's: server names must be unique in a cluster", o.ServerName, other)
		}
		names[o.ServerName] = name
		if o.Cluster.Port <= 0 {
			fail("no cluster listen port: add --cluster nats://0.0.0.0:6222")
		}
		if o.Cluster.Name == "" {
			fail("no cluster name: add --cluster_name pcm")
		}
		clusters[o.Cluster.Name] = true
		listens := []string{strconv.Itoa(nodes[name].clientPort()), strconv.Itoa(o.Cluster.Port)}
		if o.HTTPPort > 0 {
			listens = append(listens, strconv.Itoa(o.HTTPPort))
		}
		for _, p := range s.Ports {
			if !slices.Contains(listens, p.Target) {
				fail("publishes container port %s, on which nats-server does not listen (%v)", p.Target, listens)
			}
		}
		if h := s.Healthcheck; h == nil || h.Disable {
			fail("no healthcheck: the services that depend on it cannot wait for the cluster")
		} else if o.HTTPPort <= 0 || !strings.Contains(strings.Join(h.Test, " "), fmt.Sprintf(":%d/healthz", o.HTTPPort)) {
			fail("healthcheck %q does not ask /healthz on the monitoring port (--http_port %d)", h.Test, o.HTTPPort)
		}
	}
	if len(clusters) != 1 {
		errs = append(errs, fmt.Errorf("%w: cluster names %v differ: give every node the same --cluster_name", errComposeNATS, slices.Sorted(maps.Keys(clusters))))
	}
	return errors.Join(errs...)
}

// checkComposeRoutes: every nats service's routes name exactly the nats
// services, each at its cluster port.
func checkComposeRoutes(c *composeFile) error {
	nodes, err := composeNATSNodes(c)
	if err != nil {
		return err
	}
	want := slices.Sorted(maps.Keys(nodes))
	var errs []error
	for _, name := range want {
		var got []string
		for _, r := range nodes[name].opts.Routes {
			got = append(got, r.Hostname())
			if target, ok := nodes[r.Hostname()]; ok && r.Port() != strconv.Itoa(target.opts.Cluster.Port) {
				errs = append(errs, fmt.Errorf("%w: service %s: route %s: %s listens for routes on port %d", errComposeRoutes, name, r, r.Hostname(), target.opts.Cluster.Port))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("%w: service %s routes to %v, want exactly the nats services %v: fix --routes", errComposeRoutes, name, got, want))
		}
	}
	return errors.Join(errs...)
}

// composePortRange parses a published port or range; ok is false when none is
// published.
func composePortRange(p string) (lo, hi int, ok bool, err error) {
	if p == "" {
		return 0, 0, false, nil
	}
	a, b, isRange := strings.Cut(p, "-")
	if lo, err = strconv.Atoi(a); err != nil {
		return 0, 0, false, err
	}
	hi = lo
	if isRange {
		if hi, err = strconv.Atoi(b); err != nil {
			return 0, 0, false, err
		}
	}
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, false, fmt.Errorf("port range %s out of 1-65535", p)
	}
	return lo, hi, true, nil
}

// checkComposePorts: no two published ports bind the same host port and
// protocol on overlapping addresses.
func checkComposePorts(c *composeFile) error {
	type binding struct {
		service, ip, proto string
		lo, hi             int
	}
	wildcard := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	var all []binding
	var errs []error
	for _, name := range c.serviceNames(func(*composeService) bool { return true }) {
		for _, p := range c.Services[name].Ports {
			lo, hi, ok, err := composePortRange(p.Published)
			if err != nil {
				errs = append(errs, fmt.Errorf("%w: service %s: published port %q: %v", errComposePorts, name, p.Published, err))
			}
			if !ok {
				continue
			}
			b := binding{service: name, ip: p.HostIP, proto: p.Protocol, lo: lo, hi: hi}
			for _, o := range all {
				if o.proto == b.proto && o.lo <= b.hi && b.lo <= o.hi && (o.ip == b.ip || wildcard(o.ip) || wildcard(b.ip)) {
					errs = append(errs, fmt.Errorf("%w: host port %s/%s of service %s is also published by %s: give each a distinct host port", errComposePorts, p.Published, b.proto, name, o.service))
				}
			}
			all = append(all, b)
		}
	}
	return errors.Join(errs...)
}

// checkComposeDependsOn: dependencies exist, their conditions can be met and
// there is no cycle.
func checkComposeDependsOn(c *composeFile) error {
	var errs []error
	for _, name := range c.serviceNames(func(*composeService) bool { return true }) {
		for dep, cond := range c.Services[name].DependsOn {
			target, ok := c.Services[dep]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%w: service %s depends on %s, which does not exist", errComposeDependsOn, name, dep))
			case dep == name:
				errs = append(errs, fmt.Errorf("%w: service %s depends on itself", errComposeDependsOn, name))
			case cond == "service_started":
			case cond == "service_healthy":
				if target.Healthcheck == nil || target.Healthcheck.Disable {
					errs = append(errs, fmt.Errorf("%w: service %s waits for %s to be healthy, but %s has no healthcheck: add one or wait for service_started", errComposeDependsOn, name, dep, dep))
				}
			case cond == "service_completed_successfully":
				if target.Restart == "always" || target.Restart == "unless-stopped" {
					errs = append(errs, fmt.Errorf("%w: service %s waits for %s to complete, but %s restarts %s: use restart: on-failure for a one-shot service", errComposeDependsOn, name, dep, dep, target.Restart))
				}
			default:
				errs = append(errs, fmt.Errorf("%w: service %s: unknown depends_on condition %q for %s", errComposeDependsOn, name, cond, dep))
			}
		}
	}
	// Depth-first search for a cycle.
	state := map[string]int{} // 1: on the path, 2: done
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		switch state[name] {
		case 1:
			errs = append(errs, fmt.Errorf("%w: dependency cycle %s", errComposeDependsOn, strings.Join(append(path, name), " -> ")))
			return
		case 2:
			return
		}
		state[name] = 1
		if s, ok := c.Services[name]; ok {
			for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
				if dep != name {
					visit(dep, append(path, name))
				}
			}
		}
		state[name] = 2
	}
	for _, name := range c.serviceNames(func(*composeService) bool { return true }) {
		visit(name, nil)
	}
	return errors.Join(errs...)
}

// after reports whether service a starts only after service b completed:
// a waits for b with service_completed_successfully, or depends on a
// service that starts only after b completed.
func (c *composeFile) after(a, b string) bool {
	seen := map[string]bool{}
	var walk func(name string) bool
	walk = func(name string) bool {
		if seen[name] {
			return false
		}
		seen[name] = true
		s, ok := c.Services[name]
		if !ok {
			return false
		}
		for dep, cond := range s.DependsOn {
			if (dep == b && cond == "service_completed_successfully") || (dep != b && walk(dep)) {
				return true
			}
		}
		return false
	}
	return walk(a)
}

// checkComposeVolumes: every named volume mounted is declared, every declared
// one is mounted, and no two services write one at the same time: of two
// services that mount a volume writable, one starts only after the other
// completed (two nats stores or two agent journals in one directory would
// corrupt each other). A tool (a service of a profile, started by hand with
// docker compose run) is not counted.
func checkComposeVolumes(c *composeFile) error {
	var errs []error
	users := map[string]bool{}
	writers := map[string][]string{}
	for _, name := range c.serviceNames(func(*composeService) bool { return true }) {
		s := c.Services[name]
		for _, m := range s.Volumes {
			if !m.named() {
				continue
			}
			if _, ok := c.Volumes[m.Source]; !ok {
				errs = append(errs, fmt.Errorf("%w: service %s mounts volume %s, which is not declared under the top-level volumes", errComposeVolumes, name, m.Source))
			}
			users[m.Source] = true
			if !m.ReadOnly && len(s.Profiles) == 0 {
				writers[m.Source] = append(writers[m.Source], name)
			}
		}
	}
	for _, v := range slices.Sorted(maps.Keys(writers)) {
		w := writers[v]
		for i, a := range w {
			for _, b := range w[i+1:] {
				if !c.after(a, b) && !c.after(b, a) {
					errs = append(errs, fmt.Errorf("%w: volume %s is mounted writable by %s and %s, which may run at once: give each its own, mount it :ro in one, or make one wait for the other to complete", errComposeVolumes, v, a, b))
				}
			}
		}
	}
	for _, v := range slices.Sorted(maps.Keys(c.Volumes)) {
		if !users[v] {
			errs = append(errs, fmt.Errorf("%w: volume %s is declared but no service mounts it: remove it or mount it", errComposeVolumes, v))
		}
	}
	return errors.Join(errs...)
}

// composePCMHelpFlag matches a flag line of pcm's help: its name and, for a flag
// that takes a value, the value's type.
var composePCMHelpFlag = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([\w-]+)(?: (\w+))?\s`)

// composePCMUsage matches the first usage line of pcm's help.
var composePCMUsage = regexp.MustCompile(`(?m)^Usage:\n  pcm (.*)$`)

// composePlaceholder is an argument's placeholder in a usage line (CLIENT).
var composePlaceholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// script returns the script a service runs with /bin/sh SCRIPT as its
// entrypoint.
func (s *composeService) script() (string, bool) {
	if len(s.Entrypoint) == 2 && s.Entrypoint[0] == "/bin/sh" {
		return s.Entrypoint[1], true
	}
	return "", false
}

// checkComposeScript: the script service runs is on a read-only bind
// mount of a file of the repository.
func checkComposeScript(c *composeFile, service, script string) error {
	for _, m := range c.Services[service].Volumes {
		rel, ok := strings.CutPrefix(script, strings.TrimSuffix(m.Target, "/")+"/")
		if script != m.Target && !ok {
			continue
		}
		if m.named() || m.Source == "" {
			return fmt.Errorf("script %s is in volume %s: mount it from the repository, so that the file the tests run is the one the container runs", script, m.Source)
		}
		if !m.ReadOnly {
			return fmt.Errorf("script %s is on a writable mount of %s: mount it :ro", script, m.Source)
		}
		if _, err := os.Stat(filepath.Join(composeRoot, m.Source, rel)); err != nil {
			return fmt.Errorf("script %s: %w", script, err)
		}
		return nil
	}
	return fmt.Errorf("script %s is on no mount of the service", script)
}

// checkComposePCMCommands: the pcm services keep the image's entrypoint (or
// run a script of the repository with /bin/sh) and their command lines
// parse with the real pcm binary: the subcommand exists, it gets as many
// arguments as its usage names, every flag exists, and no stray argument is
// left. A tool (a service of a profile) without a command gets it from
// docker compose run.
func checkComposePCMCommands(c *composeFile) error {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PCM_") })
	var errs []error
	for _, name := range c.serviceNames((*composeService).isPCM) {
		s := c.Services[name]
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposePCMCommand, name}, args...)...))
		}
		if script, ok := s.script(); ok {
			if err := checkComposeScript(c, name, script); err != nil {
				fail("%v", err)
			}
			continue
		}
		if len(s.Entrypoint) > 0 {
			fail("entrypoint %q overrides the image's /usr/local/bin/pcm: drop it", s.Entrypoint)
			continue
		}
		if len(s.Command) == 0 && len(s.Profiles) > 0 {
			continue
		}
		words := strings.Fields(s.pcmPath())
		if len(words) == 0 {
			fail("command %q does not start with a pcm subcommand", s.Command)
			continue
		}
		cmd := exec.Command(pcmBinary, append(slices.Clone([]string(s.Command)), "--help")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			fail("pcm %s --help: %v: %s", strings.Join(s.Command, " "), err, bytes.TrimSpace(out))
			continue
		}
		m := composePCMUsage.FindSubmatch(out)
		if m == nil {
			fail("pcm %s --help shows no usage", strings.Join(words, " "))
			continue
		}
		// The usage's words before its flags: the subcommand, then the
		// placeholders of its arguments.
		var path, placeholders []string
		for _, w := range strings.Fields(string(m[1])) {
			if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") {
				break
			}
			if composePlaceholder.MatchString(w) {
				placeholders = append(placeholders, w)
			} else if len(placeholders) == 0 {
				path = append(path, w)
			}
		}
		if len(words) < len(path) || !slices.Equal(words[:len(path)], path) {
			fail("%q is not a pcm command (its help is pcm %s's): check the subcommand's spelling", strings.Join(words, " "), strings.Join(path, " "))
			continue
		}
		if got := words[len(path):]; len(got) != len(placeholders) {
			fail("pcm %s takes %d argument(s) %v, got %q: check the subcommand's spelling and arguments", strings.Join(path, " "), len(placeholders), placeholders, got)
			continue
		}
		takesValue := map[string]bool{}
		for _, m := range composePCMHelpFlag.FindAllStringSubmatch(string(out), -1) {
			takesValue[m[1]] = m[2] != ""
		}
		args := s.Command[len(words):]
		for i := 0; i < len(args); i++ {
			a := args[i]
			if !strings.HasPrefix(a, "-") {
				fail("stray argument %q: pcm %s takes flags only after its arguments", a, strings.Join(path, " "))
				continue
			}
			if !strings.Contains(a, "=") && takesValue[strings.TrimLeft(a, "-")] {
				i++ // its value
			}
		}
	}
	return errors.Join(errs...)
}

// checkComposeURLs: a --url value names each nats service once, at its client port.
func checkComposeURLs(value string, nodes map[string]composeNATSNode) error {
	var hosts []string
	for u := range strings.SplitSeq(value, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Scheme != "nats" {
			return fmt.Errorf("%q is not a nats:// URL", u)
		}
		n, ok := nodes[pu.Hostname()]
		if !ok {
			return fmt.Errorf("%s is not a nats service", pu.Hostname())
		}
		if port := cmp.Or(pu.Port(), strconv.Itoa(server.DEFAULT_PORT)); port != strconv.Itoa(n.clientPort()) {
			return fmt.Errorf("%s serves clients on port %d, not %s", n.name, n.clientPort(), port)
		}
		hosts = append(hosts, pu.Hostname())
	}
	slices.Sort(hosts)
	if want := slices.Sorted(maps.Keys(nodes)); !slices.Equal(hosts, want) {
		return fmt.Errorf("it names %v, want every nats service once: %v", hosts, want)
	}
	return nil
}

// checkComposeProvision: one broker provision service, on every nats node,
// with as many replicas as nodes, started once the nodes are up and retried
// until it succeeds.
func checkComposeProvision(c *composeFile) error {
	nodes, err := composeNATSNodes(c)
	if err != nil {
		return err
	}
	names := c.serviceNames(func(s *composeService) bool { return s.isPCM() && s.pcmPath() == "broker provision" })
	if len(names) != 1 {
		return fmt.Errorf("%w: %d services run pcm broker provision (%v), want one", errComposeProvision, len(names), names)
	}
	name, s := names[0], c.Services[names[0]]
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposeProvision, name}, args...)...))
	}
	if r, _ := composeFlag(s.Command, "replicas"); r != strconv.Itoa(len(nodes)) {
		fail("--replicas %q, want %d: one replica per nats node", r, len(nodes))
	}
	if u, ok := composeFlag(s.Command, "url"); !ok {
		fail("no --url: it would provision nats://127.0.0.1:4222 inside its own container")
	} else if err := checkComposeURLs(u, nodes); err != nil {
		fail("--url %s: %v", u, err)
	}
	for _, n := range slices.Sorted(maps.Keys(nodes)) {
		if _, ok := s.DependsOn[n]; !ok {
			fail("does not depend on %s: it could start before the cluster", n)
		}
	}
	if !strings.HasPrefix(s.Restart, "on-failure") {
		fail("restart %q: want on-failure, so that it retries until the cluster has formed and then stops", s.Restart)
	}
	return errors.Join(errs...)
}

// authenticated reports whether the nats services run in operator mode
// (every client needs credentials).
func authenticated(nodes map[string]composeNATSNode) bool {
	for _, n := range nodes {
		if len(n.opts.TrustedOperators) > 0 {
			return true
		}
	}
	return false
}

// checkComposeAgents: at least two agents with distinct client ids, on
// every nats node, with their state dir on their own volume, started once
// provisioning succeeded; on an open cluster each enrolls itself in a group,
// on an authenticated one an admin's enrollment gave it its credentials
// (checkComposeEnrolledAgent).
func checkComposeAgents(c *composeFile) error {
	nodes, err := composeNATSNodes(c)
	if err != nil {
		return err
	}
	provisioners := c.serviceNames(func(s *composeService) bool { return s.isPCM() && s.pcmPath() == "broker provision" })
	names := c.serviceNames(func(s *composeService) bool { return s.isPCM() && s.pcmPath() == "agent" })
	if len(names) < 2 {
		return fmt.Errorf("%w: %d agent services (%v), want at least 2", errComposeAgents, len(names), names)
	}
	var errs []error
	ids := map[string]string{}
	for _, name := range names {
		s := c.Services[name]
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%w: service %s: "+format, append([]any{errComposeAgents, name}, args...)...))
		}
		id, _ := composeFlag(s.Command, "client-id")
		if id == "" {
			fail("no --client-id: the container's random host name would become its id")
		} else if other, dup := ids[id]; dup {
			fail("client id %s is also %s's: two agents would share one consumer", id, other)
		}
		ids[id] = name
		if authenticated(nodes) {
			if err := checkComposeEnrolledAgent(c, name, id); err != nil {
				fail("%v", err)
			}
		} else {
			if !slices.Contains(s.Command, "--enroll") {
				fail("no --enroll: nothing else enrolls it in this file")
			}
			if g, _ := composeFlag(s.Command, "groups"); g == "" {
				fail("no --groups: it would receive jobs for itself and all only")
			}
		}
		if u, ok := composeFlag(s.Command, "url"); !ok {
			fail("no --url: it would look for a broker inside its own container")
		} else if err := checkComposeURLs(u, nodes); err != nil {
			fail("--url %s: %v", u, err)
		}
		if dir, _ := composeFlag(s.Command, "state-dir"); dir == "" {
			fail("no --state-dir: its journal would live in the container and die with it")
		} else if !slices.ContainsFunc(s.Volumes, func(m composeMount) bool { return m.Target == dir && m.named() }) {
			fail("state dir %s is not on a named volume: mount one there", dir)
		}
		for _, p := range provisioners {
			if !c.after(name, p) {
				fail("does not wait for %s to complete (service_completed_successfully): it would start before the streams exist", p)
			}
		}
	}
	return errors.Join(errs...)
}

// dockerStage is one FROM of a Dockerfile and its instructions.
type dockerStage struct {
	base, name string
	instrs     [][2]string // instruction (upper case), arguments
}

// parseDockerfile splits a Dockerfile into stages, joining continued lines,
// dropping comments and expanding global ARG defaults in FROM.
func parseDockerfile(text string) (global map[string]string, stages []*dockerStage) {
	global = map[string]string{}
	var logical []string
	cur := ""
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") || (t == "" && cur == "") {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur += s + " "
			continue
		}
		logical = append(logical, strings.TrimSpace(cur+line))
		cur = ""
	}
	for _, l := range logical {
		instr, args, _ := strings.Cut(l, " ")
		instr, args = strings.ToUpper(instr), strings.TrimSpace(args)
		switch {
		case instr == "FROM":
			f := strings.Fields(os.Expand(args, func(k string) string { return global[k] }))
			st := &dockerStage{}
			for i, w := range f {
				switch {
				case strings.HasPrefix(w, "--"):
				case st.base == "":
					st.base = w
				case strings.EqualFold(w, "AS") && i+1 < len(f):
					st.name = f[i+1]
				}
			}
			stages = append(stages, st)
		case instr == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(args, "=")
			global[k] = v
		case len(stages) > 0:
			st := stages[len(stages)-1]
			st.instrs = append(st.instrs, [2]string{instr, args})
		}
	}
	return global, stages
}

// checkDockerfile: a golang build stage matching go.mod's Go version that
// builds ./cmd/pcm statically with the module download in its own layer, and
// a small final stage that copies the binary, runs as a non-root user and
// has pcm as its entrypoint.
func checkDockerfile(text, goMod string) error {
	_, stages := parseDockerfile(text)
	if len(stages) < 2 {
		return fmt.Errorf("%w: %d stages, want a build stage and a final stage", errDockerfile, len(stages))
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{errDockerfile}, args...)...))
	}
	var build *dockerStage
	for _, st := range stages[:len(stages)-1] {
		for _, in := range st.instrs {
			if in[0] == "RUN" && strings.Contains(in[1], "go build") && strings.Contains(in[1], "./cmd/pcm") {
				build = st
			}
		}
	}
	if build == nil {
		return fmt.Errorf("%w: no stage before the final one runs go build ... ./cmd/pcm", errDockerfile)
	}
	if v := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod); v == nil {
		fail("go.mod has no go directive to compare the build image with")
	} else if !strings.HasPrefix(build.base, "golang:"+v[1]) {
		fail("build stage FROM %s: want the official golang:%s image, go.mod's Go version", build.base, v[1])
	}
	if build.name == "" {
		fail("build stage has no name: FROM ... AS build, so that the final stage copies from it by name")
	}
	seen := map[string]int{} // step -> position
	for i, in := range build.instrs {
		switch {
		case in[0] == "COPY" && strings.Contains(in[1], "go.mod") && strings.Contains(in[1], "go.sum"):
			seen["copy go.mod"] = i + 1
		case in[0] == "RUN" && strings.Contains(in[1], "go mod download"):
			seen["go mod download"] = i + 1
		case in[0] == "COPY" && strings.HasPrefix(in[1], ". "):
			seen["copy sources"] = i + 1
		case in[0] == "RUN" && strings.Contains(in[1], "go build"):
			seen["go build"] = i + 1
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/pcm"} {
				if !strings.Contains(in[1], want) {
					fail("go build lacks %q: %s", want, in[1])
				}
			}
		}
	}
	order := []string{"copy go.mod", "go mod download", "copy sources", "go build"}
	for i := 1; i < len(order); i++ {
		if seen[order[i-1]] == 0 || seen[order[i]] == 0 || seen[order[i-1]] > seen[order[i]] {
			fail("build stage steps %v are missing or out of order (%v): copy go.mod and go.sum, download modules, then copy the sources and build", order, seen)
			break
		}
	}
	final := stages[len(stages)-1]
	if strings.HasPrefix(final.base, "golang") {
		fail("final stage FROM %s: want a small base such as alpine", final.base)
	}
	var copied, user, entry string
	for _, in := range final.instrs {
		switch in[0] {
		case "COPY":
			if strings.Contains(in[1], "--from="+build.name+" ") {
				copied = in[1]
			}
		case "USER":
			user = in[1]
		case "ENTRYPOINT":
			entry = in[1]
		}
	}
	if !strings.HasSuffix(copied, " /usr/local/bin/pcm") {
		fail("final stage does not COPY --from=%s the binary to /usr/local/bin/pcm", build.name)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		fail("final stage runs as %q: add an unprivileged USER", user)
	}
	var ep []string
	if json.Unmarshal([]byte(entry), &ep) != nil || !slices.Equal(ep, []string{"/usr/local/bin/pcm"}) {
		fail("ENTRYPOINT %s: want [\"/usr/local/bin/pcm\"] (exec form, so signals reach pcm)", entry)
	}
	return errors.Join(errs...)
}

// dockerignoreRegexp turns a .dockerignore pattern into a regular expression
// over slash-separated paths relative to the context.
func dockerignoreRegexp(p string) *regexp.Regexp {
	p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	return regexp.MustCompile("^" + b.String() + "$")
}

// dockerignored reports whether rel (or a directory above it) is excluded by
// the patterns; the last matching pattern wins and ! re-includes.
func dockerignored(patterns []string, rel string) bool {
	ignored := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		re := dockerignoreRegexp(strings.TrimPrefix(p, "!"))
		for dir := rel; dir != "." && dir != "/"; dir = filepath.ToSlash(filepath.Dir(dir)) {
			if re.MatchString(dir) {
				ignored = !neg
				break
			}
		}
	}
	return ignored
}

// checkDockerignore: no file that go build ./cmd/pcm reads (go.mod, go.sum,
// the Go files and embedded files of the module's packages) is excluded.
func checkDockerignore(ignore string, inputs []string) error {
	var patterns []string
	for line := range strings.Lines(ignore) {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	var errs []error
	for _, f := range inputs {
		if dockerignored(patterns, f) {
			errs = append(errs, fmt.Errorf("%w: %s is needed by go build ./cmd/pcm: remove the pattern that excludes it", errDockerignore, f))
		}
	}
	return errors.Join(errs...)
}

// dockerBuildInputs lists, relative to the repository root, the files go build
// ./cmd/pcm reads from this module.
func dockerBuildInputs(t testing.TB) []string {
	t.Helper()
	root, err := filepath.Abs(composeRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/pcm")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	inputs := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, filepath.ToSlash(rel))
	}
	return inputs
}

// composeChecks are the checks of docker-compose.yml, by name.
var composeChecks = []struct {
	name  string
	check func(*composeFile) error
}{
	{"images and builds", checkComposeBuilds},
	{"nats cluster", checkComposeNATS},
	{"routes", checkComposeRoutes},
	{"ports", checkComposePorts},
	{"depends_on", checkComposeDependsOn},
	{"volumes", checkComposeVolumes},
	{"pcm commands", checkComposePCMCommands},
	{"provision", checkComposeProvision},
	{"agents", checkComposeAgents},
}

// TestComposeFile checks docker-compose.yml with every check.
func TestComposeFile(t *testing.T) {
	c := loadCompose(t)
	for _, tc := range composeChecks {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestComposeDockerfile checks the Dockerfile and .dockerignore.
func TestComposeDockerfile(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(composeRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := checkDockerfile(read("Dockerfile"), read("go.mod")); err != nil {
		t.Error(err)
	}
	if err := checkDockerignore(read(".dockerignore"), dockerBuildInputs(t)); err != nil {
		t.Error(err)
	}
	// -X main.version only works if cmd/pcm has a string variable version.
	if !regexp.MustCompile(`(?m)^var version = "`).MatchString(read("cmd/pcm/version.go")) {
		t.Errorf("%v: cmd/pcm/version.go has no var version = \"...\" for -X main.version to set", errDockerfile)
	}
}

// composeSetElem replaces every element equal to old by new.
func composeSetElem(args composeStrings, old, new string) composeStrings {
	out := slices.Clone(args)
	for i, a := range out {
		if a == old {
			out[i] = new
		}
	}
	return out
}

// composeEditArgs replaces old by new inside every element of args.
func composeEditArgs(args composeStrings, old, new string) composeStrings {
	out := slices.Clone(args)
	for i, a := range out {
		out[i] = strings.ReplaceAll(a, old, new)
	}
	return out
}

// composeMistake breaks a Compose file one way; check must then report want.
type composeMistake struct {
	name   string
	check  func(*composeFile) error
	want   error
	mutate func(c *composeFile)
}

// checkComposeMistakes loads the real file (load) once per case, asserts
// that the case's check passes, breaks the file and asserts that the check
// reports the mistake.
func checkComposeMistakes(t *testing.T, load func(t *testing.T) *composeFile, cases []composeMistake) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := load(t)
			if err := tc.check(c); err != nil {
				t.Fatalf("the real file already fails: %v", err)
			}
			tc.mutate(c)
			err := tc.check(c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			t.Logf("reported: %v", err)
		})
	}
}

// TestComposeChecksCatchMistakes breaks the real file one way at a time and
// asserts that the check in charge reports it.
func TestComposeChecksCatchMistakes(t *testing.T) {
	cases := []composeMistake{
		{"no image nor build", checkComposeBuilds, errComposeBuild, func(c *composeFile) {
			c.Services["n1"].Image = ""
		}},
		{"missing Dockerfile", checkComposeBuilds, errComposeBuild, func(c *composeFile) {
			c.Services["agent1"].Build.Dockerfile = "Nope.Dockerfile"
		}},
		{"unpinned image", checkComposeBuilds, errComposeBuild, func(c *composeFile) {
			c.Services["n2"].Image = "nats:latest"
		}},
		{"nats image of another version than go.mod's", checkComposeBuilds, errComposeBuild, func(c *composeFile) {
			c.Services["n3"].Image = "nats:2.12-alpine"
		}},
		{"unknown nats flag", checkComposeNATS, errComposeNATS, func(c *composeFile) {
			c.Services["n1"].Command = append(c.Services["n1"].Command, "--jetstreem")
		}},
		{"no jetstream", checkComposeNATS, errComposeNATS, func(c *composeFile) {
			c.Services["n3"].Command = slices.DeleteFunc(c.Services["n3"].Command, func(a string) bool { return a == "--jetstream" })
		}},
		{"duplicate server name", checkComposeNATS, errComposeNATS, func(c *composeFile) {
			c.Services["n2"].Command = composeEditArgs(c.Services["n2"].Command, "=n2", "=n1")
		}},
		{"two cluster names", checkComposeNATS, errComposeNATS, func(c *composeFile) {
			c.Services["n2"].Command = composeEditArgs(c.Services["n2"].Command, "name=pcm", "name=other")
		}},
		{"route to an unknown node", checkComposeRoutes, errComposeRoutes, func(c *composeFile) {
			c.Services["n1"].Command = composeEditArgs(c.Services["n1"].Command, "n3:6222", "n4:6222")
		}},
		{"route missing a node", checkComposeRoutes, errComposeRoutes, func(c *composeFile) {
			c.Services["n2"].Command = composeEditArgs(c.Services["n2"].Command, ",nats://n3:6222", "")
		}},
		{"route to a client port", checkComposeRoutes, errComposeRoutes, func(c *composeFile) {
			c.Services["n3"].Command = composeEditArgs(c.Services["n3"].Command, "n1:6222", "n1:4222")
		}},
		{"same client host port", checkComposePorts, errComposePorts, func(c *composeFile) {
			c.Services["n2"].Ports[0] = composePort{Published: "4222", Target: "4222", Protocol: "tcp"}
		}},
		{"wildcard against loopback", checkComposePorts, errComposePorts, func(c *composeFile) {
			c.Services["n3"].Ports = append(c.Services["n3"].Ports, composePort{Published: "8222", Target: "8222", Protocol: "tcp"})
		}},
		{"unknown dependency", checkComposeDependsOn, errComposeDependsOn, func(c *composeFile) {
			c.Services["agent1"].DependsOn["n9"] = "service_started"
		}},
		{"healthy without healthcheck", checkComposeDependsOn, errComposeDependsOn, func(c *composeFile) {
			c.Services["agent2"].DependsOn["agent1"] = "service_healthy"
		}},
		{"completion of a restarting service", checkComposeDependsOn, errComposeDependsOn, func(c *composeFile) {
			c.Services["provision"].Restart = "always"
		}},
		{"cycle", checkComposeDependsOn, errComposeDependsOn, func(c *composeFile) {
			c.Services["n1"].DependsOn = composeDependsOn{"agent1": "service_started"}
		}},
		{"shared volume", checkComposeVolumes, errComposeVolumes, func(c *composeFile) {
			c.Services["agent2"].Volumes[0].Source = "agent1-state"
		}},
		{"undeclared volume", checkComposeVolumes, errComposeVolumes, func(c *composeFile) {
			delete(c.Volumes, "n1-data")
		}},
		{"unknown pcm flag", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["agent1"].Command = append(c.Services["agent1"].Command, "--bogus")
		}},
		{"stray pcm argument", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["agent2"].Command = append(c.Services["agent2"].Command, "extra")
		}},
		{"misspelt subcommand", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["provision"].Command = composeEditArgs(c.Services["provision"].Command, "provision", "provison")
		}},
		{"entrypoint override", checkComposePCMCommands, errComposePCMCommand, func(c *composeFile) {
			c.Services["agent1"].Entrypoint = composeStrings{"/bin/sh", "-c"}
		}},
		{"one replica", checkComposeProvision, errComposeProvision, func(c *composeFile) {
			c.Services["provision"].Command = composeSetElem(c.Services["provision"].Command, "3", "1")
		}},
		{"provision url misses a node", checkComposeProvision, errComposeProvision, func(c *composeFile) {
			c.Services["provision"].Command = composeEditArgs(c.Services["provision"].Command, ",nats://n3:4222", "")
		}},
		{"provision never retried", checkComposeProvision, errComposeProvision, func(c *composeFile) {
			c.Services["provision"].Restart = "no"
		}},
		{"agent url to a cluster port", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent1"].Command = composeEditArgs(c.Services["agent1"].Command, "n2:4222", "n2:6222")
		}},
		{"agents share a client id", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent2"].Command = composeEditArgs(c.Services["agent2"].Command, "agent2", "agent1")
		}},
		{"agent before provisioning", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent2"].DependsOn["provision"] = "service_started"
		}},
		{"agent state dir off its volume", checkComposeAgents, errComposeAgents, func(c *composeFile) {
			c.Services["agent1"].Volumes[0].Target = "/tmp"
		}},
	}
	checkComposeMistakes(t, func(t *testing.T) *composeFile { return loadCompose(t) }, cases)
}

// TestComposeDockerChecksCatchMistakes breaks the Dockerfile and
// .dockerignore one way at a time.
func TestComposeDockerChecksCatchMistakes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(composeRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(composeRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	inputs := []string{"go.mod", "go.sum", "cmd/pcm/main.go", "events/schemas/offered.json"}
	cases := []struct {
		name       string
		dockerfile string
		ignore     string
		want       error
	}{
		{"cgo", strings.Replace(dockerfile, "CGO_ENABLED=0 ", "", 1), "", errDockerfile},
		{"other Go", strings.Replace(dockerfile, "GO_VERSION=1.26", "GO_VERSION=1.25", 1), "", errDockerfile},
		{"one stage", dockerfile[:strings.Index(dockerfile, "\nFROM alpine")], "", errDockerfile},
		{"root", strings.Replace(dockerfile, "USER pcm:pcm", "USER root", 1), "", errDockerfile},
		{"shell entrypoint", strings.Replace(dockerfile, `ENTRYPOINT ["/usr/local/bin/pcm"]`, "ENTRYPOINT /usr/local/bin/pcm", 1), "", errDockerfile},
		{"no module layer", strings.Replace(dockerfile, "COPY go.mod go.sum ./", "", 1), "", errDockerfile},
		{"other package", strings.Replace(dockerfile, "./cmd/pcm", "./cmd/other", 1), "", errDockerfile},
		{"ignores json", dockerfile, "*.json\n**/*.json\n", errDockerignore},
		{"ignores go.sum", dockerfile, "go.*\n", errDockerignore},
		{"ignores cmd", dockerfile, "cmd\n", errDockerignore},
		{"last pattern wins", dockerfile, "!cmd/**\ncmd\n", errDockerignore},
		{"fine", dockerfile, "**/*.json\n!events/schemas/*.json\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := errors.Join(checkDockerfile(tc.dockerfile, string(goMod)), checkDockerignore(tc.ignore, inputs))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err != nil {
				t.Logf("reported: %v", err)
			}
		})
	}
}

// TestComposeInterpolation checks the stand-in for Compose's variable
// interpolation: defaults are used, a variable without one is refused.
func TestComposeInterpolation(t *testing.T) {
	cases := []struct {
		in, out string
		want    error
	}{
		{"image: pcm:${PCM_VERSION:-dev}", "image: pcm:dev", nil},
		{"image: pcm:${PCM_VERSION-dev}", "image: pcm:dev", nil},
		{"image: pcm:${PCM_VERSION:-}", "image: pcm:", nil},
		{"image: pcm:${PCM_VERSION}", "", errComposeInterpolation},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			out, err := interpolateCompose([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && string(out) != tc.out {
				t.Fatalf("got %q, want %q", out, tc.out)
			}
		})
	}
}
