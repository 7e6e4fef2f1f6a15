package permission

import (
	"testing"
)

// The prefilter may only reject what segMatch rejects: for every path the
// corpus reads or writes, in every directory it moves to, and every
// built-in glob and rule, a rejected path must not match.
func TestPrefilterRejectsOnlyMismatches(t *testing.T) {
	e := corpusEngine(t)
	_, cases := readCorpus(t)
	env := pathEnv{cwd: corpusCwd, home: corpusHome}
	var globs []placedGlob
	globs = append(globs, placeGlobs(sensitivePaths, env)...)
	globs = append(globs, placeGlobs(persistencePaths, env)...)
	globs = append(globs, placeSystemDirs()...)
	for _, r := range e.Rules() {
		if r.kind == kindPath {
			globs = append(globs, placeGlob(r.computeSegments(env)))
		}
	}
	extra := []string{"/home/u/.ssh/id_rsa", "/repo/proj/.env", "/repo/proj/a/.env.local", "/x/y.pem", "/proc/1/environ",
		"/etc/cron.d/x", "/home/u/.config/systemd/user/a.service", "/repo/proj/.git/hooks/pre-commit", "/", "/etc"}
	var paths [][]string
	for _, p := range extra {
		paths = append(paths, splitPath(p))
	}
	admitted, rejected := 0, 0
	for _, c := range cases {
		if c.verdict == "" {
			continue
		}
		an := analyse(c.input)
		for _, cmd := range an.cmds {
			for _, d := range []string{"", "/repo/proj/src", "/tmp"} {
				de := env
				de.dir = d
				r, w := e.targets(cmd, de)
				for _, tg := range append(r, w...) {
					if tg.abs != "" {
						paths = append(paths, tg.segs)
					}
				}
			}
		}
	}
	for _, p := range paths {
		for _, g := range globs {
			if g.f.admits(p) {
				admitted++
				continue
			}
			rejected++
			if pathMatch(g.segs, p) {
				t.Errorf("prefilter of %q rejects %q, which it matches", g.segs, p)
			}
		}
	}
	if admitted == 0 || rejected == 0 {
		t.Errorf("admitted %d, rejected %d: the test must see both", admitted, rejected)
	}
}
