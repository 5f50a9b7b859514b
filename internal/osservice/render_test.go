package osservice_test

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pcm-project/pcm/internal/osservice"
)

func agentSpec() osservice.Spec {
	return osservice.Spec{
		Name: "pcm-agent", DisplayName: "pcm agent", Description: "pcm agent: runs this client's jobs\nunattended",
		Exec: "/usr/local/bin/pcm", Args: []string{"agent", "--config", "/etc/pcm/agent.yaml"},
		StopTimeout: 90 * time.Second,
	}
}

func hasLines(t *testing.T, what, text string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("%s lacks the line %q:\n%s", what, l, text)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	unit := osservice.SystemdUnit(agentSpec())
	hasLines(t, "agent unit", unit,
		"[Unit]", "Description=pcm agent: runs this client's jobs unattended", "After=network-online.target",
		"[Service]", "ExecStart=/usr/local/bin/pcm agent --config /etc/pcm/agent.yaml",
		"Restart=always", "RestartSec=5s", "KillMode=mixed", "TimeoutStopSec=90s",
		"[Install]", "WantedBy=multi-user.target")
	if strings.Contains(unit, "LimitNOFILE") {
		t.Errorf("agent unit sets a file limit it was not asked for:\n%s", unit)
	}
	broker := osservice.Spec{Name: "pcm-broker", Exec: "/opt/pcm dir/pcm", Args: []string{"broker", "--config", `C:\50% "odd" $HOME`}, FileLimit: 1 << 20}
	hasLines(t, "broker unit", osservice.SystemdUnit(broker),
		`ExecStart="/opt/pcm dir/pcm" broker --config "C:\\50%% \"odd\" $$HOME"`, "LimitNOFILE=1048576", "TimeoutStopSec=60s")
}

// plistDict decodes a property list's top dict into key -> raw values.
func plistDict(t *testing.T, text string) map[string]string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(text))
	d.Strict = true
	out := map[string]string{}
	var key, val strings.Builder
	depth, inKey := 0, false
	var cur string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plist is not well-formed XML: %v\n%s", err, text)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 3 && tk.Name.Local == "key" {
				inKey = true
				key.Reset()
			} else if depth == 3 {
				val.Reset()
				val.WriteString(tk.Name.Local + ":")
			}
		case xml.CharData:
			if inKey {
				key.Write(tk)
			} else if depth >= 3 {
				val.Write([]byte(strings.TrimSpace(string(tk))))
				if depth > 3 && len(strings.TrimSpace(string(tk))) > 0 {
					val.WriteString("|")
				}
			}
		case xml.EndElement:
			if depth == 3 && inKey {
				inKey, cur = false, key.String()
			} else if depth == 3 {
				out[cur] = val.String()
			}
			depth--
		}
	}
	return out
}

func TestLaunchdPlists(t *testing.T) {
	s := agentSpec()
	s.Args = append(s.Args, "--state-dir", "/var/lib/pcm & <co>")
	s.LogFile = "/var/log/pcm-agent.log"
	d := plistDict(t, osservice.LaunchdPlist(s))
	want := map[string]string{
		"Label":             "string:io.pcm.pcm-agent",
		"ProgramArguments":  "array:/usr/local/bin/pcm|agent|--config|/etc/pcm/agent.yaml|--state-dir|/var/lib/pcm & <co>|",
		"RunAtLoad":         "true:",
		"KeepAlive":         "true:",
		"ExitTimeOut":       "integer:90",
		"ThrottleInterval":  "integer:5",
		"StandardErrorPath": "string:/var/log/pcm-agent.log",
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("daemon plist %s = %q, want %q", k, d[k], v)
		}
	}
	s.FileLimit = 65536
	if d := plistDict(t, osservice.LaunchdPlist(s)); d["HardResourceLimits"] != "dict:NumberOfFiles|65536|" {
		t.Errorf("HardResourceLimits = %q", d["HardResourceLimits"])
	}
	desk := plistDict(t, osservice.LaunchAgentPlist(osservice.Spec{Name: "pcm-desktop", Exec: "/usr/local/bin/pcm", Args: []string{"desktop"}}))
	if desk["LimitLoadToSessionType"] != "string:Aqua" || desk["ProgramArguments"] != "array:/usr/local/bin/pcm|desktop|" {
		t.Errorf("launch agent plist = %v", desk)
	}
}

func TestWindowsConfig(t *testing.T) {
	s := osservice.Spec{Name: "pcm-agent", Description: "runs jobs", Exec: `C:\Program Files\pcm\pcm.exe`,
		Args: []string{"agent", "--config", `C:\ProgramData\pcm\agent.yaml`}, RestartDelay: 10 * time.Second}
	w := osservice.WindowsConfig(s)
	if w.CommandLine != `"C:\Program Files\pcm\pcm.exe" agent --config C:\ProgramData\pcm\agent.yaml` {
		t.Errorf("CommandLine = %s", w.CommandLine)
	}
	if !w.AutoStart || !w.RecoverOnExitCode || len(w.Recovery) != 3 || w.Recovery[2].Delay != 10*time.Second ||
		w.PreShutdownTimeout != osservice.DefaultStopTimeout || w.ResetPeriod != 24*time.Hour || w.DisplayName != "pcm-agent" {
		t.Errorf("WindowsConfig = %+v", w)
	}
}

func TestWindowsCommandLine(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"plain"}, `C:\p.exe plain`},
		{[]string{""}, `C:\p.exe ""`},
		{[]string{`a b`}, `C:\p.exe "a b"`},
		{[]string{`say "hi"`}, `C:\p.exe "say \"hi\""`},
		{[]string{`C:\dir with space\`}, `C:\p.exe "C:\dir with space\\"`},
		{[]string{`C:\no\space\`}, `C:\p.exe C:\no\space\`},
	}
	for _, tt := range tests {
		if got := osservice.WindowsCommandLine(`C:\p.exe`, tt.args); got != tt.want {
			t.Errorf("WindowsCommandLine(%q) = %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestXDGAutostart(t *testing.T) {
	s := osservice.Spec{Name: "pcm-desktop", DisplayName: "pcm desktop", Description: "the jobs you may run",
		Exec: "/usr/local/bin/pcm", Args: []string{"desktop", "--config", "/etc/pcm/my agent.yaml", "100%"}}
	hasLines(t, "autostart entry", osservice.XDGAutostart(s),
		"[Desktop Entry]", "Type=Application", "Name=pcm desktop", "Terminal=false",
		`Exec=/usr/local/bin/pcm desktop --config "/etc/pcm/my agent.yaml" 100%%`)
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name string
		spec osservice.Spec
		ok   bool
	}{
		{"unix path", osservice.Spec{Name: "pcm-agent", Exec: "/usr/local/bin/pcm"}, true},
		{"windows path", osservice.Spec{Name: "pcm-agent", Exec: `C:\pcm\pcm.exe`}, true},
		{"relative binary", osservice.Spec{Name: "pcm-agent", Exec: "pcm"}, false},
		{"bad name", osservice.Spec{Name: "pcm agent", Exec: "/usr/local/bin/pcm"}, false},
		{"negative timeout", osservice.Spec{Name: "pcm-agent", Exec: "/bin/pcm", StopTimeout: -time.Second}, false},
	}
	for _, tt := range tests {
		err := tt.spec.Validate()
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, osservice.ErrInvalidSpec) {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}
