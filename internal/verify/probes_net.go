package verify

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BaitGreeting starts every line a host bait writes on accepting a
// connection: reading it proves the connection reached the host.
const BaitGreeting = "moat-verify-bait"

const dialTimeout = 2 * time.Second

// dialBait connects, reads the bait's greeting and names the probe to
// it, so that the harness can tell which probe reached it.
func dialBait(a *attempts, probe, network, addr string) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.Dial(network, addr)
	if err != nil {
		a.fail(network+" "+addr, err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if strings.HasPrefix(line, BaitGreeting) {
		fmt.Fprintf(conn, "%s\n", probe)
		a.ok("%s %s: connected to the host's bait", network, addr)
		return
	}
	a.note("%s %s: connected to something inside the sandbox, not the host's bait (%s)", network, addr, errno(err))
}

func probeDirectIP(c *Config) Result {
	var a attempts
	if c.TCPExternal != "" {
		dialBait(&a, "direct-ip", "tcp", c.TCPExternal)
	}
	dialBait(&a, "direct-ip", "tcp4", "1.1.1.1:443")
	return a.result()
}

func probeHostLoopback(c *Config) Result {
	var a attempts
	dialBait(&a, "host-loopback", "tcp4", c.TCPLoopback)
	return a.result()
}

func probeIPv6(c *Config) Result {
	if len(c.TCPv6) == 0 {
		return na("the host has no IPv6 address to listen on")
	}
	var a attempts
	for _, addr := range c.TCPv6 {
		dialBait(&a, "ipv6", "tcp6", addr)
	}
	return a.result()
}

func probeUDP(c *Config) Result {
	var a attempts
	for _, addr := range c.UDP {
		conn, err := net.DialTimeout("udp", addr, dialTimeout)
		if err != nil {
			a.fail("udp "+addr, err)
			continue
		}
		if _, err := conn.Write([]byte("udp\n")); err != nil {
			a.fail("udp send to "+addr, err)
			conn.Close()
			continue
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		b := make([]byte, 256)
		n, err := conn.Read(b)
		conn.Close()
		if n > 0 && strings.HasPrefix(string(b[:n]), BaitGreeting) {
			a.ok("udp %s: the host's bait answered", addr)
			continue
		}
		a.note("udp %s: sent, no answer from the host (%s)", addr, errno(err))
	}
	return a.result()
}

func probeDNS(c *Config) Result {
	var a attempts
	name := c.Marker + "." + c.ExfilDomain
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	_, err := r.LookupHost(ctx, name)
	var de *net.DNSError
	switch {
	case err == nil:
		a.ok("resolved %s", name)
	case errors.As(err, &de) && de.IsNotFound:
		// An NXDOMAIN is an answer: a server was reached.
		a.ok("a DNS server answered for %s (not found)", name)
	default:
		a.fail("lookup "+name, err)
	}
	// A query straight to a public resolver, past resolv.conf.
	conn, err := net.DialTimeout("udp4", "8.8.8.8:53", dialTimeout)
	if err == nil {
		_, err = conn.Write(dnsQuery(name))
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(time.Second))
			b := make([]byte, 512)
			var n int
			n, err = conn.Read(b)
			if n > 0 {
				a.ok("8.8.8.8 answered a query")
			}
		}
		conn.Close()
	}
	if err != nil {
		a.fail("udp query to 8.8.8.8", err)
	}
	return a.result()
}

// dnsQuery builds a minimal A query.
func dnsQuery(name string) []byte {
	q := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

func probeICMP(c *Config) Result {
	var a attempts
	target := [4]byte{1, 1, 1, 1}
	if c.TCPExternal != "" {
		if h, _, err := net.SplitHostPort(c.TCPExternal); err == nil {
			if ip := net.ParseIP(h).To4(); ip != nil {
				copy(target[:], ip)
			}
		}
	}
	dst := net.IP(target[:]).String()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		a.fail("ping socket", err)
		return a.result()
	}
	defer unix.Close(fd)
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'm', 'v'}
	if err := unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: target}); err != nil {
		a.fail("echo request to "+dst, err)
		return a.result()
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	b := make([]byte, 128)
	n, _, err := unix.Recvfrom(fd, b, 0)
	if n > 0 {
		a.ok("echo reply from %s", dst)
	} else {
		a.fail("echo request to "+dst+" sent; no reply", err)
	}
	return a.result()
}

func probeRawSocket(c *Config) Result {
	var a attempts
	for _, s := range []struct {
		name          string
		dom, typ, pro int
	}{
		{"AF_INET SOCK_RAW", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW},
		{"AF_INET6 SOCK_RAW", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW},
		{"AF_PACKET SOCK_RAW", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL))},
	} {
		fd, err := unix.Socket(s.dom, s.typ|unix.SOCK_CLOEXEC, s.pro)
		if err != nil {
			a.fail(s.name, err)
			continue
		}
		unix.Close(fd)
		a.ok("opened a %s socket", s.name)
	}
	return a.result()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func probeUnixSocket(c *Config) Result {
	var a attempts
	dialBait(&a, "unix-socket", "unix", c.UnixSocket)
	return a.result()
}

