package proxy

import (
	"testing"

	"github.com/moatsec/moat/internal/policy"
	yaml "go.yaml.in/yaml/v3"
)

// tmpPolicy stands in for policy.LoadFile until the loader lands.
func tmpPolicy(t *testing.T, src string) *policy.Policy {
	var doc struct {
		Version int
		Network struct {
			Mode         string
			Allow        []string
			AllowPrivate []string `yaml:"allow_private"`
		}
	}
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	p := &policy.Policy{Version: 1}
	p.Network.Mode = policy.Enforce
	if doc.Network.Mode == "report" {
		p.Network.Mode = policy.Report
	}
	for i, s := range doc.Network.Allow {
		r, err := policy.ParseHostRule(s)
		if err != nil {
			t.Fatal(err)
		}
		r.Origin = policy.Origin{File: "moat.yaml", Line: 3, Key: "network.allow[" + itoa(i) + "]"}
		p.Network.Allow = append(p.Network.Allow, r)
	}
	for _, s := range doc.Network.AllowPrivate {
		r, err := policy.ParseHostRule(s)
		if err != nil {
			t.Fatal(err)
		}
		p.Network.AllowPrivate = append(p.Network.AllowPrivate, r)
	}
	return p
}

func itoa(i int) string { return string(rune('0' + i)) }
