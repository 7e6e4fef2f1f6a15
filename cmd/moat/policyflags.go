package main

import (
	"flag"
	"os"
	"path/filepath"

	"github.com/moatsec/moat/internal/policy"
)

// policyFlags are the flags every command that enforces a policy shares.
type policyFlags struct {
	project, profile, managed, user string
	managedSet, userSet             bool
}

func (pf *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.project, "policy", "", "project policy `FILE` (default: ./moat.yaml if it exists)")
	fs.StringVar(&pf.profile, "profile", "", "built-in profile to stack the layers on: "+joinNames(policy.ProfileNames()))
	fs.Func("managed", "managed policy `FILE` (default "+policy.DefaultManagedPath+", or $MOAT_MANAGED_POLICY)", func(s string) error {
		pf.managed, pf.managedSet = s, true
		return nil
	})
	fs.Func("user-policy", "user policy `FILE` (default $XDG_CONFIG_HOME/moat/policy.yaml)", func(s string) error {
		pf.user, pf.userSet = s, true
		return nil
	})
}

// load stacks the layers the flags and the defaults name: the project
// file is --policy (which must exist) or ./moat.yaml if it exists; the
// managed file --managed, else $MOAT_MANAGED_POLICY (both must exist), else
// policy.DefaultManagedPath if it exists; the user file --user-policy (which
// must exist), else $XDG_CONFIG_HOME/moat/policy.yaml or
// ~/.config/moat/policy.yaml if it exists.
func (pf *policyFlags) load(e *env) (*policy.Policy, error) {
	o := policy.LoadOptions{Profile: pf.profile}
	o.Project, o.ProjectRequired = pf.project, pf.project != ""
	if o.Project == "" {
		if _, err := os.Stat("moat.yaml"); err == nil {
			o.Project, o.ProjectFound = "moat.yaml", true
		}
	}
	o.Managed, o.ManagedRequired = pf.managed, pf.managedSet
	if pf.managedSet && pf.managed == "" {
		// An empty path would silently drop the organisation's policy.
		return nil, &policy.Error{Key: "--managed", Msg: "empty path; name the managed policy file"}
	}
	if !pf.managedSet {
		o.Managed = policy.DefaultManagedPath
		if v := e.getenv("MOAT_MANAGED_POLICY"); v != "" {
			o.Managed, o.ManagedRequired = v, true
		}
	}
	o.User, o.UserRequired = pf.user, pf.userSet
	if !pf.userSet {
		o.User = defaultUserPolicy(e.getenv)
	}
	return policy.Load(o)
}

func defaultUserPolicy(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "moat", "policy.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "moat", "policy.yaml")
	}
	return ""
}

func joinNames(names []string) string {
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}
