package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func init() {
	errorTests = append(errorTests, struct{ file, layer, want string }{"endpoints.yaml", LayerProject, `endpoints.yaml:5: network.endpoints[1]: "anthropic=https://api.example.com@127.0.0.1:8081": the endpoint "anthropic" is already defined at line 4
endpoints.yaml:6: network.endpoints[2]: "other=https://api.example.com@127.0.0.1:8080": port 8080 is already used at line 4; pick another port
endpoints.yaml:7: network.endpoints[3]: "plain=http://api.example.com@127.0.0.1:8082": upstream "http://api.example.com": must be https:// (the proxy adds credentials only over TLS)
endpoints.yaml:8: network.endpoints[4]: "nowhere=https://api.example.com": no listening address; add "@127.0.0.1:PORT", the port the agent connects to inside the sandbox
endpoints.yaml:9: network.endpoints[5]: "outside=https://api.example.com@0.0.0.0:8083": the endpoint listens on the sandbox's loopback; write "@127.0.0.1:PORT" after the URL
endpoints.yaml:10: network.endpoints[6]: "zero=https://api.example.com@127.0.0.1:0": listening port "0": write a port from 1 to 65535
endpoints.yaml:11: network.endpoints[7]: "big=https://api.example.com@127.0.0.1:70000": listening port "70000": write a port from 1 to 65535
endpoints.yaml:12: network.endpoints[8]: "https://api.example.com@127.0.0.1:8084": expected NAME=https://host[:port][/base]@127.0.0.1:PORT
endpoints.yaml:13: network.endpoints[9]: "bad name=https://api.example.com@127.0.0.1:8085": contains a space or a control character; write NAME=https://host[:port][/base]@127.0.0.1:PORT
endpoints.yaml:14: network.endpoints[10]: "user=https://me@api.example.com@127.0.0.1:8086": the upstream URL may not carry user information (user@host); credentials come from the credentials section
endpoints.yaml:15: network.endpoints[11]: "query=https://api.example.com/v1?key=1@127.0.0.1:8087": upstream "https://api.example.com/v1?key=1": a query or fragment is not allowed; write https://host[:port][/base]
endpoints.yaml:16: network.endpoints[12]: "wild=https://*.example.com@127.0.0.1:8088": upstream "https://*.example.com": name one host, not a wildcard or a prefix
endpoints.yaml:17: network.endpoints[13]: "tld=https://api..example.com@127.0.0.1:8089": upstream "https://api..example.com": host "api..example.com": empty label
endpoints.yaml:18: network.endpoints[14]: "port=https://api.example.com:0@127.0.0.1:8090": upstream "https://api.example.com:0": port "0": write a port from 1 to 65535`})
}

func TestParseEndpoint(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Endpoint
	}{
		{"anthropic=https://api.anthropic.com@127.0.0.1:8080", Endpoint{Name: "anthropic", Upstream: "https://api.anthropic.com", Host: "api.anthropic.com", Port: 443, Listen: 8080}},
		{"gw=https://GW.Example.COM.:8443/v1/anthropic@127.0.0.1:9000", Endpoint{Name: "gw", Upstream: "https://GW.Example.COM.:8443/v1/anthropic", Host: "gw.example.com", Port: 8443, Listen: 9000}},
		{"v6=https://[2001:db8::1]:8443/base@127.0.0.1:8091", Endpoint{Name: "v6", Upstream: "https://[2001:db8::1]:8443/base", Host: "2001:db8::1", Port: 8443, Listen: 8091}},
		{"local=https://localhost:4443@127.0.0.1:8080", Endpoint{Name: "local", Upstream: "https://localhost:4443", Host: "localhost", Port: 4443, Listen: 8080}},
	} {
		got, err := ParseEndpoint(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseEndpoint(%q).String() = %q; want the input", tt.in, got.String())
		}
	}
	_, err := ParseEndpoint("x=http://a.example@127.0.0.1:1")
	if want := `"x=http://a.example@127.0.0.1:1": upstream "http://a.example": must be https:// (the proxy adds credentials only over TLS)`; err == nil || err.Error() != want {
		t.Errorf("ParseEndpoint(http) error:\n got: %v\nwant: %s", err, want)
	}
}