func probeDockerSocket(c *Config) Result {
	if c.DockerSock == "" {
		return na("no /var/run/docker.sock on this host")
	}
	var a attempts
	conn, err := net.DialTimeout("unix", c.DockerSock, dialTimeout)
	if err != nil {
		a.fail("connect "+c.DockerSock, err)
		return a.result()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(dialTimeout))
	fmt.Fprint(conn, "GET /_ping HTTP/1.0\r\n\r\n")
	b, _ := io.ReadAll(io.LimitReader(conn, 512))
	a.ok("connected to %s (answer: %q)", c.DockerSock, firstLine(string(b)))
	return a.result()
}

func probeAbstract(c *Config) Result {
	var a attempts
	dialBait(&a, "abstract-socket", "unix", "@"+c.Abstract)
	return a.result()
}

// probeProxyBypass ignores the proxy variables and talks HTTP to the
// host's bait directly.
func probeProxyBypass(c *Config) Result {
	var a attempts
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: nil}}
	_, port, _ := net.SplitHostPort(c.HTTPDirect)
	targets := []string{c.HTTPDirect}
	if c.TCPExternal != "" {
		h, _, _ := net.SplitHostPort(c.TCPExternal)
		targets = append(targets, net.JoinHostPort(h, port))
	}
	for _, t := range targets {
		resp, err := cl.Get("http://" + t + "/proxy-bypass")
		if err != nil {
			a.fail("GET http://"+t+" without the proxy", err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if strings.HasPrefix(string(b), BaitGreeting) {
			a.ok("GET http://%s without the proxy reached the host's bait", t)
		} else {
			a.note("GET http://%s: %s from something inside the sandbox", t, resp.Status)
		}
	}
	return a.result()
}

// proxyConn opens a connection to the forwarder and returns it with the
// Proxy-Authorization header the run's HTTP_PROXY carries.
func proxyConn() (net.Conn, string, error) {
	raw := os.Getenv("HTTP_PROXY")
	if raw == "" {
		raw = os.Getenv("http_proxy")
	}
	if raw == "" {
		return nil, "", errNoProxy
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("HTTP_PROXY: %w", err)
	}
	auth := ""
	if u.User != nil {
		p, _ := u.User.Password()
		auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)) + "\r\n"
	}
	conn, err := net.DialTimeout("tcp", u.Host, dialTimeout)
	if err != nil {
		return nil, "", err
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return conn, auth, nil
}

var errNoProxy = errors.New("no HTTP_PROXY in the environment: the policy gives the sandbox no proxy")

// proxyAnswer is a proxy's reply: the status and the rule it names.
type proxyAnswer struct {
	status int
	rule   string
	body   string
}

func (p proxyAnswer) String() string {
	if p.rule != "" {
		return fmt.Sprintf("%d (X-Moat-Error: %s)", p.status, p.rule)
	}
	return fmt.Sprint(p.status)
}

// proxyRequest sends one raw request and reads the answer; conn stays
// open for a tunnel.
func proxyRequest(conn net.Conn, req string) (proxyAnswer, *bufio.Reader, error) {
	if _, err := io.WriteString(conn, req); err != nil {
		return proxyAnswer{}, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return proxyAnswer{}, nil, err
	}
	ans := proxyAnswer{status: resp.StatusCode, rule: resp.Header.Get("X-Moat-Error")}
	if resp.StatusCode != 200 || !strings.HasPrefix(req, "CONNECT") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		ans.body = string(b)
		resp.Body.Close()
	}
	return ans, br, nil
}

func connect(target string) (net.Conn, *bufio.Reader, proxyAnswer, error) {
	conn, auth, err := proxyConn()
	if err != nil {
		return nil, nil, proxyAnswer{}, err
	}
	ans, br, err := proxyRequest(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+auth+"\r\n")
	if err != nil {
		conn.Close()
		return nil, nil, ans, err
	}
	return conn, br, ans, nil
}

// probeConnect is CONNECT to target; a tunnel opened is an escape.
func probeConnect(probe, target string) Result {
	var a attempts
	conn, br, ans, err := connect(target)
	switch {
	case errors.Is(err, errNoProxy):
		return na("%v", err)
	case err != nil:
		a.fail("CONNECT "+target, err)
	case ans.status == 200:
		// Name the probe to the bait, as dialBait does.
		if line, _ := br.ReadString('\n'); strings.HasPrefix(line, BaitGreeting) {
			fmt.Fprintf(conn, "%s\n", probe)
		}
		conn.Close()
		a.ok("CONNECT %s: the proxy opened the tunnel", target)
	default:
		conn.Close()
		a.note("CONNECT %s: %s", target, ans)
	}
	return a.result()
}

func probeConnectIP(c *Config) Result { return probeConnect("connect-ip", c.ConnectIP) }

func probeConnectPrivate(c *Config) Result {
	if c.PrivateNA != "" {
		return na("%s", c.PrivateNA)
	}
	return probeConnect("connect-private", c.PrivateName)
}

