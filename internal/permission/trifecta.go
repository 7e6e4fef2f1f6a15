package permission

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// The lethal trifecta: an agent that can read private data, take in
// content an attacker may have written, and send data somewhere an
// attacker can read, can be told by that content to send that data. A
// policy is safe from it when one of the three is missing from every
// session it allows.
//
// Explain judges a policy, not a session: what the policy lets any session
// do without asking a person. Asked calls (permissions.ask, default_mode
// ask) are left to the person; Claude Code's own settings files and the
// workspace's contents are not read, and the workspace itself is taken as
// trusted input (the user chose it).

// Trifecta is what Explain finds.
type Trifecta struct {
	PrivateData    Leg `json:"private_data"`
	UntrustedInput Leg `json:"untrusted_input"`
	WayOut         Leg `json:"way_out"`
	// Lethal: all three legs are present.
	Lethal bool `json:"lethal"`
	// Break names the legs, fewest items first, whose items to remove to
	// break the trifecta; empty when it is not lethal.
	Break []string `json:"break,omitempty"`
}

// Leg is one of the three, with every item that makes it present.
type Leg struct {
	Name    string         `json:"name"`
	Present bool           `json:"present"`
	Items   []TrifectaItem `json:"items"`
}

// TrifectaItem is one thing the policy allows that makes a leg present.
type TrifectaItem struct {
	What string `json:"what"`           // what the session can do, in one line
	Rule string `json:"rule,omitempty"` // where the policy says so; empty when it is what the policy leaves out
	Fix  string `json:"fix"`            // what to change to take it away
}

// Leg names, as Break and the text report give them.
const (
	LegPrivateData    = "private data"
	LegUntrustedInput = "untrusted input"
	LegWayOut         = "a way out"
)

// credentialStores are files that hold credentials, by the service they
// open (""; any service).
var credentialStores = []struct{ path, what, service string }{
	{"~/.ssh", "SSH keys", "ssh"}, {"~/.aws", "AWS credentials", "aws"}, {"~/.config/gcloud", "Google Cloud credentials", "gcloud"},
	{"~/.azure", "Azure credentials", "azure"}, {"~/.docker/config.json", "container registry logins", "docker"},
	{"~/.kube", "Kubernetes credentials", "kube"}, {"~/.git-credentials", "git passwords and tokens", "git"},
	{"~/.npmrc", "the npm token", "npm"}, {"~/.pypirc", "the PyPI token", "pypi"}, {"~/.netrc", "logins for any host", ""},
	{"~/.config/gh", "the GitHub CLI's token", "github"}, {"~/.config/hub", "hub's GitHub token", "github"},
	{"~/.gnupg", "GnuPG keys", "gpg"}, {"~/.cargo/credentials.toml", "the crates.io token", "crates"},
	{"~/.gem/credentials", "the RubyGems key", "rubygems"}, {"~/.claude", "Claude Code's login and history", "anthropic"},
	{"~/.claude.json", "Claude Code's settings and MCP servers", "anthropic"},
}

// workspaceSecrets are names of secret files a workspace often holds.
var workspaceSecrets = []string{".env", ".env.*", "*.pem", "*.key"}

// Hosts by what they are. modelHosts serve the agent's own model: their
// answers are the agent, and what it sends them stays with the account.
// accountHosts serve content anyone may publish and take writes only from
// an account, which services names; readOnlyHosts take no writes at all.
var (
	modelHosts   = map[string]bool{"api.anthropic.com": true, "api.openai.com": true}
	accountHosts = map[string]string{
		"github.com": "github", "api.github.com": "github", "uploads.github.com": "github", "gist.github.com": "github",
		"gitlab.com": "git", "bitbucket.org": "git", "registry.npmjs.org": "npm", "pypi.org": "pypi", "upload.pypi.org": "pypi",
		"crates.io": "crates", "rubygems.org": "rubygems", "registry-1.docker.io": "docker", "index.docker.io": "docker",
	}
	readOnlyHosts = map[string]bool{
		"codeload.github.com": true, "raw.githubusercontent.com": true, "objects.githubusercontent.com": true,
		"files.pythonhosted.org": true, "proxy.golang.org": true, "sum.golang.org": true, "static.crates.io": true,
		"index.crates.io": true, "index.rubygems.org": true, "repo.maven.apache.org": true, "repo1.maven.org": true,
		"deb.debian.org": true, "security.debian.org": true,
	}
	// serviceEnv are variables that carry a service's token.
	serviceEnv = map[string][]string{"github": {"GITHUB_TOKEN", "GH_TOKEN"}, "npm": {"NPM_TOKEN"}, "pypi": {"PYPI_TOKEN", "TWINE_PASSWORD"},
		"crates": {"CARGO_REGISTRY_TOKEN"}, "rubygems": {"GEM_HOST_API_KEY"}, "git": {"GITLAB_TOKEN", "GIT_TOKEN"}, "docker": {"DOCKER_PASSWORD"}}
)