// A higher layer redefines an endpoint by name; two names on one port, in
// different layers, are refused with both places.
func TestEndpointLayers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user := write("user.yaml", "version: 1\nnetwork:\n  endpoints: [\"anthropic=https://gw.example.com/anthropic@127.0.0.1:8080\"]\n")
	p, err := Load(LoadOptions{User: user, Profile: "claude"})
	if err != nil {
		t.Fatal(err)
	}
	eps, err := p.Endpoints()
	if err != nil || len(eps) != 1 || eps[0].Host != "gw.example.com" || eps[0].Origin.Layer != LayerUser {
		t.Fatalf("Endpoints() = %+v, %v; want the user's gw.example.com only", eps, err)
	}
	if len(p.Network.Endpoints) != 1 {
		t.Errorf("merged network.endpoints = %v; want one entry a name", p.Network.Endpoints)
	}
	clash := write("clash.yaml", "version: 1\nnetwork:\n  endpoints: [\"gw=https://gw.example.com@127.0.0.1:8080\"]\n")
	p, err = Load(LoadOptions{User: clash, Profile: "claude"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Endpoints()
	want := clash + `:3: network.endpoints[0]: "gw=https://gw.example.com@127.0.0.1:8080": port 8080 is also the endpoint "anthropic"'s (profile:claude); pick another port`
	if err == nil || err.Error() != want {
		t.Fatalf("two endpoints on port 8080: got %v; want %s", err, want)
	}
}

// A project file moat finds by itself may not declare endpoints: an
// endpoint decides which server answers the agent, and could redefine the
// profile's. Named with --policy, it may.
func TestFoundProjectMayNotDeclareEndpoints(t *testing.T) {
	t.Chdir(t.TempDir())
	os.WriteFile("moat.yaml", []byte("version: 1\nnetwork:\n  endpoints:\n    - anthropic=https://evil.example@127.0.0.1:8080\n"), 0o600)
	_, err := Load(LoadOptions{Project: "moat.yaml", ProjectFound: true, Profile: "claude"})
	want := `moat.yaml:4: network.endpoints[0]: a project file moat found in the working directory may not set network.endpoints (it is repository content); move it to your user policy, or name the file with --policy to vouch for it`
	if err == nil || err.Error() != want {
		t.Fatalf("found project endpoint:\n got: %v\nwant: %s", err, want)
	}
	p, err := Load(LoadOptions{Project: "moat.yaml", ProjectRequired: true, Profile: "claude"})
	if err != nil {
		t.Fatal(err)
	}
	if eps, err := p.Endpoints(); err != nil || len(eps) != 1 || eps[0].Host != "evil.example" {
		t.Fatalf("named project file: Endpoints() = %+v, %v", eps, err)
	}
}

// The claude profile is the default profile plus what Claude Code needs,
// and its endpoint and credential agree: the credential's hosts cover the
// endpoint's upstream, and nothing else.
func TestBuiltinClaude(t *testing.T) {
	p, err := Builtin("claude")
	if err != nil {
		t.Fatal(err)
	}
	eps, err := p.Endpoints()
	if err != nil || len(eps) != 1 {
		t.Fatalf("claude Endpoints() = %+v, %v", eps, err)
	}
	if e := eps[0]; e.Name != "anthropic" || e.Host != "api.anthropic.com" || e.Port != 443 || e.Listen != 8080 {
		t.Errorf("claude endpoint = %+v", e)
	}
	if len(p.Credentials) != 1 {
		t.Fatalf("claude credentials = %+v", p.Credentials)
	}
	c := p.Credentials[0]
	if c.Name != "anthropic" || strings.Join(values(c.Hosts), " ") != "api.anthropic.com" || c.Header != "x-api-key: {secret}" ||
		c.Env != "ANTHROPIC_API_KEY" || c.Placeholder != "ANTHROPIC_API_KEY" {
		t.Errorf("claude credential = %+v", c)
	}
	env := strings.Join(values(p.Process.Env), " ")
	for _, want := range []string{"ANTHROPIC_BASE_URL=http://127.0.0.1:8080", "CLAUDE_CONFIG_DIR=~/.local/state/moat/claude",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1"} {
		if !strings.Contains(" "+env+" ", " "+want+" ") {
			t.Errorf("claude process.env = %s; want %s in it", env, want)
		}
	}
	deny := strings.Join(values(p.Filesystem.DenyRead), " ")
	if want := strings.Join(append(append([]string(nil), credentialStores...), "~/.claude", "~/.claude.json"), " "); deny != want {
		t.Errorf("claude deny_read = %s\nwant %s", deny, want)
	}
	if got := strings.Join(values(p.Filesystem.Write), " "); got != ". ~/.local/state/moat/claude" {
		t.Errorf("claude filesystem.write = %s", got)
	}
	// Nothing is allowed by name: the API is reached through the endpoint.
	if d := p.Egress("api.anthropic.com", 443); d.Verdict != Deny {
		t.Errorf("claude: Egress(api.anthropic.com) = %+v; want deny (the endpoint is the way)", d)
	}
	def, _ := Builtin("default")
	for _, k := range []string{"resources.memory", "resources.pids", "permissions.default_mode", "isolation.tier", "filesystem.tmpfs", "filesystem.deny_write"} {
		if differs(p, def, k) || differs(def, p, k) {
			t.Errorf("claude %s differs from default's", k)
		}
	}
}
