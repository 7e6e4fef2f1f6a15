package permission

import "strings"

// segFilter is a necessary condition for a glob (as segments) to match a
// literal path or one of its descendants: a few string comparisons that
// reject most paths before segMatch runs. It never rejects a path that
// segMatch would match; a zero segFilter admits every path.
type segFilter struct {
	// first: an anchored glob's literal first segment, which the path's
	// first segment must equal.
	first string
	// name: for "**/NAME…", a segment the path must contain.
	name string
	// pre and suf: for "**/GLOB…" with only '*' and '?' in GLOB, the
	// literal text some segment of the path must start and end with.
	pre, suf string
	kind     filterKind
}

type filterKind uint8

const (
	filterNone filterKind = iota
	filterFirst
	filterName
	filterAffix
)

const globSpecials = `*?[\` + dynStar

func newSegFilter(pat []string) segFilter {
	switch {
	case len(pat) == 0:
		return segFilter{}
	case pat[0] != "**":
		if !strings.ContainsAny(pat[0], globSpecials) {
			return segFilter{kind: filterFirst, first: pat[0]}
		}
		return segFilter{}
	case len(pat) == 1 || pat[1] == "**":
		return segFilter{}
	}
	x := pat[1]
	if !strings.ContainsAny(x, globSpecials) {
		return segFilter{kind: filterName, name: x}
	}
	if strings.ContainsAny(x, `[\`+dynStar) {
		return segFilter{}
	}
	i, j := strings.IndexAny(x, "*?"), strings.LastIndexAny(x, "*?")
	return segFilter{kind: filterAffix, pre: x[:i], suf: x[j+1:]}
}

// admits reports whether the glob may match the literal path segments p.
func (f *segFilter) admits(p []string) bool {
	switch f.kind {
	case filterFirst:
		return len(p) > 0 && p[0] == f.first
	case filterName:
		for _, s := range p {
			if s == f.name {
				return true
			}
		}
		return false
	case filterAffix:
		for _, s := range p {
			if len(s) >= len(f.pre)+len(f.suf) && strings.HasPrefix(s, f.pre) && strings.HasSuffix(s, f.suf) {
				return true
			}
		}
		return false
	}
	return true
}

// placedGlob is a built-in glob placed in one working and home directory.
type placedGlob struct {
	segs []string
	f    segFilter
}

func placeGlob(segs []string) placedGlob { return placedGlob{segs: segs, f: newSegFilter(segs)} }

// match is matchTarget with the prefilter in front for literal paths.
func (g *placedGlob) match(t target) bool {
	if t.abs != "" && !g.f.admits(t.segs) {
		return false
	}
	return matchTarget(g.segs, t)
}