// Explain reports the lethal trifecta of a policy.
func Explain(p *policy.Policy) Trifecta {
	x := explainer{p: p}
	t := Trifecta{
		PrivateData:    Leg{Name: LegPrivateData, Items: x.privateData()},
		UntrustedInput: Leg{Name: LegUntrustedInput, Items: x.untrustedInput()},
		WayOut:         Leg{Name: LegWayOut, Items: x.wayOut()},
	}
	for _, l := range []*Leg{&t.PrivateData, &t.UntrustedInput, &t.WayOut} {
		l.Present = len(l.Items) > 0
		if l.Items == nil {
			l.Items = []TrifectaItem{}
		}
	}
	t.Lethal = t.PrivateData.Present && t.UntrustedInput.Present && t.WayOut.Present
	if t.Lethal {
		legs := []Leg{t.PrivateData, t.UntrustedInput, t.WayOut}
		slices.SortStableFunc(legs, func(a, b Leg) int { return len(a.Items) - len(b.Items) })
		for _, l := range legs {
			t.Break = append(t.Break, l.Name)
		}
	}
	return t
}

type explainer struct {
	p *policy.Policy
}

// readable reports whether a home path (written "~/…") can be read: it is
// under filesystem.read (unset: everything) and no deny_read entry masks
// it.
func (x *explainer) readable(p string) bool {
	fs := x.p.Filesystem
	if len(fs.Read) > 0 {
		in := false
		for _, e := range fs.Read {
			v := strings.TrimSuffix(e.Value, "/")
			// An absolute entry may name the home directory, which
			// explain cannot know: it counts as covering it.
			in = in || v == "" || v == "~" || strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "/tmp") || covers(v, p)
		}
		if !in {
			return false
		}
	}
	return !x.masked(p)
}

func (x *explainer) masked(p string) bool {
	for _, e := range x.p.Filesystem.DenyRead {
		if v := strings.TrimSuffix(e.Value, "/"); v == "~" || covers(v, p) {
			return true
		}
	}
	return false
}

// covers reports whether the glob g names p or one of its ancestors.
func covers(g, p string) bool {
	return pathMatch(strings.Split(g, "/"), strings.Split(p, "/"))
}

func (x *explainer) readCite() string {
	if r := x.p.Filesystem.Read; len(r) > 0 {
		return r[0].Origin.String()
	}
	return ""
}

