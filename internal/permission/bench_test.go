package permission

import (
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

// A typical agent command, decided in-process (the bar: 20 µs).
func BenchmarkCheckTypical(b *testing.B) {
	e := corpusEngine(b)
	const cmd = `git diff --stat && npm run test -- --watch=false | tee out.log`
	b.ReportAllocs()
	for b.Loop() {
		if d := e.CheckCommand(cmd, corpusCwd, corpusHome); d.Verdict == policy.Deny {
			b.Fatalf("CheckCommand = %+v", d)
		}
	}
}

// A 10 kB script (the bar: 1 ms).
func BenchmarkCheckScript10k(b *testing.B) {
	e := corpusEngine(b)
	var sb strings.Builder
	lines := []string{`cd src && go test ./... -run 'TestX' | tee -a log.txt`, `if [ -f .env.example ]; then cp .env.example /tmp/build/env; fi`,
		`for f in *.go; do gofmt -l "$f"; done`, `echo "$(git rev-parse HEAD)" > /tmp/build/rev`, `make test && echo done || echo failed`}
	for sb.Len() < 10000 {
		sb.WriteString(lines[sb.Len()%len(lines)] + "\n")
	}
	script := sb.String()
	b.SetBytes(int64(len(script)))
	b.ReportAllocs()
	for b.Loop() {
		e.CheckCommand(script, corpusCwd, corpusHome)
	}
}
