package policy

// fieldDef describes one key of a policy for the code that treats keys
// alike: merging layers, checking locks, showing a policy. Exactly one of
// the accessors is set; network.mode, process.env and credentials, which
// need more, are handled by name.
type fieldDef struct {
	path    string
	str     func(*Policy) *String
	num     func(*Policy) *Int
	entries func(*Policy) *[]Entry
	hosts   func(*Policy) *[]HostRule
}

// schema lists the keys in the order the file format documents them.
var schema = []fieldDef{
	{path: "network.mode"},
	{path: "network.allow", hosts: func(p *Policy) *[]HostRule { return &p.Network.Allow }},
	{path: "network.deny", hosts: func(p *Policy) *[]HostRule { return &p.Network.Deny }},
	{path: "network.allow_private", hosts: func(p *Policy) *[]HostRule { return &p.Network.AllowPrivate }},
	{path: "network.request_allow", entries: func(p *Policy) *[]Entry { return &p.Network.RequestAllow }},
	{path: "network.request_deny", entries: func(p *Policy) *[]Entry { return &p.Network.RequestDeny }},
	{path: "network.limits", entries: func(p *Policy) *[]Entry { return &p.Network.Limits }},
	{path: "network.endpoints", entries: func(p *Policy) *[]Entry { return &p.Network.Endpoints }},
	{path: "filesystem.read", entries: func(p *Policy) *[]Entry { return &p.Filesystem.Read }},
	{path: "filesystem.deny_read", entries: func(p *Policy) *[]Entry { return &p.Filesystem.DenyRead }},
	{path: "filesystem.write", entries: func(p *Policy) *[]Entry { return &p.Filesystem.Write }},
	{path: "filesystem.deny_write", entries: func(p *Policy) *[]Entry { return &p.Filesystem.DenyWrite }},
	{path: "filesystem.tmpfs", entries: func(p *Policy) *[]Entry { return &p.Filesystem.Tmpfs }},
	{path: "filesystem.scan", str: func(p *Policy) *String { return &p.Filesystem.Scan }},
	{path: "filesystem.workspace", str: func(p *Policy) *String { return &p.Filesystem.Workspace }},
	{path: "filesystem.volumes", entries: func(p *Policy) *[]Entry { return &p.Filesystem.Volumes }},
	{path: "credentials"},
	{path: "tls.intercept", entries: func(p *Policy) *[]Entry { return &p.TLS.Intercept }},
	{path: "tls.ca", str: func(p *Policy) *String { return &p.TLS.CA }},
	{path: "tls.exclude", entries: func(p *Policy) *[]Entry { return &p.TLS.Exclude }},
	{path: "process.user", str: func(p *Policy) *String { return &p.Process.User }},
	{path: "process.env"},
	{path: "resources.memory", str: func(p *Policy) *String { return &p.Resources.Memory }},
	{path: "resources.cpus", str: func(p *Policy) *String { return &p.Resources.CPUs }},
	{path: "resources.pids", num: func(p *Policy) *Int { return &p.Resources.Pids }},
	{path: "permissions.allow", entries: func(p *Policy) *[]Entry { return &p.Permissions.Allow }},
	{path: "permissions.ask", entries: func(p *Policy) *[]Entry { return &p.Permissions.Ask }},
	{path: "permissions.deny", entries: func(p *Policy) *[]Entry { return &p.Permissions.Deny }},
	{path: "permissions.default_mode", str: func(p *Policy) *String { return &p.Permissions.DefaultMode }},
	{path: "permissions.severity", str: func(p *Policy) *String { return &p.Permissions.Severity }},
	{path: "audit.file", str: func(p *Policy) *String { return &p.Audit.File }},
	{path: "audit.max_size", str: func(p *Policy) *String { return &p.Audit.MaxSize }},
	{path: "audit.max_files", num: func(p *Policy) *Int { return &p.Audit.MaxFiles }},
	{path: "isolation.tier", str: func(p *Policy) *String { return &p.Isolation.Tier }},
	{path: "isolation.require", entries: func(p *Policy) *[]Entry { return &p.Isolation.Require }},
	{path: "isolation.runtime", str: func(p *Policy) *String { return &p.Isolation.Runtime }},
	{path: "isolation.image", str: func(p *Policy) *String { return &p.Isolation.Image }},
	{path: "isolation.hostname", str: func(p *Policy) *String { return &p.Isolation.Hostname }},
}

// isSet reports whether a layer set a String: every parsed value has an
// origin, whatever its value.
func (s String) isSet() bool { return s.Origin != (Origin{}) || s.Value != "" }

func isTightening(path string) bool {
	for _, p := range tighteningPaths {
		if p == path {
			return true
		}
	}
	return false
}

// setKey is a key a layer sets, and where.
type setKey struct {
	path   string
	origin Origin
	list   bool
}

// setKeys lists the keys a layer sets: scalars it gives a value, lists it
// adds at least one entry to (cited at the first).
func (p *Policy) setKeys() []setKey {
	var out []setKey
	if p.Profile != "" {
		out = append(out, setKey{"profile", p.ProfileOrigin, false})
	}
	for _, f := range schema {
		switch {
		case f.path == "network.mode":
			if p.Network.Mode != "" {
				out = append(out, setKey{f.path, p.Network.ModeOrigin, false})
			}
		case f.path == "credentials":
			if len(p.Credentials) > 0 {
				out = append(out, setKey{f.path, p.Credentials[0].Origin, true})
			}
		case f.path == "process.env":
			if len(p.Process.Env) > 0 {
				out = append(out, setKey{f.path, p.Process.Env[0].Origin, true})
			}
		case f.str != nil:
			if s := f.str(p); s.isSet() {
				out = append(out, setKey{f.path, s.Origin, false})
			}
		case f.num != nil:
			if n := f.num(p); n.Set {
				out = append(out, setKey{f.path, n.Origin, false})
			}
		case f.entries != nil:
			if l := *f.entries(p); len(l) > 0 {
				out = append(out, setKey{f.path, l[0].Origin, true})
			}
		case f.hosts != nil:
			if l := *f.hosts(p); len(l) > 0 {
				out = append(out, setKey{f.path, l[0].Origin, true})
			}
		}
	}
	return out
}
