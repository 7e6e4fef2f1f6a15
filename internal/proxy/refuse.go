package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ErrorHeader names the header on every response the proxy itself makes.
// Upstream responses never carry it: the proxy strips it, so a server cannot
// forge a refusal.
const ErrorHeader = "X-Moat-Error"

// writeRefusal answers an HTTP client with a response of the proxy's own.
// The body is written for the person or the agent reading it: what was
// refused, why, and that retrying without the proxy will not help (agents
// take a bare 403 from a CONNECT for a fault and try to go around it).
func writeRefusal(w io.Writer, status int, rule, target, reason, method string) {
	var b strings.Builder
	verb := "refused"
	if status >= 500 {
		verb = "could not serve"
	}
	if target != "" {
		if method != "" {
			fmt.Fprintf(&b, "moat: %s %s %s\n", verb, method, target)
		} else {
			fmt.Fprintf(&b, "moat: %s %s\n", verb, target)
		}
	} else {
		fmt.Fprintf(&b, "moat: %s the request\n", verb)
	}
	fmt.Fprintf(&b, "reason: %s\n", oneLine(reason))
	fmt.Fprintf(&b, "rule: %s\n", oneLine(rule))
	switch {
	case status == http.StatusForbidden:
		b.WriteString("This refusal comes from the sandbox's egress policy, not from the network: " +
			"retrying, or going around the proxy, will not reach the host. Ask the operator to change the policy.\n")
	case status == http.StatusProxyAuthRequired:
		b.WriteString("Authenticate to the proxy with the credentials in the proxy variables (HTTP_PROXY, HTTPS_PROXY).\n")
	}
	body := b.String()

	hdr := rule
	if target != "" {
		hdr += "; host=" + target
	}
	var h strings.Builder
	fmt.Fprintf(&h, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	h.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	h.WriteString(ErrorHeader + ": " + oneLine(hdr) + "\r\n")
	if status == http.StatusProxyAuthRequired {
		h.WriteString("Proxy-Authenticate: Basic realm=\"moat\"\r\n")
	}
	h.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	h.WriteString("Connection: close\r\n\r\n")
	h.WriteString(body)
	io.WriteString(w, h.String())
}

// oneLine keeps a value safe for a header or a single log line: control
// characters become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
