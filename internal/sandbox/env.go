package sandbox

import (
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/moatsec/moat/internal/policy"
)

// buildEnv is the command's environment: the DefaultEnv names and LC_*
// from moat's environment, process.env (NAME=VALUE set, with a leading
// "~/" expanded; NAME passed through), the credentials' placeholders, and
// the proxy variables. Nothing else of moat's environment
// passes, so secrets in it stay outside.
func buildEnv(pol *policy.Policy, o CompileOptions) []string {
	host := map[string]string{}
	for _, kv := range o.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			host[k] = v
		}
	}
	env := map[string]string{}
	for _, k := range DefaultEnv {
		if v, ok := host[k]; ok {
			env[k] = v
		}
	}
	for k, v := range host {
		if strings.HasPrefix(k, "LC_") {
			env[k] = v
		}
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
	}
	for _, e := range pol.Process.Env {
		if k, v, ok := strings.Cut(e.Value, "="); ok {
			env[k] = expandHome(v, o.Home)
		} else if v, ok := host[e.Value]; ok {
			env[e.Value] = v
		}
	}
	for _, kv := range o.Placeholders {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if o.Egress {
		for k, v := range ProxyEnv(o.ProxyUser, o.ProxyToken) {
			env[k] = v
		}
	} else {
		for _, k := range proxyNames {
			delete(env, k)
			delete(env, strings.ToLower(k))
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// expandHome expands a leading "~/" (or a lone "~") of a process.env value
// to the home directory, as a shell does in an assignment; other values
// are kept as written.
func expandHome(v, home string) string {
	switch {
	case home == "":
		return v
	case v == "~":
		return home
	case strings.HasPrefix(v, "~/"):
		return strings.TrimSuffix(home, "/") + v[1:]
	}
	return v
}

var proxyNames = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "GRPC_PROXY", "FTP_PROXY"}

// ProxyEnv returns the proxy variables the command gets: both cases of
// HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (SOCKS5 with remote resolution),
// NO_PROXY for loopback, and NODE_USE_ENV_PROXY for Node. user and token
// are the run's proxy session; the token is a secret.
func ProxyEnv(user, token string) map[string]string {
	auth := ""
	if user != "" {
		auth = url.UserPassword(user, token).String() + "@"
	}
	httpURL := "http://" + auth + "127.0.0.1:" + strconv.Itoa(HTTPProxyPort)
	socksURL := "socks5h://" + auth + "127.0.0.1:" + strconv.Itoa(SOCKSProxyPort)
	m := map[string]string{
		"NO_PROXY":           "localhost,127.0.0.1,::1",
		"NODE_USE_ENV_PROXY": "1",
	}
	for k, v := range map[string]string{"HTTP_PROXY": httpURL, "HTTPS_PROXY": httpURL, "ALL_PROXY": socksURL, "GRPC_PROXY": httpURL} {
		m[k] = v
		m[strings.ToLower(k)] = v
	}
	m["no_proxy"] = m["NO_PROXY"]
	return m
}
