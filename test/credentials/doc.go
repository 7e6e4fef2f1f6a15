// Package credentials holds end-to-end tests of moat's central credential
// pattern: the agent holds no secret, and the proxy outside its boundary adds
// the secret for the right destination only.
//
// The tests build the real moat binary and drive it as a user would: a
// policy file, `moat ca init` and `moat ca bundle`, `moat proxy` with
// --endpoint, --upstream-ca and --env-file, and real clients on the agent's
// side (the official @anthropic-ai/sdk under node, curl, git, python3's
// urllib). Upstreams are local TLS servers certified by a CA the tests make.
//
// Every test follows practice 6 of the style guide: an attack, a control
// that proves the same path works when it should, and a signature only the
// defence leaves (an upstream that counted zero requests, a re-masked echo,
// an audit record naming the rule). The secret is a canary unique to the
// run, and every output the tests can see is searched for it: moat's
// standard error, the audit file, the env file, the agent's environment and
// every client's standard output and error.
//
// Under CI=true a missing tool (curl, git, python3, node, npm) or a failed
// npm install fails the test that needs it; elsewhere it skips with the
// reason.
package credentials
