package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// runPolicyCLI runs moat with args in dir, with the given environment,
// and returns the exit code, standard output and standard error.
func runPolicyCLI(t *testing.T, dir string, environ map[string]string, args ...string) (int, string, string) {
	t.Helper()
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return environ[k] }}
	code := run(context.Background(), e, args)
	return code, stdout.String(), stderr.String()
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A workspace with a project, a managed and a user policy; the
// environment points at the managed and user files by relative paths, so
// the output names them the same on every machine.
var policyFiles = map[string]string{
	"moat.yaml": `version: 1
network:
  allow:
    - api.anthropic.com
    - "*.github.com"
`,
	"managed.yaml": `version: 1
lock: [network.mode]
network:
  mode: enforce
  deny: ["*.evil.example"]
resources:
  memory: 1g
`,
	"cfg/moat/policy.yaml": `version: 1
process:
  env: [TERM]
`,
}

var policyEnv = map[string]string{"MOAT_MANAGED_POLICY": "managed.yaml", "XDG_CONFIG_HOME": "cfg", "HOME": "/nonexistent"}

const wantShow = `# The effective moat policy; each value is followed by where it comes from.
# Layers, highest precedence first: managed.yaml (managed), moat.yaml (project), cfg/moat/policy.yaml (user), profile:default
version: 1
profile: default  # default
lock:
  - network.mode  # managed.yaml:2 (managed)
network:
  mode: enforce  # managed.yaml:4 (managed)
  allow:
    - api.anthropic.com  # moat.yaml:4 (project)
    - "*.github.com"  # moat.yaml:5 (project)
  deny:
    - "*.evil.example"  # managed.yaml:5 (managed)
  allow_private: []
  request_allow: []
  request_deny: []
  limits: []
  endpoints: []
filesystem:
  read: []
  deny_read:
    - ~/.ssh  # profile:default
    - ~/.aws  # profile:default
    - ~/.config/gcloud  # profile:default
    - ~/.azure  # profile:default
    - ~/.docker/config.json  # profile:default
    - ~/.kube  # profile:default
    - ~/.git-credentials  # profile:default
    - ~/.npmrc  # profile:default
    - ~/.pypirc  # profile:default
    - ~/.netrc  # profile:default
    - ~/.config/gh  # profile:default
    - ~/.config/hub  # profile:default
    - ~/.cargo/credentials.toml  # profile:default
    - ~/.gem/credentials  # profile:default
    - ~/.gnupg  # profile:default
  write:
    - .  # profile:default
  deny_write:
    - moat.yaml  # profile:default
    - moat.json  # profile:default
  tmpfs:
    - /tmp:1g  # profile:default
  volumes: []
credentials: []
tls:
  intercept: []
  exclude: []
process:
  env:
    - TERM  # cfg/moat/policy.yaml:3 (user)
resources:
  memory: 1g  # managed.yaml:7 (managed)
  pids: 1024  # profile:default
permissions:
  allow: []
  ask: []
  deny: []
  default_mode: ask  # profile:default
audit: {}
isolation:
  tier: native  # profile:default
  require: []
`

func TestPolicyShow(t *testing.T) {
	dir := writeFiles(t, policyFiles)
	code, stdout, stderr := runPolicyCLI(t, dir, policyEnv, "policy", "show")
	if code != exitOK || stdout != wantShow || stderr != "" {
		t.Errorf("moat policy show = %d\nstdout:\n%s\nstderr:\n%s\nwant 0 and:\n%s", code, stdout, stderr, wantShow)
	}
}

func TestPolicyShowJSON(t *testing.T) {
	dir := writeFiles(t, policyFiles)
	code, stdout, stderr := runPolicyCLI(t, dir, policyEnv, "policy", "show", "--json")
	if code != exitOK || stderr != "" {
		t.Fatalf("moat policy show --json = %d, stderr:\n%s", code, stderr)
	}
	type origin struct {
		Layer, File, Key string
		Line             int
	}
	type value struct {
		Value  string
		Origin origin
	}
	var doc struct {
		Version int
		Profile value
		Layers  []origin
		Lock    []value
		Network struct {
			Mode  value
			Allow []value
			Deny  []value
		}
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("moat policy show --json: %v\n%s", err, stdout)
	}
	got := []any{doc.Version, doc.Profile.Value, len(doc.Layers), doc.Layers[0].File,
		doc.Lock[0].Value, doc.Lock[0].Origin, doc.Network.Mode.Value, doc.Network.Mode.Origin,
		doc.Network.Allow[1].Value, doc.Network.Allow[1].Origin, doc.Network.Deny[0].Value}
	want := []any{1, "default", 4, "managed.yaml",
		"network.mode", origin{"managed", "managed.yaml", "lock[0]", 2}, "enforce", origin{"managed", "managed.yaml", "network.mode", 4},
		"*.github.com", origin{"project", "moat.yaml", "network.allow[1]", 5}, "*.evil.example"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("moat policy show --json: field %d = %v; want %v", i, got[i], want[i])
		}
	}
}

