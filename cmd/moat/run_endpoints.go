package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/moatsec/moat/internal/policy"
	"github.com/moatsec/moat/internal/proxy"
	"github.com/moatsec/moat/internal/sandbox"
)

// runNet is what moat run gives its proxy besides the policy: the
// credentials it adds, the reverse endpoints it serves inside the sandbox,
// and the roots it verifies upstreams with. Only placeholders reach the
// sandbox (Placeholders); the secrets stay in Credentials.
type runNet struct {
	Credentials  []*proxy.Credential
	Endpoints    []runEndpoint
	UpstreamTLS  *tls.Config
	Placeholders []string // NAME=VALUE for the sandbox's environment
	Mask         []string // files the secrets are read from: masked inside
	Notes        []string
}

type runEndpoint struct {
	proxy.Endpoint
	Port   int    // on 127.0.0.1 inside the sandbox
	Origin string // the policy entry or "--endpoint"
}

// Ports lists the endpoints for sandbox.Compile.
func (n *runNet) Ports() []sandbox.EndpointPort {
	var out []sandbox.EndpointPort
	for _, ep := range n.Endpoints {
		out = append(out, sandbox.EndpointPort{Name: ep.Name, Port: ep.Port})
	}
	return out
}

// resolveRunNet reads the policy's endpoints and the --endpoint flags
// (which replace a policy endpoint of the same name), and resolves the
// credentials. A credential of a built-in profile whose environment
// variable is unset is skipped with a note: the user chose the profile,
// not the key, and may run something that needs none; a credential the
// user's own files declare must resolve, or the run fails naming the
// variable.
func resolveRunNet(ctx context.Context, e *env, pol *policy.Policy, flags []string, upstreamCA string) (*runNet, error) {
	n := &runNet{}
	eps, err := pol.Endpoints()
	if err != nil {
		return nil, err
	}
	byName := map[string]int{}
	for i, ep := range eps {
		byName[ep.Name] = i
	}
	for _, f := range flags {
		ep, err := policy.ParseEndpoint(f)
		if err != nil {
			return nil, fmt.Errorf("--endpoint %v", err)
		}
		ep.Origin = policy.Origin{Layer: policy.LayerFlag, File: "--endpoint", Key: "--endpoint"}
		if i, ok := byName[ep.Name]; ok {
			eps[i] = ep
			continue
		}
		byName[ep.Name] = len(eps)
		eps = append(eps, ep)
	}
	ports := map[uint16]string{}
	for _, ep := range eps {
		if other, dup := ports[ep.Listen]; dup {
			return nil, fmt.Errorf("endpoint %s (%s): port %d is also endpoint %s's; pick another port", ep.Name, originText(ep.Origin), ep.Listen, other)
		}
		ports[ep.Listen] = ep.Name
		pe, err := proxy.ParseEndpoint(ep.Name + "=" + ep.Upstream)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", originText(ep.Origin), err)
		}
		n.Endpoints = append(n.Endpoints, runEndpoint{Endpoint: pe, Port: int(ep.Listen), Origin: originText(ep.Origin)})
	}

	var use []policy.Credential
	for _, c := range pol.Credentials {
		if strings.HasPrefix(c.Origin.Layer, "profile:") && c.Env != "" && e.getenv(c.Env) == "" {
			n.Notes = append(n.Notes, fmt.Sprintf("credential %q (%s) skipped: %s is not set in moat's environment; export it there and the proxy adds the key (the sandbox never sees it)",
				c.Name, c.Origin.Layer, c.Env))
			continue
		}
		use = append(use, c)
	}
	placeholderOf := map[string]string{}
	for _, c := range use {
		if c.Placeholder == "" {
			continue
		}
		if other, dup := placeholderOf[c.Placeholder]; dup {
			return nil, fmt.Errorf("credentials %q and %q both set the placeholder %s; give one another variable", other, c.Name, c.Placeholder)
		}
		placeholderOf[c.Placeholder] = c.Name
	}
	if n.Credentials, err = proxy.ResolveCredentials(ctx, use, e.getenv); err != nil {
		return nil, err
	}
	for i, c := range n.Credentials {
		if c.Placeholder != "" {
			n.Placeholders = append(n.Placeholders, use[i].Placeholder+"="+c.Placeholder)
		}
		if use[i].File != "" {
			n.Mask = append(n.Mask, use[i].File)
		}
	}
	if n.UpstreamTLS, err = upstreamTLS(upstreamCA); err != nil {
		return nil, err
	}
	return n, nil
}

// checkSecretEnv refuses a sandbox environment that would hold a
// credential's source variable (process.env can pass any variable of
// moat's through): only its placeholder may be there.
func checkSecretEnv(sandboxEnv []string, pol *policy.Policy, n *runNet) error {
	placeholder := map[string]bool{}
	for _, kv := range n.Placeholders {
		name, _, _ := strings.Cut(kv, "=")
		placeholder[name] = true
	}
	for _, c := range pol.Credentials {
		if c.Env == "" || placeholder[c.Env] {
			continue
		}
		for _, kv := range sandboxEnv {
			if name, _, _ := strings.Cut(kv, "="); name == c.Env {
				return fmt.Errorf("process.env would pass %s, the secret of credential %q, into the sandbox; remove it (give the credential a placeholder instead)", c.Env, c.Name)
			}
		}
	}
	return nil
}

func originText(o policy.Origin) string {
	if o.Layer == policy.LayerFlag {
		return o.File
	}
	return o.String()
}
