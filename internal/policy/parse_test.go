package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// errorTests: a file under testdata/errors, the layer it is parsed as, and
// every error Parse must report, one a line.
var errorTests = []struct{ file, layer, want string }{
	{"unknown-key.yaml", LayerProject, `unknown-key.yaml:2: netwrk: unknown key; did you mean "network"?`},
	{"unknown-nested.yaml", LayerProject, `unknown-nested.yaml:3: network.alow: unknown key; did you mean "allow"?
unknown-nested.yaml:5: network.colour: unknown key; want mode, allow, deny, allow_private, request_allow, request_deny, limits or endpoints`},
	{"wrong-type.yaml", LayerProject, `wrong-type.yaml:4: network.allow: expected a list of strings, got a mapping`},
	{"wrong-type-scalar.yaml", LayerProject, `wrong-type-scalar.yaml:3: network.allow: expected a list of strings, got a string; write ["example.com"]
wrong-type-scalar.yaml:4: network.deny: expected a list of strings, got a number
wrong-type-scalar.yaml:5: network.allow_private[0]: expected a string, got a list`},
	{"host-rules.yaml", LayerProject, `host-rules.yaml:6: network.allow[2]: "*.": empty domain after wildcard; write "*.example.com"
host-rules.yaml:7: network.allow[3]: "*": a lone "*" would match every host; list the hosts instead
host-rules.yaml:8: network.allow[4]: "*.com": a wildcard over the top-level domain "com" would match every site under it; write "*.example.com"
host-rules.yaml:9: network.allow[5]: "a*.b.com": "*" may only be the whole first label; write "*.b.com"
host-rules.yaml:10: network.allow[6]: "foo.*.com": "*" may only be the whole first label
host-rules.yaml:11: network.allow[7]: "https://example.com/path": a host, not a URL; write "example.com"
host-rules.yaml:12: network.allow[8]: "user@example.com": user information is not allowed; write "example.com"
host-rules.yaml:13: network.allow[9]: "example.com/path": a host cannot have a path; write "example.com"
host-rules.yaml:14: network.allow[10]: "exa mple.com": contains a space
host-rules.yaml:15: network.allow[11]: "tab\there.com": contains a control character
host-rules.yaml:16: network.allow[12]: "127.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"
host-rules.yaml:17: network.allow[13]: "0x7f.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"
host-rules.yaml:18: network.allow[14]: "2852039166": non-canonical IPv4 address; write the dotted quad "169.254.169.254"
host-rules.yaml:19: network.allow[15]: "0177.0.0.1": non-canonical IPv4 address; write the dotted quad "127.0.0.1"
host-rules.yaml:20: network.allow[16]: "fe80::1%eth0": IPv6 zones are not allowed
host-rules.yaml:21: network.allow[17]: "example.com:0": port must be 1-65535
host-rules.yaml:22: network.allow[18]: "example.com:99999": port must be 1-65535
host-rules.yaml:23: network.allow[19]: "10.1.2.3/8": address bits are set beyond the prefix length; write "10.0.0.0/8"
host-rules.yaml:24: network.allow[20]: "a_b.example.com": invalid character '_' (U+005F) (host names have letters, digits and '-')
host-rules.yaml:25: network.allow[21]: "ü-.com": not a valid internationalised name (idna: invalid label "ü-"); write it in its ASCII (punycode) form
host-rules.yaml:26: network.allow[22]: "` + strings.Repeat("a", 64) + `.com": label "aaaaaaaaaaaaaaaa..." is longer than 63 characters
host-rules.yaml:29: network.deny[1]: "*.evil..": empty label
host-rules.yaml:31: network.allow_private[0]: "[::1]x": unexpected "x" after "]"; write "[ADDRESS]:PORT"`},
	{"missing-version.yaml", LayerProject, `missing-version.yaml:1: version: missing; add "version: 1" at the top`},
	{"bad-version.yaml", LayerProject, `bad-version.yaml:1: version: "2": unsupported version; write "version: 1"`},
	{"version-string.yaml", LayerProject, `version-string.yaml:1: version: expected the number 1, got a string; write "version: 1"
version-string.yaml:2: profile: "strct": unknown profile; did you mean "strict"?`},
	{"duplicate-key.yaml", LayerProject, `duplicate-key.yaml:5: network.allow: duplicate key; first set at line 3
duplicate-key.yaml:6: version: duplicate key; first set at line 1`},
	{"alias.yaml", LayerProject, `alias.yaml:3: network.allow: YAML anchors (&hosts) are not allowed; write the value out where it is used
alias.yaml:4: network.allow_private: YAML aliases (*hosts) are not allowed; write the value out`},
	{"custom-tag.yaml", LayerProject, `custom-tag.yaml:3: network.allow: YAML tag "!hosts" is not allowed`},
	{"two-documents.yaml", LayerProject, `two-documents.yaml:3: a second YAML document; a policy file holds one`},
	{"not-utf8.yaml", LayerProject, `not-utf8.yaml:3: not valid UTF-8; save the file as UTF-8`},
	{"tab.yaml", LayerProject, `tab.yaml:3: invalid YAML: found character that cannot start any token (the line is indented with a tab; YAML needs spaces)`},
	{"syntax.yaml", LayerProject, `syntax.yaml:3: invalid YAML: did not find expected ',' or ']'`},
	{"lock-in-project.yaml", LayerProject, `lock-in-project.yaml:2: lock: only the managed policy may lock keys; remove it from this file`},
	{"lock-in-project.yaml", LayerUser, `lock-in-project.yaml:2: lock: only the managed policy may lock keys; remove it from this file`},
	{"top-list.yaml", LayerProject, `top-list.yaml:1: expected a mapping of keys (version, network, ...), got a list`},
	{"severity.yaml", LayerProject, `severity.yaml:5: permissions.severity.hihg: unknown key; did you mean "high"?
severity.yaml:6: permissions.severity.medium: "block": unknown verdict; want deny, ask or allow
severity.yaml:7: permissions.severity.critical: duplicate key; first set at line 4`},
	{"severity-forms.yaml", LayerProject, `severity-forms.yaml:3: permissions.severity: "critical=deny,high": in "high": write severity=verdict, like high=ask`},
	{"severity-unknown.yaml", LayerProject, `severity-unknown.yaml:3: permissions.severity: "critical=deny,extreme=deny": in "extreme=deny": unknown severity; want info, low, medium, high or critical`},
	{"severity-list.yaml", LayerProject, `severity-list.yaml:3: permissions.severity: expected a string, got a list`},
	{"severity-empty.yaml", LayerProject, `severity-empty.yaml:3: permissions.severity: empty; map severities to verdicts, like {critical: deny, high: ask}`},
	{"enums.yaml", LayerProject, `enums.yaml:2: profile: "production": unknown profile; want default, strict, dev or claude
enums.yaml:4: network.mode: "enforcing": unknown mode; did you mean "enforce"?
enums.yaml:6: filesystem.scan: "on": unknown scan mode; want off, warn or block
enums.yaml:8: permissions.default_mode: "prompt": unknown mode; want ask, deny or allow
enums.yaml:10: isolation.tier: "vm": unknown tier; want native, container, gvisor, docker or microvm
enums.yaml:11: isolation.require[1]: "apparmor": unknown layer; want namespaces, userns, landlock, seccomp, no_new_privs or cgroups
enums.yaml:11: isolation.require[2]: "seccom": unknown layer; did you mean "seccomp"?`},
	{"values.yaml", LayerProject, `values.yaml:3: filesystem.read[0]: "~bob/src": only "~/" (your home directory) is understood; write an absolute path
values.yaml:4: filesystem.deny_read[0]: "[a": malformed pattern
values.yaml:4: filesystem.deny_read[1]: "": empty path
values.yaml:5: filesystem.tmpfs[0]: "tmp:1g": a tmpfs must be an absolute path, like "/tmp:512m"
values.yaml:5: filesystem.tmpfs[1]: "/run:lots": not a size; write a whole number with an optional k, m, g or t, like "512m" or "2g"
values.yaml:7: process.user: "root!": write a user name, "UID" or "UID:GID"
values.yaml:8: process.env[1]: "1BAD": not an environment variable name (letters, digits and '_', not starting with a digit); write NAME or NAME=VALUE
values.yaml:8: process.env[3]: "FOO": set twice; first at line 8
values.yaml:10: resources.memory: "lots": not a size; write a whole number with an optional k, m, g or t, like "512m" or "2g"
values.yaml:11: resources.cpus: "0": write a positive number of CPUs, like 2 or 1.5
values.yaml:12: resources.pids: "0": must be at least 1
values.yaml:15: audit.max_size: "0": must be more than 0
values.yaml:16: audit.max_files: "-1": must be at least 0
values.yaml:18: permissions.allow[1]: "Bash(npm": write Tool or Tool(specifier), like "Bash(npm run test:*)"
values.yaml:18: permissions.allow[2]: "(x)": write Tool or Tool(specifier), like "Bash(npm run test:*)"
values.yaml:20: isolation.hostname: "bad_host": invalid character '_' (U+005F) (host names have letters, digits and '-')
values.yaml:21: isolation.image: "two words": contains a space or control character`},
	{"types.yaml", LayerProject, `types.yaml:3: network.mode: expected a string, got a number
types.yaml:4: network.allow[0]: expected a string, got a number
types.yaml:4: network.allow[1]: expected a string, got a boolean
types.yaml:4: network.allow[2]: expected a string, got nothing
types.yaml:6: resources.memory: expected a string, got a list
types.yaml:7: resources.pids: "0x10": write a decimal number
types.yaml:8: resources.cpus: "many": write a positive number of CPUs, like 2 or 1.5
types.yaml:10: audit.max_files: "1.5": expected a whole number`},
	{"credentials.yaml", LayerProject, `credentials.yaml:8: credentials[1]: "nohosts": missing "hosts"; list the hosts this secret may be sent to
credentials.yaml:11: credentials[2]: "twosources": env and file are both set; set one of env, file or command
credentials.yaml:16: credentials[3]: "nosource": say where the secret comes from: set one of env, file or command
credentials.yaml:21: credentials[4].header: "x-api-key: KEY": the value must contain {secret}; write "x-api-key: {secret}"
credentials.yaml:25: credentials[5].header: "{secret}": not a header template; write "NAME: VALUE" with {secret} in the value, like "x-api-key: {secret}"
credentials.yaml:27: credentials[6].name: "anthropic": defined twice; first at line 3
credentials.yaml:31: credentials[7]: missing "name"; give the credential a name
credentials.yaml:35: credentials[8].hosts: empty; list the hosts this secret may be sent to
credentials.yaml:37: credentials[8].command: empty; give the program and its arguments
credentials.yaml:38: credentials[8].placeholder: "1X": not an environment variable name (letters, digits and '_', not starting with a digit)
credentials.yaml:40: credentials[9].hosts[0]: "*": a lone "*" would match every host; list the hosts instead
credentials.yaml:41: credentials[9].basic: "{secret}": write "USER:{secret}"
credentials.yaml:43: credentials[10]: "two-ways": header and query are both set; set one of header, basic or query
credentials.yaml:48: credentials[11]: expected a mapping (name, hosts, header, env, ...), got a string
credentials.yaml:49: credentials[12].name: "my key": a credential name has letters, digits, '-', '_' and '.'`},
	{"json-errors.json", LayerProject, `json-errors.json:4: network.allow[1]: "*.": empty domain after wildcard; write "*.example.com"
json-errors.json:5: network.allow: duplicate key; first set at line 4
json-errors.json:6: network.mdoe: unknown key; did you mean "mode"?`},
	{"null-values.yaml", LayerProject, `null-values.yaml:3: network.mode: expected a string, got nothing
null-values.yaml:7: tls.ca: expected a string, got nothing`},
	{"locks.yaml", LayerManaged, `locks.yaml:4: lock[1]: "network.alow": unknown key path; did you mean "network.allow"?
locks.yaml:5: lock[2]: "network.deny": any layer may add to network.deny, which only tightens the policy, so it cannot be locked
locks.yaml:6: lock[3]: "version": cannot be locked
locks.yaml:7: lock[4]: "everything": unknown key path; write a section ("network") or a key in it ("network.allow")`},
}

