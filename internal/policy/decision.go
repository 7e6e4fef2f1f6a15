package policy

import "fmt"

// Verdict is the outcome of a decision. The zero value denies, so a
// Decision that nobody filled in refuses.
type Verdict int

// The verdicts, from the most to the least restrictive.
const (
	Deny  Verdict = iota // refuse
	Ask                  // ask a person
	Allow                // go ahead
)

// String returns "deny", "ask" or "allow".
func (v Verdict) String() string {
	switch v {
	case Deny:
		return "deny"
	case Ask:
		return "ask"
	case Allow:
		return "allow"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Decision is what a policy says about one action. It is a plain value: no
// I/O happened to produce it and none is implied by it.
type Decision struct {
	Verdict Verdict
	// Rule names the entry that decided, as "FILE:LINE KEY"
	// ("moat.yaml:14 network.allow[2]", "profile:dev network.allow[0]"),
	// or a built-in reason's name when no entry did ("default-deny",
	// "private-address", "ip-literal").
	Rule string
	// Reason is one line a user (or an agent) can act on.
	Reason string
	// WouldDeny is set in report mode: Verdict is Allow, but enforce mode
	// would have refused for Rule and Reason.
	WouldDeny bool
}

// Allowed reports whether the action may go ahead (report mode included).
func (d Decision) Allowed() bool { return d.Verdict == Allow }
