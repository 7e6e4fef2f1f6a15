package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// replySize is the body size of every upstream HTTP reply.
const replySize = 1024

// Endpoints are where the upstream listens, and how to trust its TLS server.
type Endpoints struct {
	HTTPAddr string         `json:"http"`
	TLSAddr  string         `json:"tls"`
	BulkAddr string         `json:"bulk"`
	CertDER  []byte         `json:"cert"` // the TLS server's self-signed certificate
	CertPool *x509.CertPool `json:"-"`    // trusts CertDER
}

// Upstream is the origin every workload talks to, listening on 127.0.0.1 only:
//   - HTTPAddr: plain HTTP/1.1; every path answers 200 with a 1 KiB body;
//   - TLSAddr: the same over TLS, with a self-signed certificate made at start
//     that CertPool trusts (for the CONNECT rows);
//   - BulkAddr: a raw TCP endpoint: the client sends an 8-byte big-endian
//     count N and the server answers with N bytes, repeatedly, until the
//     client closes. It serves bulk transfers and holds idle tunnels.
//
// Close stops all three and closes every connection they hold.
type Upstream struct {
	Endpoints

	httpSrv, tlsSrv *http.Server
	bulkLn          net.Listener

	mu    sync.Mutex
	bulk  map[net.Conn]struct{} // open bulk connections, closed by Close
	wg    sync.WaitGroup        // the three accept loops and the bulk handlers
	close sync.Once
}

// StartUpstream starts the three servers on free ports of 127.0.0.1.
func StartUpstream() (*Upstream, error) {
	cert, pool, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("make certificate: %w", err)
	}
	u := &Upstream{Endpoints: Endpoints{CertDER: cert.Certificate[0], CertPool: pool}, bulk: map[net.Conn]struct{}{}}

	body := make([]byte, replySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{strconv.Itoa(replySize)}
		w.Write(body)
	})
	newServer := func() *http.Server {
		return &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       5 * time.Minute,
			// HTTP/1.1 only: the rows compare HTTP/1.1 proxies.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			ErrorLog:     discardLogger(),
		}
	}

	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for http: %w", err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		return nil, fmt.Errorf("listen for tls: %w", err)
	}
	u.bulkLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		tlsLn.Close()
		return nil, fmt.Errorf("listen for bulk: %w", err)
	}
	u.HTTPAddr, u.TLSAddr, u.BulkAddr = httpLn.Addr().String(), tlsLn.Addr().String(), u.bulkLn.Addr().String()

	u.httpSrv, u.tlsSrv = newServer(), newServer()
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	u.wg.Add(3)
	go func() { defer u.wg.Done(); u.httpSrv.Serve(httpLn) }()
	go func() { defer u.wg.Done(); u.tlsSrv.Serve(tls.NewListener(tlsLn, tlsConf)) }()
	go func() { defer u.wg.Done(); u.serveBulk() }()
	return u, nil
}

// Close stops the servers and closes the connections they hold, hijacked
// tunnels' far ends included; it is safe to call more than once.
func (u *Upstream) Close() {
	u.close.Do(func() {
		u.httpSrv.Close()
		u.tlsSrv.Close()
		u.bulkLn.Close()
		u.mu.Lock()
		for c := range u.bulk {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
}

// BulkConns reports how many bulk connections are open.
func (u *Upstream) BulkConns() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bulk)
}

func (u *Upstream) serveBulk() {
	for {
		c, err := u.bulkLn.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		u.mu.Lock()
		u.bulk[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			serveBulkConn(c)
			u.mu.Lock()
			delete(u.bulk, c)
			u.mu.Unlock()
			c.Close()
		}()
	}
}

// bulkChunk is shared read-only by every bulk connection.
var bulkChunk = make([]byte, 256<<10)

func serveBulkConn(c net.Conn) {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		for n := int64(binary.BigEndian.Uint64(hdr[:])); n > 0; {
			chunk := bulkChunk
			if n < int64(len(chunk)) {
				chunk = chunk[:n]
			}
			w, err := c.Write(chunk)
			if err != nil {
				return
			}
			n -= int64(w)
		}
	}
}

// selfSignedCert makes an ECDSA P-256 certificate for 127.0.0.1 and localhost
// (P-256 keeps the handshake cost, which every proxy pays the same, small).
func selfSignedCert() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moat-bench upstream"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// upstreamArg, as loadgen's first argument, makes it serve the upstream for
// its parent: it prints the Endpoints as one JSON line on standard output and
// serves until standard input closes.
const upstreamArg = "serve-upstream"

func serveUpstream(stdin io.Reader, stdout io.Writer) error {
	u, err := StartUpstream()
	if err != nil {
		return err
	}
	defer u.Close()
	if err := json.NewEncoder(stdout).Encode(u.Endpoints); err != nil {
		return err
	}
	io.Copy(io.Discard, stdin) // until the parent closes it, or dies
	return nil
}

// UpstreamProcess is an Upstream served by a child process, so that the far
// ends of the idle tunnels do not count against the load generator's own
// RLIMIT_NOFILE: 10,000 tunnels need 10,000 descriptors on each side.
type UpstreamProcess struct {
	Endpoints
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// StartUpstreamProcess runs this executable with upstreamArg.
func StartUpstreamProcess() (*UpstreamProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, upstreamArg)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", exe, upstreamArg, err)
	}
	p := &UpstreamProcess{cmd: cmd, stdin: stdin}
	if err := json.NewDecoder(stdout).Decode(&p.Endpoints); err != nil {
		p.Close()
		return nil, fmt.Errorf("read the upstream's addresses: %w", err)
	}
	cert, err := x509.ParseCertificate(p.CertDER)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("parse the upstream's certificate: %w", err)
	}
	p.CertPool = x509.NewCertPool()
	p.CertPool.AddCert(cert)
	return p, nil
}

// Close stops the child: it exits when its standard input closes; it is
// killed if it has not within 5 s.
func (p *UpstreamProcess) Close() {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}
