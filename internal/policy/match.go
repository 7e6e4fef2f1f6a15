package policy

// Matches reports whether the rule covers host on port with network.allow's
// port semantics (a rule without a port covers 80 and 443). host may be in
// any spelling NormalizeHost accepts; a malformed host matches nothing.
// Credential hosts, tls.intercept and request rules use it, so that every
// list of hosts in a policy means the same thing.
func (r HostRule) Matches(host string, port uint16) bool {
	return allowPort(r.Port, port) && r.matchHost(host)
}

// coversAnyPort is Matches with network.deny's port semantics: a rule
// without a port covers every port. Rules that restrict (request rules,
// limits) use it, so that a port cannot step around them.
func (r HostRule) coversAnyPort(host string, port uint16) bool {
	return anyPort(r.Port, port) && r.matchHost(host)
}

func (r HostRule) matchHost(host string) bool {
	h, ip, err := normalizeHost(host)
	if err != nil {
		return false
	}
	if ip.IsValid() {
		return r.matchAddr(ip)
	}
	return r.matchName(h)
}
