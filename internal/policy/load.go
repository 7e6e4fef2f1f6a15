package policy

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// DefaultManagedPath is where the managed (organisation) policy is read
// from unless the command line names another file.
const DefaultManagedPath = "/etc/moat/policy.yaml"

// LoadOptions names the files Load stacks. Paths are used as given and
// appear so in errors and origins; an empty path means no such layer. The
// command line fills in the default paths; Load does not.
type LoadOptions struct {
	Managed string // the organisation's policy; the only layer that may lock keys
	Project string // the project's moat.yaml
	User    string // the user's own policy

	// Profile names the built-in profile to stack on, as --profile does.
	// It beats every file's "profile" key, but is an error if the managed
	// layer locks "profile". Empty: the highest layer's profile key, or
	// "default".
	Profile string

	// A missing file is skipped, unless its layer is required (the user
	// named the file). Other read errors always fail.
	ManagedRequired, ProjectRequired, UserRequired bool

	// ProjectFound says moat found the project file by itself rather than
	// the user naming it: it may then not set credentials, audit.file,
	// tls.ca or filesystem.write (see checkFoundProject).
	ProjectFound bool
}

// Load reads the policy files, stacks them on their profile and returns
// the effective policy: profile (bottom) < user < project < managed. Lists
// are merged (union, first occurrence kept, each entry with its origin;
// process.env by variable name, the highest layer's value winning);
// scalars take the highest layer that sets them. The managed layer's lock
// list forbids lower layers (and a profile they pick) to set the locked
// scalars or add to the locked lists. Every problem in every file is
// reported, as an Errors. The result is immutable and safe for concurrent
// use.
func Load(opts LoadOptions) (*Policy, error) {
	var errs Errors
	var layers []*Policy
	for _, l := range []struct {
		path, layer string
		required    bool
	}{
		{opts.User, LayerUser, opts.UserRequired},
		{opts.Project, LayerProject, opts.ProjectRequired},
		{opts.Managed, LayerManaged, opts.ManagedRequired},
	} {
		if l.path == "" {
			continue
		}
		p, err := loadFile(l.path, l.layer, l.required)
		if err != nil {
			errs = append(errs, asErrors(err)...)
			continue
		}
		if p != nil && l.layer == LayerProject && opts.ProjectFound {
			if es := checkFoundProject(p); len(es) > 0 {
				errs = append(errs, es...)
				continue
			}
		}
		if p != nil {
			layers = append(layers, p)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return stack(layers, opts.Profile)
}

// LoadFile reads one file as the project layer, stacked on the profile it
// names (or the default profile), with no managed or user layer.
func LoadFile(path string) (*Policy, error) {
	return Load(LoadOptions{Project: path, ProjectRequired: true})
}

func asErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Msg: err.Error()}}
}

// loadFile reads and parses one file; a missing file that is not required
// gives nil, nil.
func loadFile(path, layer string, required bool) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !required {
			return nil, nil
		}
		return nil, &Error{File: path, Msg: "cannot read: " + pathErrText(err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, &Error{File: path, Msg: "cannot read: is a directory"}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + pathErrText(err)}
	}
	return Parse(path, data, layer)
}

// pathErrText is an error's text without the path, which the Error has.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return "no such file"
		}
		return pe.Err.Error()
	}
	return err.Error()
}

// cite formats an origin for messages: "/etc/moat/policy.yaml:3 (managed)",
// "profile:dev", "--profile (flag)".
func cite(o Origin) string {
	s := o.File
	if o.Line > 0 {
		s += ":" + strconv.Itoa(o.Line)
	}
	if o.Layer != "" && o.Layer != o.File {
		s += " (" + o.Layer + ")"
	}
	return s
}

// errAt makes an Error located at an origin; a flag has no file or line.
func errAt(o Origin, key, msg string) *Error {
	if o.Layer == LayerFlag {
		return &Error{Key: o.File, Msg: msg}
	}
	return &Error{File: o.File, Line: o.Line, Key: key, Msg: msg}
}

