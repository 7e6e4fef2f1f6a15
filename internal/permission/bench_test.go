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

// A Read call, as the hook sees most of them.
func BenchmarkCheckRead(b *testing.B) {
	e := corpusEngine(b)
	req := Request{Tool: "Read", Input: map[string]any{"file_path": corpusCwd + "/src/main.go"}, Cwd: corpusCwd, Home: corpusHome}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.Check(req); d.Verdict != policy.Allow {
			b.Fatalf("Check = %+v; the benchmark must measure the allow path", d)
		}
	}
}

// script10k is a 10 kB script of ordinary lines. Its repeated "cd src"
// moves the line through four directories and then to an unknown one, so
// most of it is decided in five places, the last of which turns every
// relative path into a glob: a hard case, on purpose.
func script10k() string {
	var sb strings.Builder
	lines := []string{`cd src && go test ./... -run 'TestX' | tee -a log.txt`, `if [ -f .env.example ]; then cp .env.example /tmp/build/env; fi`,
		`for f in *.go; do gofmt -l "$f"; done`, `echo "$(git rev-parse HEAD)" > /tmp/build/rev`, `make test && echo done || echo failed`}
	for sb.Len() < 10000 {
		sb.WriteString(lines[sb.Len()%len(lines)] + "\n")
	}
	return sb.String()
}

// A 10 kB script (the bar: 1 ms).
func BenchmarkCheckScript10k(b *testing.B) {
	e := corpusEngine(b)
	script := script10k()
	b.SetBytes(int64(len(script)))
	b.ReportAllocs()
	for b.Loop() {
		e.CheckCommand(script, corpusCwd, corpusHome)
	}
}

// The parse alone of the same script: the floor under CheckScript10k.
func BenchmarkParseScript10k(b *testing.B) {
	script := script10k()
	b.SetBytes(int64(len(script)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseShell(script); err != nil {
			b.Fatal(err)
		}
	}
}
