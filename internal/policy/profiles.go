package policy

import (
	"embed"
	"fmt"
)

//go:embed profiles/*.yaml
var profileFiles embed.FS

// DefaultProfile is the profile a policy stacks on when no layer or flag
// names one.
const DefaultProfile = "default"

var profileNames = []string{"default", "strict", "dev", "claude"}

// ProfileNames returns the names of the built-in profiles.
func ProfileNames() []string { return append([]string(nil), profileNames...) }

// Builtin returns a built-in profile as a layer ("profile:NAME") that Merge
// can stack others on:
//
//   - default: no egress but what the policy names; the workspace writable;
//     the usual credential stores masked; /tmp a 1 GiB tmpfs; 4 GiB of
//     memory and 1024 processes; unlisted tool use asks; the native tier.
//   - strict: default, plus .env, .env.*, *.pem and *.key masked in the
//     workspace; 2 GiB and 256 processes; unlisted tool use denied;
//     Landlock and seccomp required.
//   - dev: default, plus the common package registries, GitHub and the
//     Anthropic API in network.allow.
//   - claude: default, set up for Claude Code: a reverse endpoint for the
//     Anthropic API on 127.0.0.1:8080 with the anthropic credential (the
//     key stays outside), Claude Code's state in a private directory of
//     moat's, the user's own ~/.claude and ~/.claude.json masked, and
//     non-essential traffic switched off.
//
// Each call returns a new Policy. The profiles are YAML files parsed like
// any other, so their entries cite "profile:NAME network.allow[0]".
func Builtin(name string) (*Policy, error) {
	known := false
	for _, n := range profileNames {
		known = known || n == name
	}
	if !known {
		return nil, fmt.Errorf("%s: %s", quote(name), unknownChoice("profile", name, profileNames))
	}
	data, err := profileFiles.ReadFile("profiles/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	p, err := Parse("profile:"+name, data, "profile:"+name)
	if err != nil {
		return nil, err
	}
	p.Profile = name
	return p, nil
}
