package permission

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/moatsec/moat/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus/commands.txt with the engine's decisions")

const (
	corpusCwd  = "/repo/proj"
	corpusHome = "/home/u"
)

type corpusCase struct {
	line                    int
	class                   string
	verdict, rule, findings string
	cmd                     string // as written in the file
	input                   string // decoded
}

// corpusEngine loads the corpus policy through the real loader.
func corpusEngine(t testing.TB) *Engine {
	t.Helper()
	p, err := policy.LoadFile("testdata/corpus/moat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := PolicyRules(p)
	if err != nil {
		t.Fatal(err)
	}
	return New(rules, PolicyOptions(p))
}

func readCorpus(t testing.TB) (header []string, cases []corpusCase) {
	t.Helper()
	f, err := os.Open("testdata/corpus/commands.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	class := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "# class: "); ok {
			class = c
			cases = append(cases, corpusCase{line: n, class: c, cmd: line})
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			if class == "" {
				header = append(header, line)
			}
			continue
		}
		cols := strings.SplitN(line, "\t", 4)
		if len(cols) != 4 {
			t.Fatalf("commands.txt:%d: want 4 tab-separated columns, got %d", n, len(cols))
		}
		cc := corpusCase{line: n, class: class, verdict: cols[0], rule: cols[1], findings: cols[2], cmd: cols[3], input: cols[3]}
		if q, ok := strings.CutPrefix(cc.cmd, "q:"); ok {
			s, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("commands.txt:%d: %v", n, err)
			}
			cc.input = s
		}
		cases = append(cases, cc)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return header, cases
}

// corpusRequest turns a corpus command into a request.
func corpusRequest(in string) Request {
	req := Request{Tool: "Bash", Input: map[string]any{"command": in}, Cwd: corpusCwd, Home: corpusHome}
	if rest, ok := strings.CutPrefix(in, "@"); ok {
		tool, arg, _ := strings.Cut(rest, " ")
		req.Tool = tool
		switch {
		case readTools[tool] && tool != "Read":
			req.Input = map[string]any{"path": arg}
		case readTools[tool] || editTools[tool]:
			if strings.HasPrefix(arg, "~/") {
				arg = corpusHome + arg[1:]
			}
			req.Input = map[string]any{"file_path": arg}
		case tool == "WebFetch":
			req.Input = map[string]any{"url": arg, "prompt": "summarise"}
		case tool == "WebSearch":
			req.Input = map[string]any{"query": arg}
		case tool == "Agent":
			req.Input = map[string]any{"subagent_type": arg, "prompt": "x", "description": "x"}
		default:
			req.Input = map[string]any{}
		}
	}
	return req
}

func findingKey(fs []Finding) string {
	if len(fs) == 0 {
		return "-"
	}
	seen := map[string]bool{}
	var ks []string
	for _, f := range fs {
		k := f.Category + "/" + f.Severity.String()
		if !seen[k] {
			seen[k] = true
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// TestCorpus decides every command of testdata/corpus/commands.txt and
// compares verdict, deciding rule and findings exactly.
func TestCorpus(t *testing.T) {
	e := corpusEngine(t)
	header, cases := readCorpus(t)
	var out strings.Builder
	for _, h := range header {
		out.WriteString(h + "\n")
	}
	n := 0
	for _, c := range cases {
		if c.verdict == "" && c.class != "" && strings.HasPrefix(c.cmd, "# class:") {
			out.WriteString(c.cmd + "\n")
			continue
		}
		n++
		r := e.Check(corpusRequest(c.input))
		got := corpusCase{verdict: r.Verdict.String(), rule: r.Rule, findings: findingKey(r.Findings)}
		fmt.Fprintf(&out, "%s\t%s\t%s\t%s\n", got.verdict, got.rule, got.findings, c.cmd)
		if *update {
			continue
		}
		if got.verdict != c.verdict || got.rule != c.rule || got.findings != c.findings {
			t.Errorf("commands.txt:%d (%s): %s\n got: %s %s %s (%s)\nwant: %s %s %s",
				c.line, c.class, c.cmd, got.verdict, got.rule, got.findings, r.Reason, c.verdict, c.rule, c.findings)
		}
		// Whatever the policy, a command that does not parse is never allowed.
		if _, err := parseShell(c.input); err != nil && corpusRequest(c.input).Tool == "Bash" && r.Verdict == policy.Allow {
			t.Errorf("commands.txt:%d: allowed a command that does not parse: %s", c.line, c.cmd)
		}
	}
	if *update {
		if err := os.WriteFile("testdata/corpus/commands.txt", []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n < 300 {
		t.Errorf("corpus has %d commands; the issue asks for at least 300", n)
	}
}

// TestCorpusClasses checks that every bypass class the issue and the
// public reports name has commands in the corpus, and that each class's
// attack lines are not allowed.
func TestCorpusClasses(t *testing.T) {
	_, cases := readCorpus(t)
	count := map[string]int{}
	for _, c := range cases {
		if c.verdict != "" {
			count[strings.SplitN(c.class, " (", 2)[0]]++
		}
	}
	for _, class := range []string{
		"chaining", "cd chaining", "flag reordering", "unlisted wrappers", "nested shells",
		"command substitution and subshells", "eval and alias", "reads in substitutions and copies",
		"env interpolation", "risky environment", "obfuscation", "remote code execution", "find exec",
		"redirections as writes", "destructive", "privilege", "system modification", "exfiltration",
		"container escape", "package installs from URLs", "shell constructs that trip naive splitters",
	} {
		if count[class] < 5 {
			t.Errorf("class %q has %d commands in the corpus; want at least 5", class, count[class])
		}
	}
}
