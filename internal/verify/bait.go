package verify

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// hits records what reached the host's bait: each entry names the bait,
// what reached it and the probe that said who it was.
type hits struct {
	mu   sync.Mutex
	list []hit
}

type hit struct {
	bait, probe, detail string
}

func (h *hits) add(bait, probe, format string, a ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.list = append(h.list, hit{bait, probe, fmt.Sprintf(format, a...)})
}

func (h *hits) all() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hit(nil), h.list...)
}

// baits are the host's listeners the probes aim at. Nothing should reach
// any of them but the proxy's controls.
type baits struct {
	hits    hits
	closers []func()
	tcp     net.Listener // all addresses
	udp     net.PacketConn
	direct  net.Listener // HTTP, all addresses: never to be reached directly
	unix    net.Listener
	abs     net.Listener
	allowed net.Listener // HTTP on 127.0.0.1, allowed by name and address
	tls     net.Listener // TLS on 127.0.0.1, allowed by name and address
	private net.Listener // TCP on 127.0.0.1, allowed by name only
}

func (b *baits) close() {
	for _, c := range b.closers {
		c()
	}
}

func (b *baits) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("bait %s %s: %w", network, addr, err)
	}
	b.closers = append(b.closers, func() { ln.Close() })
	return ln, nil
}

// greet serves a raw bait: a greeting, then the probe's name.
func (b *baits) greet(name string, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "%s %s\n", BaitGreeting, name)
			probe, _ := bufio.NewReader(c).ReadString('\n')
			b.hits.add(name, strings.TrimSpace(probe), "the host's %s bait (%s) accepted a connection from %s", name, ln.Addr(), c.RemoteAddr())
		}()
	}
}

func startBaits(unixPath, abstract string) (*baits, error) {
	b := &baits{}
	var err error
	fail := func(e error) (*baits, error) { b.close(); return nil, e }
	if b.tcp, err = b.listen("tcp", ":0"); err != nil {
		return fail(err)
	}
	go b.greet("tcp", b.tcp)
	if b.unix, err = b.listen("unix", unixPath); err != nil {
		return fail(err)
	}
	go b.greet("unix", b.unix)
	if b.abs, err = b.listen("unix", "@"+abstract); err != nil {
		return fail(err)
	}
	go b.greet("abstract", b.abs)
	if b.private, err = b.listen("tcp4", "127.0.0.1:0"); err != nil {
		return fail(err)
	}
	go b.greet("private", b.private)

	b.udp, err = net.ListenPacket("udp", ":0")
	if err != nil {
		return fail(fmt.Errorf("bait udp: %w", err))
	}
	b.closers = append(b.closers, func() { b.udp.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := b.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			b.hits.add("udp", "udp", "the host's UDP bait (%s) got %d bytes from %s", b.udp.LocalAddr(), n, from)
			b.udp.WriteTo([]byte(BaitGreeting+" udp\n"), from)
		}
	}()

	if b.direct, err = b.listen("tcp", ":0"); err != nil {
		return fail(err)
	}
	serve(b, b.direct, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.add("http-direct", "proxy-bypass", "the host's HTTP bait (%s) got %s %s from %s", b.direct.Addr(), r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "%s http\n", BaitGreeting)
	}))
	if b.allowed, err = b.listen("tcp4", "127.0.0.1:0"); err != nil {
		return fail(err)
	}
	serve(b, b.allowed, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch v := r.Header.Get("X-Moat-Verify"); v {
		case "placeholder":
			b.hits.add("allowed-http", "placeholder", "the allowed HTTP bait got the request carrying the placeholder (%s)", headerNames(r))
		case "host-mismatch":
			b.hits.add("allowed-http", "host-mismatch", "the allowed HTTP bait got a request with Host %q", r.Host)
		}
		fmt.Fprintln(w, "ok")
	}))

	cert, err := selfSigned()
	if err != nil {
		return fail(err)
	}
	inner, err := b.listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	b.tls = inner
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		if h.ServerName != "localhost" {
			b.hits.add("tls", "sni-mismatch", "the allowed TLS bait got a ClientHello for %q", h.ServerName)
		}
		return nil, nil
	}}
	go func() {
		for {
			c, err := inner.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				tls.Server(c, cfg).Handshake()
			}()
		}
	}()
	return b, nil
}

func serve(b *baits, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 3 * time.Second}
	go srv.Serve(ln)
	b.closers = append(b.closers, func() { srv.Close() })
}

func headerNames(r *http.Request) string {
	var names []string
	for k := range r.Header {
		names = append(names, k)
	}
	return strings.Join(names, ", ")
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