// stack picks the profile and merges the layers (lowest first) on it.
func stack(layers []*Policy, flagProfile string) (*Policy, error) {
	locks := managedLocks(layers)
	name, chooser := DefaultProfile, Origin{}
	if flagProfile != "" {
		chooser = Origin{Layer: LayerFlag, File: "--profile", Key: "profile"}
		if l, ok := lockOn(locks, "profile"); ok {
			return nil, Errors{errAt(chooser, "profile", "locked by "+cite(l.Origin)+"; the flag cannot set it")}
		}
		name = flagProfile
	} else {
		for i := len(layers) - 1; i >= 0; i-- {
			if layers[i].Profile != "" {
				name, chooser = layers[i].Profile, layers[i].ProfileOrigin
				break
			}
		}
	}
	base, err := Builtin(name)
	if err != nil {
		return nil, Errors{errAt(chooser, "profile", err.Error())}
	}
	return merge(base, chooser, layers)
}

// Merge stacks layers (lowest precedence first, each from Parse) on base
// (from Builtin), as Load does; the layers' locks are checked. It is for
// programs that read policy files themselves.
func Merge(base *Policy, layers ...*Policy) (*Policy, error) {
	var chooser Origin
	for i := len(layers) - 1; i >= 0; i-- {
		if layers[i].Profile != "" {
			if layers[i].Profile == base.Profile {
				chooser = layers[i].ProfileOrigin
			}
			break
		}
	}
	return merge(base, chooser, layers)
}

func managedLocks(layers []*Policy) []Entry {
	var locks []Entry
	for _, l := range layers {
		if len(l.Locks) > 0 && l.Locks[0].Origin.Layer == LayerManaged {
			locks = append(locks, l.Locks...)
		}
	}
	return locks
}

// lockOn returns the lock that covers a key path: the path itself or its
// section.
func lockOn(locks []Entry, path string) (Entry, bool) {
	section, _, _ := strings.Cut(path, ".")
	for _, l := range locks {
		if l.Value == path || l.Value == section {
			return l, true
		}
	}
	return Entry{}, false
}

