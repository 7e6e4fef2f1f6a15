// Package integration runs the moat binary as a user does and drives it with
// real clients (curl, git, python3, node and Go) against real upstreams on
// 127.0.0.1: plain HTTP, TLS with a CA made at test time, and git smart HTTP.
// Every security test pairs an attack with a control that succeeds, and
// checks a signature only the defence leaves: the refusal, its audit line,
// and an upstream that never saw the connection.
//
// Under CI=true a missing tool (curl, git, python3, node, unshare) fails the
// test that needs it; elsewhere that test is skipped with the reason.
//
// The package has no non-test code; run it with `go test ./test/integration/`
// (-short skips the 10,000-tunnel test).
package integration
