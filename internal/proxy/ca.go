package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// CA is moat's own certificate authority for TLS termination. Its key
// lives in moat's state directory, outside every sandbox; only its
// certificate is handed to agents, in a trust bundle.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// File names inside a CA directory.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// Validity of what the CA signs. Leaves are short-lived: a leaked one is
// worth a day at most.
const (
	caValidity   = 5 * 365 * 24 * time.Hour
	leafValidity = 24 * time.Hour
	leafRenew    = time.Hour // re-mint a cached leaf this long before it expires
	maxLeaves    = 1024
)

// DefaultCADir is $XDG_STATE_HOME/moat/ca, or ~/.local/state/moat/ca.
func DefaultCADir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "moat", "ca")
	}
	return filepath.Join(getenv("HOME"), ".local", "state", "moat", "ca")
}

// InitCA creates a CA in dir (made 0700; the key 0600) unless one is
// there, and returns it with whether it was created.
func InitCA(dir string) (*CA, bool, error) {
	ca, err := LoadCA(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("ca: generate key: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "moat local CA (" + host + ")", Organization: []string{"moat"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, fmt.Errorf("ca: create certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	// The key first, exclusively: two moats starting at once must not
	// leave a certificate without its key.
	kf, err := os.OpenFile(filepath.Join(dir, caKeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("ca: %w", err)
	}
	if err := pem.Encode(kf, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}); err != nil {
		kf.Close()
		return nil, false, fmt.Errorf("ca: write key: %w", err)
	}
	if err := kf.Close(); err != nil {
		return nil, false, fmt.Errorf("ca: write key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, caCertFile), certPEM, 0o644); err != nil {
		return nil, false, fmt.Errorf("ca: write certificate: %w", err)
	}
	ca, err = LoadCA(dir)
	return ca, err == nil, err
}

// LoadCA reads the CA in dir. A key readable by others is refused.
func LoadCA(dir string) (*CA, error) {
	keyPath := filepath.Join(dir, caKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w; create one with 'moat ca init'", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ca: %s is mode %v; the CA key must be readable by its owner only (chmod 600)", keyPath, fi.Mode().Perm())
	}
	kpem, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cpem, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	kb, _ := pem.Decode(kpem)
	cb, _ := pem.Decode(cpem)
	if kb == nil || cb == nil {
		return nil, fmt.Errorf("ca: %s: not PEM", dir)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: key: %w", err)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("ca: %s: the certificate does not match the key", dir)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("ca: the certificate expired on %s; remove %s and run 'moat ca init'", cert.NotAfter.Format(time.DateOnly), dir)
	}
	return &CA{Cert: cert, CertPEM: cpem, key: key, leaves: make(map[string]*tls.Certificate)}, nil
}

// Leaf returns a certificate for host signed by the CA, from the cache
// while it has more than an hour left.
func (ca *CA) Leaf(host string) (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leaves[host]; ok && time.Until(c.Leaf.NotAfter) > leafRenew {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := parseIP(host); ip != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign %s: %w", host, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	c := &tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}
	if len(ca.leaves) >= maxLeaves {
		clear(ca.leaves) // hosts are few; a full cache is simply started over
	}
	ca.leaves[host] = c
	return c, nil
}

// Bundle returns the system's roots followed by the CA's certificate: the
// file an agent's SSL_CERT_FILE (and the like) names, so it trusts both
// the servers it reaches directly and moat's terminating proxy.
func (ca *CA) Bundle() []byte {
	var b []byte
	for _, f := range []string{
		"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu
		"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
		"/etc/ssl/cert.pem",                  // Alpine, macOS
	} {
		if data, err := os.ReadFile(f); err == nil {
			b = append(b, data...)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				b = append(b, '\n')
			}
			break
		}
	}
	return append(b, ca.CertPEM...)
}

// TrustEnv lists the variables that point common clients at a bundle.
var TrustEnv = []string{
	"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
	"GIT_SSL_CAINFO", "AWS_CA_BUNDLE", "PIP_CERT", "CARGO_HTTP_CAINFO", "DENO_CERT",
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func parseIP(h string) net.IP {
	return net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
}
