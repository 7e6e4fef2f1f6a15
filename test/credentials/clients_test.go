package credentials

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gitServer serves the bare repositories under root with git http-backend,
// and answers 401 to any request without the secret as a bearer token: a
// clone succeeds only if moat added it.
func gitServer(t *testing.T, root string) http.Handler {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	h := &cgi.Handler{
		Path: backend,
		Root: "/git",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+canary {
			w.Header().Set("WWW-Authenticate", `Bearer realm="moat-test"`)
			http.Error(w, "401 the secret is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// makeRepo creates root/name.git, a bare repository whose one commit holds
// README with content.
func makeRepo(t *testing.T, root, name, content string) {
	t.Helper()
	work := t.TempDir()
	env := append(os.Environ(), "HOME="+work, "GIT_CONFIG_NOSYSTEM=1")
	run := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "README"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	run(work, "init", "-q", "-b", "main")
	run(work, "add", "README")
	run(work, "-c", "user.name=moat", "-c", "user.email=moat@localhost", "commit", "-q", "-m", "content")
	run(root, "clone", "-q", "--bare", work, name+".git")
}

// TestTLSTerminationClients: real clients, trusting only the bundle that
// `moat ca bundle` wrote, reach an HTTPS server through moat's TLS
// termination; moat adds the credential there, and the agent never sees it.
//
// Attack: the server reflects the Authorization header it was sent, in its
// body and in a response header. Control: the server received the real
// secret; the git server refuses a clone without it. Signature: the
// reflection reaches the client as the placeholder, which only moat's
// re-masking writes; curl trusting the server's own CA instead of the
// bundle fails (the certificate is moat's), and the audit names the
// credential.
func TestTLSTerminationClients(t *testing.T) {
	root := t.TempDir()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	up := newUpstream(t, false, mux)
	api := up.At("localhost")
	m := startMoat(t, moatOpts{
		policy:     credPolicy([]string{api}, []string{api}, []string{api}),
		upstreamCA: true,
	})
	bundle := m.Bundle()
	placeholder := m.Placeholder("SVC_TOKEN")
	proxyURL := "http://" + m.Proxy

	// expectEcho checks the upstream's last request and what the client saw.
	expectEcho := func(t *testing.T, client, out string) {
		t.Helper()
		if got := up.Last(t).Header.Get("Authorization"); got != "Bearer "+canary {
			t.Errorf("%s: upstream got Authorization %q; want the injected secret", client, got)
		}
		if !strings.Contains(out, "authorization=Bearer "+placeholder+"\n") {
			t.Errorf("%s: the reflected Authorization in the body is not the placeholder:\n%s", client, out)
		}
		if !strings.Contains(strings.ToLower(out), strings.ToLower("X-Echo-Authorization: Bearer "+placeholder)) {
			t.Errorf("%s: the reflected Authorization header is not the placeholder:\n%s", client, out)
		}
	}

	t.Run("curl", func(t *testing.T) {
		need(t, "curl")
		env := m.AgentEnv()
		out, errOut, err := runClient(t, env, "", "curl", "-sS", "--fail-with-body", "-D", "-",
			"-x", proxyURL, "--cacert", bundle, "https://"+api+"/echo")
		if err != nil {
			t.Fatalf("curl through moat: %v\n%s%s", err, out, errOut)
		}
		expectEcho(t, "curl", out)
		m.WaitRecord(0, "curl's request", func(r record) bool {
			return r.Proto == "mitm" && r.Path == "/echo" && r.Credential == "svc" && r.Status == 200
		})

		// The certificate curl accepted is moat's: trusting the server's own
		// CA instead of the bundle, the handshake fails (curl exit 60).
		n := len(up.Seen())
		_, errOut, err = runClient(t, env, "", "curl", "-sS", "-x", proxyURL, "--cacert", upCAFile, "https://"+api+"/echo")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 60 {
			t.Errorf("curl trusting the upstream's CA through moat: %v (%s); want exit 60, a certificate moat made", err, errOut)
		}
		if len(up.Seen()) != n {
			t.Errorf("a request reached the upstream although the client refused moat's certificate")
		}
	})

	t.Run("git", func(t *testing.T) {
		need(t, "git")
		content := fmt.Sprintf("moat git content %d\n", time.Now().UnixNano())
		makeRepo(t, root, "repo", content)
		mux.Handle("/git/", gitServer(t, root))
		url := "https://" + api + "/git/repo.git"
		base := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=/bin/false"}

		// The control: straight to the server, trusting its CA, no secret: 401.
		dir := t.TempDir()
		_, errOut, err := runClient(t, m.AgentEnv(append(base, "GIT_SSL_CAINFO="+upCAFile)...), dir, "git", "clone", "-q", url, "direct")
		if err == nil || !strings.Contains(errOut, "401") && !strings.Contains(errOut, "Authentication failed") && !strings.Contains(errOut, "could not read Username") {
			t.Fatalf("git clone without moat: %v\n%s\nwant a refusal for the missing credential", err, errOut)
		}

		env := m.AgentEnv(append(base, "HTTPS_PROXY="+proxyURL, "GIT_SSL_CAINFO="+bundle)...)
		before := len(up.Seen())
		_, errOut, err = runClient(t, env, dir, "git", "clone", "-q", url, "clone")
		if err != nil {
			t.Fatalf("git clone through moat: %v\n%s", err, errOut)
		}
		got, err := os.ReadFile(filepath.Join(dir, "clone", "README"))
		if err != nil || string(got) != content {
			t.Fatalf("cloned README = %q, %v; want %q", got, err, content)
		}
		for _, r := range up.Seen()[before:] {
			if got := r.Header.Get("Authorization"); got != "Bearer "+canary {
				t.Errorf("git's %s %s reached the server with Authorization %q; want the injected secret", r.Method, r.URL.Path, got)
			}
		}
		rec := m.WaitRecord(0, "git's upload-pack", func(r record) bool {
			return r.Proto == "mitm" && strings.HasSuffix(r.Path, "/git-upload-pack") && r.Status == 200
		})
		if rec.Credential != "svc" {
			t.Errorf("audit record for git-upload-pack names credential %q; want svc", rec.Credential)
		}
		// git's own config and the clone hold no secret either.
		var files bytes.Buffer
		filepath.Walk(filepath.Join(dir, "clone", ".git"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && !strings.Contains(p, "/objects/") {
				b, _ := os.ReadFile(p)
				files.Write(b)
			}
			return nil
		})
		noCanary(t, "the clone's .git", files.String())
	})

	t.Run("python", func(t *testing.T) {
		need(t, "python3")
		script, err := filepath.Abs("testdata/urllib-client.py")
		if err != nil {
			t.Fatal(err)
		}
		env := m.AgentEnv()
		out, errOut, err := runClient(t, env, "", "python3", script, proxyURL, bundle, "https://"+api+"/echo")
		if err != nil {
			t.Fatalf("python3 urllib through moat: %v\n%s%s", err, out, errOut)
		}
		if !strings.HasPrefix(out, "status 200\n") {
			t.Errorf("python3 output:\n%s\nwant status 200", out)
		}
		// The agent sent its placeholder itself; moat put the secret in its place.
		if got := up.Last(t).Header.Values("Authorization"); len(got) != 1 {
			t.Errorf("upstream got Authorization %q; want one value", got)
		}
		expectEcho(t, "python3", out)
	})
}
