package credentials

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Set once by TestMain, read-only afterwards.
var (
	workDir string // TestMain's temporary directory
	moatBin string // moat built from this tree

	// canary is the secret moat injects. It is unique to the run, so that
	// any occurrence in an output is a leak and nothing else.
	canary string

	upCAFile string          // PEM of the upstreams' CA: for --upstream-ca, never for the agent
	upCAPool *x509.CertPool  // the same, for Go clients that talk to upstreams directly
	upLeaf   tls.Certificate // localhost and 127.0.0.1, signed by the upstreams' CA
)

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	dir, err := os.MkdirTemp("", "moat-credentials-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "credentials: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	workDir = dir

	b := make([]byte, 12)
	rand.Read(b)
	canary = "sk-moat-canary-" + hex.EncodeToString(b)

	if err := buildMoat(); err != nil {
		fmt.Fprintf(os.Stderr, "credentials: %v\n", err)
		return 1
	}
	if err := makeUpstreamCA(); err != nil {
		fmt.Fprintf(os.Stderr, "credentials: upstream CA: %v\n", err)
		return 1
	}
	return m.Run()
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
	return nil
}

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

// makeUpstreamCA makes the CA that certifies the test's upstreams: the
// stand-in for the public roots that certify api.anthropic.com. moat is
// told to trust it with --upstream-ca; the agent never is, so an agent
// that completes a TLS handshake with the bundle alone was talking to moat.
func makeUpstreamCA() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moat credentials test upstream CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	upLeaf, err = tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return err
	}
	upCAPool = x509.NewCertPool()
	upCAPool.AddCert(ca)
	upCAFile = filepath.Join(workDir, "upstream-ca.pem")
	return os.WriteFile(upCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
}
