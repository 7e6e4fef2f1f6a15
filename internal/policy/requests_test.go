package policy

import "testing"

func TestRequestRules(t *testing.T) {
	p, err := Parse("moat.yaml", []byte(`version: 1
network:
  allow: [api.github.com, "*.example.com"]
  request_allow:
    - api.github.com GET /repos/acme/**
    - api.github.com HEAD /repos/acme/*
  request_deny:
    - api.github.com POST /gists
    - "* DELETE **"
`), LayerProject)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, method, path string
		verdict            Verdict
		rule, reason       string
	}{
		{"api.github.com", "GET", "/repos/acme/moat/issues", Allow, "moat.yaml:5 network.request_allow[0]", `allowed by "api.github.com GET /repos/acme/**" in network.request_allow`},
		{"api.github.com", "get", "/repos/acme", Allow, "moat.yaml:5 network.request_allow[0]", `allowed by "api.github.com GET /repos/acme/**" in network.request_allow`},
		{"api.github.com", "HEAD", "/repos/acme/x", Allow, "moat.yaml:6 network.request_allow[1]", `allowed by "api.github.com HEAD /repos/acme/*" in network.request_allow`},
		{"api.github.com", "HEAD", "/repos/acme/x/y", Deny, RuleRequestNotAllowed, `api.github.com has network.request_allow rules and none allows HEAD /repos/acme/x/y; add "api.github.com HEAD /repos/acme/x/y" to network.request_allow to allow it`},
		{"api.github.com", "POST", "/gists", Deny, "moat.yaml:8 network.request_deny[0]", `POST /gists on api.github.com is refused by "api.github.com POST /gists" in network.request_deny`},
		{"api.github.com", "GET", "/repos/evil/x", Deny, RuleRequestNotAllowed, `api.github.com has network.request_allow rules and none allows GET /repos/evil/x; add "api.github.com GET /repos/evil/x" to network.request_allow to allow it`},
		// Dot segments are resolved before matching: no climbing out of acme.
		{"api.github.com", "GET", "/repos/acme/../evil/x", Deny, RuleRequestNotAllowed, `api.github.com has network.request_allow rules and none allows GET /repos/evil/x; add "api.github.com GET /repos/evil/x" to network.request_allow to allow it`},
		// An encoded slash or dot could be read otherwise by the server.
		{"api.github.com", "GET", "/repos/acme%2F..%2F..%2Fevil", Deny, RuleRequestAmbiguous, `the path "/repos/acme%2F..%2F..%2Fevil" encodes a slash, backslash or dot, which api.github.com's request rules cannot judge`},
		{"www.example.com", "DELETE", "/a/b", Deny, "moat.yaml:9 network.request_deny[1]", `DELETE /a/b on www.example.com is refused by "* DELETE **" in network.request_deny`},
		{"www.example.com", "POST", "/a/b", Allow, "", ""},
		// A "*" rule covers every host, so the path must be unambiguous everywhere.
		{"other.test", "GET", "/%2f", Deny, RuleRequestAmbiguous, `the path "/%2f" encodes a slash, backslash or dot, which other.test's request rules cannot judge`},
	} {
		d := p.Request(tt.host, 443, tt.method, tt.path)
		if d.Verdict != tt.verdict || d.Rule != tt.rule || d.Reason != tt.reason {
			t.Errorf("Request(%s %s %s) =\n  %v %q %q\nwant\n  %v %q %q", tt.host, tt.method, tt.path, d.Verdict, d.Rule, d.Reason, tt.verdict, tt.rule, tt.reason)
		}
	}
}

func TestLimits(t *testing.T) {
	p, err := Parse("moat.yaml", []byte(`version: 1
network:
  limits: ["api.github.com 60/min", "* 50m out"]
`), LayerProject)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Limits("api.github.com", 443)
	if len(got) != 2 || got[0].PerMinute != 60 || got[0].Rule != "moat.yaml:3 network.limits[0]" || got[1].BytesOut != 50<<20 {
		t.Errorf("Limits(api.github.com) = %+v", got)
	}
	if got := p.Limits("other.test", 443); len(got) != 1 || got[0].BytesOut != 50<<20 {
		t.Errorf("Limits(other.test) = %+v; want only the * budget", got)
	}
}

func TestRequestRuleErrors(t *testing.T) {
	_, err := Parse("moat.yaml", []byte(`version: 1
network:
  request_allow: ["api.github.com GET", "api.github.com get /x", "api.github.com GET x", "*.com GET /"]
  limits: ["api.github.com 0/min", "api.github.com fast", "* 5x out"]
`), LayerProject)
	want := `moat.yaml:3: network.request_allow[0]: "api.github.com GET": expected "HOST METHOD PATH", e.g. "api.github.com GET /repos/acme/**"
moat.yaml:3: network.request_allow[1]: "api.github.com get /x": method "get": write an HTTP method in capitals (GET, POST) or *
moat.yaml:3: network.request_allow[2]: "api.github.com GET x": path "x" must start with /
moat.yaml:3: network.request_allow[3]: "*.com GET /": host: a wildcard over the top-level domain "com" would match every site under it; write "*.example.com"
moat.yaml:4: network.limits[0]: "api.github.com 0/min": requests a minute must be a positive whole number; expected "HOST N/min" or "HOST SIZE out", e.g. "api.github.com 60/min" or "* 50m out"
moat.yaml:4: network.limits[1]: "api.github.com fast": expected "HOST N/min" or "HOST SIZE out", e.g. "api.github.com 60/min" or "* 50m out"
moat.yaml:4: network.limits[2]: "* 5x out": size "5x": write a positive size such as 50m or 1g`
	if err == nil || err.Error() != want {
		t.Errorf("errors:\n got: %v\nwant: %s", err, want)
	}
}