func (x *explainer) privateData() []TrifectaItem {
	var out []TrifectaItem
	if x.readable("~/Documents") {
		what := "the home directory is readable"
		if len(x.p.Filesystem.Read) == 0 {
			what += " (filesystem.read is unset: the host's root, read-only)"
		}
		if n := len(x.p.Filesystem.DenyRead); n > 0 {
			what += fmt.Sprintf(", but for the %d paths filesystem.deny_read masks", n)
		}
		out = append(out, TrifectaItem{What: what, Rule: x.readCite(), Fix: "list only what the agent needs in filesystem.read"})
	}
	for _, s := range credentialStores {
		if x.readable(s.path) {
			out = append(out, TrifectaItem{What: s.path + " (" + s.what + ") is readable", Rule: x.readCite(),
				Fix: "add " + s.path + " to filesystem.deny_read"})
		}
	}
	var open []string
	for _, g := range workspaceSecrets {
		if !x.maskedInWorkspace(g) {
			open = append(open, g)
		}
	}
	if len(open) > 0 {
		out = append(out, TrifectaItem{What: "the workspace's " + strings.Join(open, ", ") + " files are readable, if it has any",
			Fix: "add " + strings.Join(open, ", ") + " to filesystem.deny_read"})
	}
	for _, c := range x.p.Credentials {
		if x.model(c.Hosts) {
			continue
		}
		out = append(out, TrifectaItem{What: "credential " + c.Name + " reads whatever it may read on " + hostList(c.Hosts),
			Rule: c.Origin.String(), Fix: "remove credential " + c.Name + ", or give it a token that can read only public data"})
	}
	for _, e := range x.p.Process.Env {
		name, _, _ := strings.Cut(e.Value, "=")
		if secretName(name) {
			out = append(out, TrifectaItem{What: "process.env puts " + name + " inside the sandbox", Rule: e.Origin.String(),
				Fix: "remove " + name + " from process.env; let a credential add it outside"})
		}
	}
	return out
}

func (x *explainer) maskedInWorkspace(g string) bool {
	for _, e := range x.p.Filesystem.DenyRead {
		v := strings.TrimPrefix(strings.TrimSuffix(e.Value, "/"), "./")
		if v == g || v == "**/"+g {
			return true
		}
	}
	return false
}

func secretName(n string) bool {
	u := strings.ToUpper(n)
	for _, s := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "PRIVATE_KEY", "CREDENTIAL", "AUTH"} {
		if strings.Contains(u, s) {
			return true
		}
	}
	return false
}

func (x *explainer) model(hosts []policy.Entry) bool {
	for _, h := range hosts {
		if !modelHosts[strings.ToLower(h.Value)] {
			return false
		}
	}
	return len(hosts) > 0
}

func hostList(hs []policy.Entry) string {
	v := make([]string, len(hs))
	for i, h := range hs {
		v[i] = h.Value
	}
	return strings.Join(v, ", ")
}

// hostName is a network.allow rule as written for a report.
func hostName(r policy.HostRule) string {
	if r.IsPrefix {
		return r.Prefix
	}
	return r.Name
}

// anyHost reports whether a rule reaches hosts explain cannot name: a
// wildcard, an address range.
func anyHost(r policy.HostRule) bool {
	return r.Wildcard || r.Name == "*" || r.IsPrefix && !strings.HasSuffix(r.Prefix, "/32") && !strings.HasSuffix(r.Prefix, "/128")
}

// allowedTools returns the tool rules of the allow list that reach the
// network, and whether unlisted tools are allowed.
func (x *explainer) allowedTools() (fetchAny, search bool, fetch, mcp []policy.Entry, defaultAllow *policy.String) {
	perm := x.p.Permissions
	if perm.DefaultMode.Value == "allow" {
		defaultAllow = &perm.DefaultMode
	}
	for _, en := range perm.Allow {
		r, err := ParseRule(en.Value, policy.Allow, "", "")
		if err != nil {
			continue
		}
		switch {
		case r.Tool == "WebFetch" && (r.kind == kindTool || r.domain == "*" || strings.HasPrefix(r.domain, "*")):
			fetchAny = true
			fetch = append(fetch, en)
		case r.Tool == "WebFetch":
			fetch = append(fetch, en)
		case r.Tool == "WebSearch":
			search = true
			fetch = append(fetch, en)
		case strings.HasPrefix(r.Tool, "mcp__"):
			mcp = append(mcp, en)
		}
	}
	return
}

