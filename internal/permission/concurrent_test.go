package permission

import (
	"sync"
	"testing"
)

// An Engine is shared by moat hook serve's requests: its caches (placed
// directories, the last one used) and the parser pool must give every
// goroutine the decision one goroutine gets. Run under -race.
func TestEngineConcurrent(t *testing.T) {
	e := corpusEngine(t)
	_, cases := readCorpus(t)
	var cmds []string
	for _, c := range cases {
		if c.verdict != "" && len(cmds) < 60 {
			cmds = append(cmds, c.input)
		}
	}
	dirs := []string{corpusCwd, "/repo/other", "/tmp/x"}
	want := map[string]Result{}
	for _, d := range dirs {
		for _, c := range cmds {
			want[d+"\x00"+c] = New(e.Rules(), e.opt).CheckCommand(c, d, corpusHome)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, c := range cmds {
				d := dirs[(i+g)%len(dirs)]
				got := e.CheckCommand(c, d, corpusHome)
				if w := want[d+"\x00"+c]; got.Decision != w.Decision || len(got.Findings) != len(w.Findings) {
					t.Errorf("goroutine %d: CheckCommand(%q, %s) = %+v; alone %+v", g, c, d, got.Decision, w.Decision)
				}
			}
		}()
	}
	wg.Wait()
}
