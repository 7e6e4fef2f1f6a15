package integration

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Set once by TestMain, read-only afterwards.
var (
	inCI      bool   // CI=true: a missing component fails instead of skipping
	workDir   string // TestMain's temporary directory
	moatBin   string // the moat binary built from this tree
	caFile    string // PEM of the test CA, for curl, git, python and node
	caPool    *x509.CertPool
	leafCert  tls.Certificate // for localhost, git.test, allowed.test, 127.0.0.1
	leafFiles [2]string       // cert and key PEM files of leafCert, for the sink process
	hostsFile string          // the /etc/hosts the proxy sees
	hostsOK   bool            // the proxy can run with hostsFile as its /etc/hosts
	hostsWhy  string          // why not, when !hostsOK
	nofile    uint64          // RLIMIT_NOFILE soft limit after raising it (inherited by children)
)

// testHosts is the proxy's /etc/hosts: the names the tests resolve through it.
const testHosts = `127.0.0.1 localhost
127.0.0.1 git.test allowed.test loop.test
169.254.169.254 meta.test
::ffff:127.0.0.1 mapped.test
10.255.255.1 denied.test
`

func TestMain(m *testing.M) {
	if spec := os.Getenv(sinkEnv); spec != "" {
		runSink(spec) // a child process: see tunnels_test.go
		return
	}
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	inCI = os.Getenv("CI") == "true"
	dir, err := os.MkdirTemp("", "moat-integration-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	workDir = dir

	raiseNofile()
	if err := buildMoat(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	if err := makeCA(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: test CA: %v\n", err)
		return 1
	}
	hostsFile = filepath.Join(workDir, "hosts")
	if err := os.WriteFile(hostsFile, []byte(testHosts), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n", err)
		return 1
	}
	hostsOK, hostsWhy = probeHostsNamespace()
	if !hostsOK {
		fmt.Fprintf(os.Stderr, "integration: the proxy runs without a private /etc/hosts (%s); tests that need test names skip\n", hostsWhy)
	}
	return m.Run()
}

// raiseNofile lifts RLIMIT_NOFILE as far as the process may (65536 when it
// holds CAP_SYS_RESOURCE, else to the hard limit). Because it is set
// explicitly, os/exec does not restore the old soft limit in children: the
// proxy and the sink inherit it.
func raiseNofile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	want := syscall.Rlimit{Cur: 65536, Max: 65536}
	if lim.Max > want.Max {
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	nofile = lim.Cur
}

// moduleRoot walks up from the package directory to go.mod.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return "", errors.New("no go.mod above the test directory")
		}
		d = up
	}
}

func buildMoat() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	moatBin = filepath.Join(workDir, "moat")
	cmd := exec.Command("go", "build", "-o", moatBin, "./cmd/moat")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/moat in %s: %v\n%s", root, err, out)
	}
	// The contract under test is `moat proxy`; say so plainly if it is missing.
	out, _ := exec.Command(moatBin, "proxy", "--help").CombinedOutput()
	if bytes.Contains(out, []byte("unknown command")) {
		return fmt.Errorf("the moat binary has no proxy command yet (moat proxy --help: %s)", bytes.TrimSpace(out))
	}
	return nil
}

// makeCA creates an ECDSA P-256 CA and one leaf it signs.
func makeCA() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moat integration test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "git.test", "allowed.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		return err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if leafCert, err = tls.X509KeyPair(leafPEM, keyPEM); err != nil {
		return err
	}
	caPool = x509.NewCertPool()
	caPool.AddCert(ca)
	caFile = filepath.Join(workDir, "ca.pem")
	leafFiles = [2]string{filepath.Join(workDir, "leaf.pem"), filepath.Join(workDir, "leaf-key.pem")}
	for f, b := range map[string][]byte{caFile: caPEM, leafFiles[0]: leafPEM, leafFiles[1]: keyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// probeHostsNamespace checks that the proxy can be given its own /etc/hosts
// in a private mount namespace (root and unshare needed).
func probeHostsNamespace() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root: cannot bind-mount a private /etc/hosts"
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return false, "unshare not found in PATH"
	}
	out, err := exec.Command("unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /etc/hosts && cat /etc/hosts`, hostsFile).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("mapped.test")) {
		return false, fmt.Sprintf("unshare --mount + mount --bind failed: %v: %s", err, bytes.TrimSpace(out))
	}
	return true, ""
}

// missing skips the test outside CI and fails it under CI=true.
func missing(t testing.TB, why string) {
	t.Helper()
	if inCI {
		t.Fatalf("CI=true and a required component is missing: %s", why)
	}
	t.Skipf("skipped: %s (under CI=true this fails)", why)
}

// need returns the path of tool, or skips/fails the test (see missing).
func need(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		missing(t, tool+" not found in PATH")
	}
	return p
}

// needHosts is for tests whose names (git.test, meta.test …) only the
// proxy's private /etc/hosts resolves.
func needHosts(t testing.TB) {
	t.Helper()
	if !hostsOK {
		missing(t, "the proxy cannot get a private /etc/hosts: "+hostsWhy)
	}
}

// cleanEnv is the environment for client tools: no proxy variables from the
// machine running the tests, a private HOME, no system git config.
func cleanEnv(t testing.TB) []string {
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "home", "node_use_env_proxy",
			"ssl_cert_file", "curl_ca_bundle", "requests_ca_bundle", "node_extra_ca_certs":
			continue
		}
		if strings.HasPrefix(k, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
}