// probeSNIMismatch opens a tunnel to an allowed name (the control), then
// sends a ClientHello for another name through it.
func probeSNIMismatch(c *Config) Result {
	var a attempts
	ctl, _, ans, err := connect(c.AllowedTLS)
	if errors.Is(err, errNoProxy) {
		return na("%v", err)
	}
	if err != nil || ans.status != 200 {
		return na("the control, CONNECT %s (allowed by verify's scratch layer), did not open: %v %s", c.AllowedTLS, err, ans)
	}
	tc := tls.Client(ctl, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		a.note("control handshake with SNI localhost failed (%s)", errno(err))
	}
	tc.Close()
	conn, br, ans, err := connect(c.AllowedTLS)
	if err != nil || ans.status != 200 {
		a.note("second CONNECT %s: %v %s", c.AllowedTLS, err, ans)
		return a.result()
	}
	defer conn.Close()
	tc = tls.Client(&bufConn{conn, br}, &tls.Config{ServerName: "evil.moat-verify.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		a.fail("TLS with SNI evil.moat-verify.test through CONNECT "+c.AllowedTLS, err)
	} else {
		a.ok("TLS with SNI evil.moat-verify.test completed through CONNECT %s", c.AllowedTLS)
	}
	return a.result()
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// httpVia sends one absolute-form request through the proxy.
func httpVia(method, target, host string, hdr ...string) (proxyAnswer, error) {
	conn, auth, err := proxyConn()
	if err != nil {
		return proxyAnswer{}, err
	}
	defer conn.Close()
	req := method + " http://" + target + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth
	for _, h := range hdr {
		req += h + "\r\n"
	}
	ans, _, err := proxyRequest(conn, req+"Connection: close\r\n\r\n")
	return ans, err
}

func probeHostMismatch(c *Config) Result {
	var a attempts
	ctl, err := httpVia("GET", c.AllowedHTTP, c.AllowedHTTP)
	if errors.Is(err, errNoProxy) {
		return na("%v", err)
	}
	if err != nil || ctl.status != 200 {
		return na("the control, GET http://%s (allowed by verify's scratch layer), failed: %v %s", c.AllowedHTTP, err, ctl)
	}
	ans, err := httpVia("GET", c.AllowedHTTP, "evil.moat-verify.test", "X-Moat-Verify: host-mismatch")
	switch {
	case err != nil:
		a.fail("GET with Host evil.moat-verify.test", err)
	case ans.status == 200:
		a.ok("GET http://%s with Host: evil.moat-verify.test was forwarded", c.AllowedHTTP)
	default:
		a.note("GET http://%s with Host: evil.moat-verify.test: %s (control: 200)", c.AllowedHTTP, ans)
	}
	return a.result()
}

func probePlaceholder(c *Config) Result {
	ph := os.Getenv(c.PlaceholderEnv)
	if c.PlaceholderEnv == "" || ph == "" {
		return na("no credential placeholder in the environment")
	}
	var a attempts
	ctl, err := httpVia("GET", c.AllowedHTTP, c.AllowedHTTP)
	if errors.Is(err, errNoProxy) {
		return na("%v", err)
	}
	if err != nil || ctl.status != 200 {
		return na("the control, GET http://%s (allowed), failed: %v %s", c.AllowedHTTP, err, ctl)
	}
	for _, hdr := range []string{"Authorization: Bearer " + ph, "X-Api-Key: " + ph} {
		name, _, _ := strings.Cut(hdr, ":")
		ans, err := httpVia("GET", c.AllowedHTTP, c.AllowedHTTP, hdr, "X-Moat-Verify: placeholder")
		switch {
		case err != nil:
			a.fail("GET with the placeholder in "+name, err)
		case ans.status == 200:
			a.ok("the placeholder of a credential for %s went to %s in %s", c.CredentialHost, c.AllowedHTTP, name)
		default:
			a.note("placeholder in %s to %s: %s", name, c.AllowedHTTP, ans)
		}
	}
	return a.result()
}

// probeDNSExfil asks the proxy for names it must refuse before it looks
// them up: a refusal by the name rule, not a failed lookup, is held.
func probeDNSExfil(c *Config) Result {
	var a attempts
	for i, try := range []func(string) (proxyAnswer, error){
		func(h string) (proxyAnswer, error) {
			conn, _, ans, err := connect(h + ":443")
			if conn != nil {
				conn.Close()
			}
			return ans, err
		},
		func(h string) (proxyAnswer, error) { return httpVia("GET", h, h) },
	} {
		h := sprintf("%s-%d.%s", c.Marker, i, c.ExfilDomain)
		ans, err := try(h)
		switch {
		case errors.Is(err, errNoProxy):
			return na("%v", err)
		case err != nil:
			a.fail(h, err)
		case ans.status == 200:
			a.ok("%s: the proxy let it through", h)
		case ans.status == 403 && ans.rule != "" && !strings.Contains(ans.rule, "resolve") && !strings.Contains(ans.rule, "dns"):
			a.note("%s: %s before any lookup", h, ans)
		default:
			a.ok("%s: %s, the proxy looked the name up before refusing it", h, ans)
		}
	}
	return a.result()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