func (x *explainer) untrustedInput() []TrifectaItem {
	var out []TrifectaItem
	for _, r := range x.p.Network.Allow {
		h := hostName(r)
		var what string
		switch {
		case anyHost(r):
			what = "network.allow reaches " + h + ", hosts anyone may serve content from"
		case modelHosts[h]:
			continue
		case accountHosts[h] != "" || readOnlyHosts[h]:
			what = "network.allow reaches " + h + ", which serves code and packages anyone may publish"
		default:
			what = "network.allow reaches " + h + ", whose content moat cannot vouch for"
		}
		out = append(out, TrifectaItem{What: what, Rule: r.Origin.String(), Fix: "remove " + h + " from network.allow"})
	}
	eps, _ := x.p.Endpoints()
	for _, e := range eps {
		if !modelHosts[e.Host] {
			out = append(out, TrifectaItem{What: "endpoint " + e.Name + " reaches " + e.Host + ", whose answers may carry anyone's content",
				Rule: e.Origin.String(), Fix: "remove endpoint " + e.Name})
		}
	}
	_, _, fetch, mcp, def := x.allowedTools()
	for _, en := range fetch {
		out = append(out, TrifectaItem{What: en.Value + " is allowed without asking", Rule: en.Origin.String(),
			Fix: "move " + en.Value + " to permissions.ask"})
	}
	for _, en := range mcp {
		out = append(out, TrifectaItem{What: en.Value + ": an MCP server's tools, which may fetch anything, are allowed without asking",
			Rule: en.Origin.String(), Fix: "move " + en.Value + " to permissions.ask"})
	}
	if def != nil {
		out = append(out, TrifectaItem{What: "unlisted tools, WebFetch and WebSearch among them, are allowed without asking",
			Rule: def.Origin.String(), Fix: "set permissions.default_mode to ask"})
	}
	return out
}

func (x *explainer) wayOut() []TrifectaItem {
	var out []TrifectaItem
	for _, r := range x.p.Network.Allow {
		h := hostName(r)
		var what, fix string
		switch {
		case modelHosts[h] || readOnlyHosts[h]:
			continue
		case anyHost(r):
			what, fix = "network.allow reaches "+h+", among them hosts an attacker runs", "remove "+h+" from network.allow"
		case accountHosts[h] != "":
			how, fix0 := x.accountAccess(accountHosts[h])
			if how == "" {
				continue
			}
			what = "network.allow reaches " + h + ", which takes writes from an account: " + how
			fix = fix0 + ", remove " + h + " from network.allow"
		default:
			what, fix = "network.allow reaches "+h+", which may accept what the agent sends", "remove "+h+" from network.allow"
		}
		if x.writesBlocked(h) {
			continue
		}
		out = append(out, TrifectaItem{What: what + x.limitNote(h), Rule: r.Origin.String(), Fix: fix + ", or allow it only reads in network.request_allow (with tls.intercept)"})
	}
	for _, c := range x.p.Credentials {
		if x.model(c.Hosts) {
			continue
		}
		var open []string
		for _, h := range c.Hosts {
			if !x.writesBlocked(h.Value) {
				open = append(open, h.Value)
			}
		}
		if len(open) > 0 {
			out = append(out, TrifectaItem{What: "credential " + c.Name + " lets requests to " + strings.Join(open, ", ") + " write as its owner" + x.limitNote(open[0]),
				Rule: c.Origin.String(), Fix: "allow " + strings.Join(open, ", ") + " only reads in network.request_allow, or remove credential " + c.Name})
		}
	}
	fetchAny, _, _, mcp, def := x.allowedTools()
	if fetchAny {
		for _, en := range x.p.Permissions.Allow {
			if r, err := ParseRule(en.Value, policy.Allow, "", ""); err == nil && r.Tool == "WebFetch" && (r.kind == kindTool || strings.HasPrefix(r.domain, "*")) {
				out = append(out, TrifectaItem{What: en.Value + " can put data in the URL of a fetch from a host an attacker runs",
					Rule: en.Origin.String(), Fix: "move " + en.Value + " to permissions.ask, or name the domains"})
			}
		}
	}
	for _, en := range mcp {
		out = append(out, TrifectaItem{What: en.Value + ": an MCP server's tools, which may send anything, are allowed without asking",
			Rule: en.Origin.String(), Fix: "move " + en.Value + " to permissions.ask"})
	}
	if def != nil {
		out = append(out, TrifectaItem{What: "unlisted tools, WebFetch among them, may send data without asking",
			Rule: def.Origin.String(), Fix: "set permissions.default_mode to ask"})
	}
	return out
}

