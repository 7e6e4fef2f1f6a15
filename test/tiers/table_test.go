package tiers_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tcase is one behaviour every tier must show: a script run under the
// policy, and a check of what it printed and how it ended.
type tcase struct {
	name   string
	policy string // moat.yaml after "version: 1"; %[1]s is the test server's port
	script string
	signal syscall.Signal // sent to moat once the script prints "ready"
	check  func(t *testing.T, tr tier, b *box, r result)
}

func want(t *testing.T, r result, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%v", s, r)
		}
	}
}

func wantNot(t *testing.T, r result, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output has %q:\n%v", s, r)
		}
	}
}

func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d:\n%v", r.code, code, r)
	}
}

const basePolicy = `filesystem:
  write: ["."]
  deny_read: ["secret.env"]
network:
  allow: ["localhost:%[1]s"]
  allow_private: ["127.0.0.1"]
`

var cases = []tcase{
	{
		name:   "identity",
		policy: basePolicy,
		script: `id -u; id -g; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			wantCode(t, r, 0)
			want(t, r, "1000\n1000\n", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "Seccomp:\t2")
			if !tr.gvisor { // gVisor's /proc/self/status has no NoNewPrivs line
				want(t, r, "NoNewPrivs:\t1")
			}
		},
	},
	{
		name:   "masked-reads",
		policy: basePolicy,
		script: `cat readme.txt; cat secret.env; echo "secret[$(cat secret.env 2>/dev/null)]"; head -c 64 /etc/shadow 2>&1 | grep -c : ; echo "env[$SECRET_TOKEN]"
tr '\0' '\n' < /proc/1/environ 2>/dev/null | grep -c . || echo init-environ-hidden`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			want(t, r, "readable", "secret[]", "env[]")
			// moat's init is not dumpable: the agent cannot read its
			// memory or environment. gVisor's /proc does not check
			// that for environ; the init's holds only the agent's own
			// environment and policy (the canary, in moat's, is not).
			if !tr.gvisor {
				want(t, r, "init-environ-hidden")
			}
			wantNot(t, r, canary, "root:")
		},
	},
	{
		name:   "writes",
		policy: basePolicy,
		script: `echo made > made.txt && echo ws-ok
echo x > /usr/moat-x 2>/dev/null || echo usr-refused
echo x >> /etc/passwd 2>/dev/null || echo etc-refused
echo x > moat.yaml 2>/dev/null || echo policy-refused
echo x > /tmp/t && echo tmp-ok
echo x > /.moat/run/x 2>/dev/null || echo run-refused
rm -f /.moat/run/egress.sock 2>/dev/null; if [ -S /.moat/run/egress.sock ] || [ ! -d /.moat ]; then echo socket-intact; fi
echo x > /.moat/moat 2>/dev/null || echo moat-refused`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			wantCode(t, r, 0)
			want(t, r, "ws-ok", "usr-refused", "etc-refused", "policy-refused", "tmp-ok", "run-refused", "socket-intact", "moat-refused")
			got, err := os.ReadFile(filepath.Join(b.ws, "made.txt"))
			if err != nil || string(got) != "made\n" {
				t.Errorf("the workspace write did not reach the host: %q, %v", got, err)
			}
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(b.ws, "made.txt"), &st) == nil && st.Uid != 1000 {
				t.Errorf("the file the agent made belongs to host uid %d, want the workspace owner 1000", st.Uid)
			}
			if _, err := os.Stat("/usr/moat-x"); err == nil {
				os.Remove("/usr/moat-x")
				t.Error("the agent wrote /usr/moat-x on the host")
			}
		},
	},
	{
		name:   "network",
		policy: basePolicy,
		script: `curl -sS -m 20 --noproxy '' http://localhost:%[1]s/ ; echo
curl -sS -m 5 --noproxy '*' http://127.0.0.1:%[1]s/ >/dev/null 2>&1 || echo direct-refused
curl -sS -m 20 -o /dev/null -w 'refused-domain %%{http_code}\n' --noproxy '' http://example.com/ 2>/dev/null || echo refused-domain-failed`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			want(t, r, "hello from the allowed server", "direct-refused")
			if !strings.Contains(r.stdout, "refused-domain 403") && !strings.Contains(r.stdout, "refused-domain-failed") {
				t.Errorf("example.com was not refused:\n%v", r)
			}
			audit, _ := os.ReadFile(b.audit)
			if !strings.Contains(string(audit), `"host":"example.com"`) {
				t.Errorf("the audit log has no refusal of example.com:\n%s", audit)
			}
		},
	},
	{
		name:   "no-unix-sockets",
		policy: basePolicy,
		script: `python3 -c '
import socket, os
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); print("unix-allowed")
except OSError as e:
    print("unix-refused", e.errno)
for p in ["/.moat/run/egress.sock", "/var/run/docker.sock", "/run/systemd/private"]:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(p); print("connected", p)
    except OSError as e:
        pass
'`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			want(t, r, "unix-refused 1")
			wantNot(t, r, "unix-allowed", "connected")
		},
	},
	{
		name:   "memory-limit",
		policy: basePolicy + "resources:\n  memory: 64m\n",
		script: `python3 -c 'b = bytearray(256 << 20); print("allocated")'; echo "status $?"`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			if strings.Contains(r.stdout, "allocated") {
				t.Errorf("256 MiB allocated under a 64 MiB limit:\n%v", r)
			}
		},
	},
	{
		name:   "pids-limit",
		policy: basePolicy + "resources:\n  pids: 24\n",
		script: `python3 -c '
import os, time
pids = []
for i in range(60):
    try:
        p = os.fork()
    except OSError as e:
        print("fork-refused", e.errno)
        break
    if p == 0:
        time.sleep(5)
        os._exit(0)
    pids.append(p)
print("started", len(pids))
for p in pids:
    os.kill(p, 9)
print("done")
'`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			if tr.gvisor && !strings.Contains(r.stdout, "done") {
				t.Log("under gVisor the host's pids cgroup holds gVisor's own threads: the spec must come from Generate with GVisor set (headroom, and the limit as the agent's RLIMIT_NPROC)")
			}
			want(t, r, "fork-refused 11", "done")
			if strings.Contains(r.stdout, "started 60") {
				t.Errorf("60 processes started under a limit of 24:\n%v", r)
			}
		},
	},
	{
		name:   "exit-codes",
		policy: basePolicy,
		script: `exit 7`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			wantCode(t, r, 7)
		},
	},
	{
		name:   "killed-by-signal",
		policy: basePolicy,
		script: `kill -KILL $$`,
		check: func(t *testing.T, tr tier, b *box, r result) {
			wantCode(t, r, 137)
		},
	},
	{
		name:   "signals-forwarded",
		policy: basePolicy,
		script: `trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done`,
		signal: syscall.SIGTERM,
		check: func(t *testing.T, tr tier, b *box, r result) {
			want(t, r, "got-term")
			wantCode(t, r, 3)
		},
	},
}

// TestTiers runs every case on every tier present.
func TestTiers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello from the allowed server")
	}))
	t.Cleanup(srv.Close) // after the parallel subtests
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tr := range tiers(t) {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					b := newBox(t, fmt.Sprintf(c.policy, port))
					script := c.script
					if strings.Contains(script, "%[1]s") {
						script = fmt.Sprintf(script, port)
					}
					r := b.run(tr, c.signal, script)
					c.check(t, tr, b, r)
				})
			}
		})
	}
}