func TestPolicyShowFlags(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"moat.yaml":       "version: 1\nnetwork:\n  allow: [default.example]\n",
		"other.yaml":      "version: 1\nnetwork:\n  allow: [other.example]\n",
		"org.yaml":        "version: 1\nnetwork:\n  deny: [org.example]\n",
		"me.yaml":         "version: 1\nprocess:\n  env: [EDITOR]\n",
		"locked.yaml":     "version: 1\nlock: [network.allow]\n",
		"broken.yaml":     "version: 1\nnetwrk: {}\nnetwork:\n  allow: [\"*.\"]\n",
		"cfg/moat/x.yaml": "",
	})
	for _, tt := range []struct {
		name    string
		environ map[string]string
		args    []string
		code    int
		has     []string // lines stdout must have
		stderr  string
	}{
		{"defaults: ./moat.yaml, no managed or user file", map[string]string{"MOAT_MANAGED_POLICY": "", "HOME": "/nonexistent"},
			nil, exitOK, []string{"    - default.example  # moat.yaml:3 (project)", "# Layers, highest precedence first: moat.yaml (project), profile:default"}, ""},
		{"--policy, --managed, --user-policy", map[string]string{"MOAT_MANAGED_POLICY": "missing.yaml"},
			[]string{"--policy", "other.yaml", "--managed", "org.yaml", "--user-policy", "me.yaml"}, exitOK,
			[]string{"    - other.example  # other.yaml:3 (project)", "    - org.example  # org.yaml:3 (managed)", "    - EDITOR  # me.yaml:3 (user)"}, ""},
		{"--profile", nil, []string{"--profile", "dev", "--managed", "org.yaml"}, exitOK,
			[]string{"profile: dev  # --profile (flag)", "    - registry.npmjs.org  # profile:dev", "    - default.example  # moat.yaml:3 (project)"}, ""},
		{"missing --policy", nil, []string{"--policy", "nope.yaml", "--managed", "org.yaml"}, exitConfig, nil,
			"moat: policy nope.yaml: cannot read: no such file\n"},
		{"missing managed file named by the environment", map[string]string{"MOAT_MANAGED_POLICY": "gone.yaml"}, nil, exitConfig, nil,
			"moat: policy gone.yaml: cannot read: no such file\n"},
		{"every error", nil, []string{"--policy", "broken.yaml", "--managed", "org.yaml"}, exitConfig, nil,
			"moat: policy broken.yaml:2: netwrk: unknown key; did you mean \"network\"?\n" +
				"moat: policy broken.yaml:4: network.allow[0]: \"*.\": empty domain after wildcard; write \"*.example.com\"\n"},
		{"lock", nil, []string{"--managed", "locked.yaml"}, exitConfig, nil,
			"moat: policy moat.yaml:3: network.allow: locked by locked.yaml:2 (managed); this layer cannot widen it\n"},
		{"unknown profile", nil, []string{"--profile", "prod", "--managed", "org.yaml"}, exitConfig, nil,
			"moat: policy --profile: \"prod\": unknown profile; want default, strict, dev or claude\n"},
		{"empty --managed", nil, []string{"--managed", ""}, exitConfig, nil,
			"moat: policy --managed: empty path; name the managed policy file\n"},
		{"argument", nil, []string{"moat.yaml"}, exitUsage, nil,
			"moat: policy show: unexpected argument \"moat.yaml\"; name the project file with --policy\n"},
	} {
		if tt.environ != nil && tt.environ["MOAT_MANAGED_POLICY"] == "" && os.Getenv("CI") != "true" {
			if _, err := os.Stat(policy.DefaultManagedPath); err == nil {
				t.Logf("%s: skipped: this machine has a managed policy at %s", tt.name, policy.DefaultManagedPath)
				continue
			}
		}
		args := append([]string{"policy", "show"}, tt.args...)
		code, stdout, stderr := runPolicyCLI(t, dir, tt.environ, args...)
		if code != tt.code || stderr != tt.stderr {
			t.Errorf("%s: moat %s = %d, stderr:\n%s\nwant %d, stderr:\n%s", tt.name, strings.Join(args, " "), code, stderr, tt.code, tt.stderr)
		}
		for _, l := range tt.has {
			if !strings.Contains("\n"+stdout, "\n"+l+"\n") {
				t.Errorf("%s: moat %s: stdout lacks the line %q:\n%s", tt.name, strings.Join(args, " "), l, stdout)
			}
		}
		if tt.code != exitOK && stdout != "" {
			t.Errorf("%s: moat %s failed but printed:\n%s", tt.name, strings.Join(args, " "), stdout)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"good.yaml":    "version: 1\nnetwork:\n  allow: [api.anthropic.com]\n",
		"good.json":    `{"version": 1, "profile": "dev"}`,
		"empty.yaml":   "",
		"bad.yaml":     "version: 1\nnetwork:\n  allow: [\"127.1\"]\n  mode: strict\n",
		"managed.yaml": "version: 1\nlock: [network.allow]\n",
	})
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"good.yaml", "good.json", "empty.yaml"}, exitOK, "good.yaml: ok\ngood.json: ok\nempty.yaml: ok\n", ""},
		{[]string{"good.yaml", "bad.yaml", "missing.yaml"}, exitConfig, "good.yaml: ok\n",
			"moat: policy bad.yaml:3: network.allow[0]: \"127.1\": non-canonical IPv4 address; write the dotted quad \"127.0.0.1\"\n" +
				"moat: policy bad.yaml:4: network.mode: \"strict\": unknown mode; want enforce or report\n" +
				"moat: policy missing.yaml: cannot read: no such file\n"},
		{[]string{"managed.yaml"}, exitConfig, "",
			"moat: policy managed.yaml:2: lock: only the managed policy may lock keys; remove it from this file\n"},
		{[]string{"--layer", "managed", "managed.yaml", "good.yaml"}, exitOK, "managed.yaml: ok\ngood.yaml: ok\n", ""},
		{[]string{"--layer", "user", "managed.yaml"}, exitConfig, "",
			"moat: policy managed.yaml:2: lock: only the managed policy may lock keys; remove it from this file\n"},
		{[]string{"--layer", "org", "good.yaml"}, exitUsage, "", "moat: policy validate: --layer \"org\": want project, user or managed\n"},
		{nil, exitUsage, "", policyUsage},
	} {
		args := append([]string{"policy", "validate"}, tt.args...)
		code, stdout, stderr := runPolicyCLI(t, dir, nil, args...)
		if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
			t.Errorf("moat %s = %d\nstdout:\n%s\nstderr:\n%s\nwant %d\nstdout:\n%s\nstderr:\n%s",
				strings.Join(args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestPolicyUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"policy"}, exitUsage, "", policyUsage},
		{[]string{"policy", "help"}, exitOK, policyUsage, ""},
		{[]string{"policy", "frob"}, exitUsage, "", "moat: policy: unknown subcommand \"frob\"; want show, validate or explain\n"},
		{[]string{"policy", "show", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus\n"},
	} {
		code, stdout, stderr := runPolicyCLI(t, dir, nil, tt.args...)
		if tt.code == exitUsage && strings.HasPrefix(tt.stderr, "flag provided") {
			// The flag package follows its message with the usage.
			if code != tt.code || stdout != "" || !strings.HasPrefix(stderr, tt.stderr+policyUsage) {
				t.Errorf("moat %s = %d, stderr:\n%s", strings.Join(tt.args, " "), code, stderr)
			}
			continue
		}
		if code != tt.code || stdout != tt.stdout || stderr != tt.stderr {
			t.Errorf("moat %s = %d\nstdout:\n%s\nstderr:\n%s\nwant %d", strings.Join(tt.args, " "), code, stdout, stderr, tt.code)
		}
	}
	if c, ok := commands["policy"]; !ok || c.summary == "" {
		t.Errorf("the policy command is not registered")
	}
}