func merge(base *Policy, chooser Origin, layers []*Policy) (*Policy, error) {
	var errs Errors
	locks := managedLocks(layers)

	// Locks: lower layers may not set locked scalars or widen locked lists.
	for _, l := range layers {
		for _, k := range l.setKeys() {
			if k.origin.Layer == LayerManaged || k.list && isTightening(k.path) {
				continue
			}
			lk, ok := lockOn(locks, k.path)
			if !ok {
				continue
			}
			what := "set it"
			if k.list {
				what = "widen it"
			}
			errs = append(errs, errAt(k.origin, k.path, "locked by "+cite(lk.Origin)+"; this layer cannot "+what))
		}
	}
	// A profile picked below the managed layer may not change a locked key
	// from the default profile's value, unless the managed layer sets it.
	if chooser.Layer != "" && chooser.Layer != LayerManaged && base.Profile != DefaultProfile {
		managedSets := map[string]bool{}
		for _, l := range layers {
			for _, k := range l.setKeys() {
				if k.origin.Layer == LayerManaged {
					managedSets[k.path] = true
				}
			}
		}
		if def, err := Builtin(DefaultProfile); err == nil {
			for _, k := range base.setKeys() {
				lk, ok := lockOn(locks, k.path)
				if !ok || k.list && isTightening(k.path) || !k.list && managedSets[k.path] || !differs(base, def, k.path) {
					continue
				}
				what := "change"
				if k.list {
					what = "widen"
				}
				errs = append(errs, errAt(chooser, "profile", quote(base.Profile)+": "+k.path+" is locked by "+
					cite(lk.Origin)+"; the "+base.Profile+" profile would "+what+" it"))
			}
		}
	}

	// Highest precedence first.
	order := make([]*Policy, 0, len(layers)+1)
	for i := len(layers) - 1; i >= 0; i-- {
		order = append(order, layers[i])
	}
	order = append(order, base)

	out := &Policy{Version: 1, Profile: base.Profile, ProfileOrigin: chooser, Locks: locks}
	for _, l := range order {
		if out.Network.Mode == "" && l.Network.Mode != "" {
			out.Network.Mode, out.Network.ModeOrigin = l.Network.Mode, l.Network.ModeOrigin
		}
	}
	for _, f := range schema {
		for _, l := range order {
			switch {
			case f.str != nil:
				if s := f.str(out); !s.isSet() {
					*s = *f.str(l)
				}
			case f.num != nil:
				if n := f.num(out); !n.Set {
					*n = *f.num(l)
				}
			case f.entries != nil:
				*f.entries(out) = appendEntries(*f.entries(out), *f.entries(l))
			case f.hosts != nil:
				*f.hosts(out) = appendHosts(*f.hosts(out), *f.hosts(l))
			}
		}
	}
	out.Network.Endpoints = endpointsByName(out.Network.Endpoints) // one a name, the highest layer's
	// process.env: one entry a variable, the highest layer's.
	seenEnv := map[string]bool{}
	for _, l := range order {
		for _, e := range l.Process.Env {
			name, _, _ := strings.Cut(e.Value, "=")
			if !seenEnv[name] {
				seenEnv[name] = true
				out.Process.Env = append(out.Process.Env, e)
			}
		}
	}
	// Credentials: a name may be defined once across all layers.
	defined := map[string]Origin{}
	for i := len(order) - 1; i >= 0; i-- {
		for _, c := range order[i].Credentials {
			if first, dup := defined[c.Name]; dup {
				errs = append(errs, errAt(c.Origin, c.Origin.Key+".name", quote(c.Name)+": already defined at "+
					cite(first)+"; give this credential another name"))
				continue
			}
			defined[c.Name] = c.Origin
		}
	}
	for _, l := range order {
		for _, c := range l.Credentials {
			if defined[c.Name] == c.Origin {
				out.Credentials = append(out.Credentials, c)
			}
		}
	}
	for _, l := range order[:len(order)-1] {
		out.Layers = append(out.Layers, l.Layers...)
	}
	out.Layers = append(out.Layers, Origin{Layer: "profile:" + base.Profile, File: "profile:" + base.Profile})

	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// differs reports whether p's value at path differs from def's: for a
// list, whether p's has an entry def's has not.
func differs(p, def *Policy, path string) bool {
	for _, f := range schema {
		if f.path != path {
			continue
		}
		switch {
		case f.str != nil:
			return f.str(p).Value != f.str(def).Value
		case f.num != nil:
			return f.num(p).Value != f.num(def).Value || f.num(p).Set != f.num(def).Set
		case f.entries != nil:
			have := map[string]bool{}
			for _, e := range *f.entries(def) {
				have[e.Value] = true
			}
			for _, e := range *f.entries(p) {
				if !have[e.Value] {
					return true
				}
			}
		case f.hosts != nil:
			have := map[string]bool{}
			for _, r := range *f.hosts(def) {
				have[r.String()] = true
			}
			for _, r := range *f.hosts(p) {
				if !have[r.String()] {
					return true
				}
			}
		case path == "network.mode":
			return p.Network.Mode != def.Network.Mode
		}
	}
	return false
}

func appendEntries(dst, src []Entry) []Entry {
	seen := make(map[string]bool, len(dst)+len(src))
	for _, e := range dst {
		seen[e.Value] = true
	}
	for _, e := range src {
		if !seen[e.Value] {
			seen[e.Value] = true
			dst = append(dst, e)
		}
	}
	return dst
}

func appendHosts(dst, src []HostRule) []HostRule {
	seen := make(map[string]bool, len(dst)+len(src))
	for _, r := range dst {
		seen[r.String()] = true
	}
	for _, r := range src {
		if s := r.String(); !seen[s] {
			seen[s] = true
			dst = append(dst, r)
		}
	}
	return dst
}