// accountAccess says how a session could act as an account of the
// service (a readable credential file, a token in process.env, a
// credential the proxy adds) and how to take that away; "" if it cannot.
func (x *explainer) accountAccess(svc string) (how, fix string) {
	for _, s := range credentialStores {
		if (s.service == svc || s.service == "" || svc == "github" && s.service == "git") && x.readable(s.path) {
			return "the token in " + s.path + " is readable", "add " + s.path + " to filesystem.deny_read"
		}
	}
	for _, e := range x.p.Process.Env {
		name, _, _ := strings.Cut(e.Value, "=")
		for _, v := range serviceEnv[svc] {
			if name == v {
				return "process.env passes in " + name + " [" + e.Origin.String() + "]", "remove " + name + " from process.env"
			}
		}
	}
	for _, c := range x.p.Credentials {
		for _, h := range c.Hosts {
			if accountHosts[strings.ToLower(h.Value)] == svc {
				return "credential " + c.Name + " signs in", "remove credential " + c.Name
			}
		}
	}
	return "", ""
}

// writesBlocked reports whether the proxy refuses every write to host:
// it sees inside (tls.intercept) and the request rules leave no write
// method.
func (x *explainer) writesBlocked(host string) bool {
	seen := false
	for _, e := range x.p.TLS.Intercept {
		seen = seen || hostCovers(e.Value, host)
	}
	if !seen {
		return false
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		if x.p.Request(host, 443, m, "/moat-explain").Verdict == policy.Allow {
			return false
		}
		for _, e := range x.p.Network.RequestAllow {
			f := strings.Fields(e.Value)
			if len(f) == 3 && (f[1] == m || f[1] == "*") && (f[0] == "*" || hostCovers(f[0], host)) {
				return false
			}
		}
	}
	return true
}

// hostCovers matches a host rule as written ("example.com",
// "*.example.com", with an optional port) against a host.
func hostCovers(rule, host string) bool {
	rule = strings.ToLower(rule)
	if i := strings.LastIndexByte(rule, ':'); i >= 0 && !strings.Contains(rule, "]") {
		rule = rule[:i]
	}
	if s, ok := strings.CutPrefix(rule, "*."); ok {
		return strings.HasSuffix(host, "."+s)
	}
	return rule == "*" || rule == host
}

func (x *explainer) limitNote(host string) string {
	for _, l := range x.p.Limits(host, 443) {
		if l.BytesOut > 0 {
			if f := strings.Fields(l.Entry); len(f) == 3 {
				return " (network.limits caps it at " + f[1] + " out a session)"
			}
		}
	}
	return ""
}

// FormatText writes the report as text: the verdict, each leg with its
// items, and how to break the trifecta.
func (t Trifecta) FormatText() string {
	var b strings.Builder
	if t.Lethal {
		b.WriteString("lethal trifecta: yes: one session can hold private data, take in untrusted input and send data out\n")
	} else {
		var missing []string
		for _, l := range []Leg{t.PrivateData, t.UntrustedInput, t.WayOut} {
			if !l.Present {
				missing = append(missing, l.Name)
			}
		}
		fmt.Fprintf(&b, "lethal trifecta: no: no session gets %s\n", strings.Join(missing, " or "))
	}
	for _, l := range []Leg{t.PrivateData, t.UntrustedInput, t.WayOut} {
		yes := "no"
		if l.Present {
			yes = "yes"
		}
		fmt.Fprintf(&b, "%s: %s\n", l.Name, yes)
		for _, it := range l.Items {
			b.WriteString("  - " + it.What)
			if it.Rule != "" {
				b.WriteString(" [" + it.Rule + "]")
			}
			b.WriteString("\n    fix: " + it.Fix + "\n")
		}
	}
	if t.Lethal {
		legs := map[string]Leg{LegPrivateData: t.PrivateData, LegUntrustedInput: t.UntrustedInput, LegWayOut: t.WayOut}
		l := legs[t.Break[0]]
		fmt.Fprintf(&b, "to break it, take away one leg; the shortest is %s (%d %s)\n", l.Name, len(l.Items), plural(len(l.Items), "item"))
	}
	return b.String()
}

func plural(n int, w string) string {
	if n == 1 {
		return w
	}
	return w + "s"
}
