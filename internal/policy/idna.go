package policy

import "golang.org/x/net/idna"

// Internationalised names are mapped with UTS #46 lookup processing, the
// profile Go's own HTTP client uses (idna.Lookup), so that moat normalises
// a name exactly as the client that sends it: a name normalised two ways
// could match one rule and reach another host.

// labelToASCII maps one label that has non-ASCII characters to its
// punycode form, or returns an error message.
func labelToASCII(label string) (string, string) {
	if len(label) > 4*maxName {
		return "", "name is longer than 253 characters"
	}
	out, err := idna.Lookup.ToASCII(label)
	if err != nil {
		return "", "not a valid internationalised name (" + err.Error() + "); write it in its ASCII (punycode) form"
	}
	return out, ""
}

// validPunycode reports whether an "xn--" label decodes to a valid
// internationalised label.
func validPunycode(label string) bool {
	u, err := idna.Lookup.ToUnicode(label)
	return err == nil && u != label
}