func TestParseErrors(t *testing.T) {
	t.Chdir("testdata/errors")
	for _, tt := range errorTests {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(tt.file, data, tt.layer)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%s, %s) = %v, error:\n%v\nwant:\n%s", tt.file, tt.layer, p != nil, err, tt.want)
		}
		if _, ok := err.(Errors); err != nil && !ok {
			t.Errorf("Parse(%s) error is a %T; want Errors", tt.file, err)
		}
	}
}

// Every file under testdata/errors has a case.
func TestParseErrorsCoverTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, tt := range errorTests {
		have[tt.file] = true
	}
	for _, f := range files {
		if !have[filepath.Base(f)] {
			t.Errorf("%s has no case in errorTests", f)
		}
	}
}

func TestParseLimits(t *testing.T) {
	big := []byte("version: 1\n# " + strings.Repeat("x", MaxFileSize) + "\n")
	_, err := Parse("big.yaml", big, LayerProject)
	want := `big.yaml: the file is 1048590 bytes; a policy file may have at most 1048576 (1 MiB)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(1 MiB + 14 bytes) error = %v; want %s", err, want)
	}
	// A billion laughs: refused at the first anchor, never expanded.
	laughs := "version: 1\nnetwork:\n  allow: &a [x.example, x.example]\n  deny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n  allow_private: [*b, *b, *b, *b, *b, *b, *b, *b]\n"
	_, err = Parse("laughs.yaml", []byte(laughs), LayerProject)
	want = `laughs.yaml:3: network.allow: YAML anchors (&a) are not allowed; write the value out where it is used
laughs.yaml:4: network.deny: YAML anchors (&b) are not allowed; write the value out where it is used
laughs.yaml:5: network.allow_private[0]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[1]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[2]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[3]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[4]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[5]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[6]: YAML aliases (*b) are not allowed; write the value out
laughs.yaml:5: network.allow_private[7]: YAML aliases (*b) are not allowed; write the value out`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(billion laughs) error:\n%v\nwant:\n%s", err, want)
	}
}

// An empty file, or one of comments only, is a layer that says nothing.
func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "# nothing\n", "~\n", "null", "{}", "---\n"} {
		p, err := Parse("empty.yaml", []byte(data), LayerProject)
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		if keys := p.setKeys(); len(keys) != 0 {
			t.Errorf("Parse(%q) sets %v; want nothing", data, keys)
		}
		want := []Origin{{Layer: LayerProject, File: "empty.yaml"}}
		if len(p.Layers) != 1 || p.Layers[0] != want[0] {
			t.Errorf("Parse(%q).Layers = %v; want %v", data, p.Layers, want)
		}
	}
}
