package policy

import "strings"

// stripOrigins removes the comments FormatYAML adds, leaving the values.
func stripOrigins(b []byte) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if i := strings.Index(l, "  # "); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
