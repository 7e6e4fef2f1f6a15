package workspace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The labelled corpus: testdata/scan/corpus.txtar holds file templates whose
// {{name}} placeholders are filled at test time from a seed, so that no
// real-looking secret is committed (push protection and scanners, moat's
// own included, would flag it); labels.txt says what each file should yield.

// corpusFile is one section of a txtar archive.
type corpusFile struct {
	Name string
	Data []byte
}

// parseTxtar splits a txtar archive ("-- name --" marker lines) into its
// leading comment and its files, as golang.org/x/tools/txtar does.
func parseTxtar(data []byte) (comment []byte, files []corpusFile) {
	comment, name, data := findMarker(data)
	for name != "" {
		f := corpusFile{Name: name}
		f.Data, name, data = findMarker(data)
		files = append(files, f)
	}
	return comment, files
}

// findMarker returns the text before the next marker line, the marker's
// name ("" if none) and the text after it.
func findMarker(data []byte) (before []byte, name string, after []byte) {
	var i int
	for {
		if n, a := isMarker(data[i:]); n != "" {
			return data[:i], n, a
		}
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return data, "", nil
		}
		i += j + 1
	}
}

func isMarker(data []byte) (name string, after []byte) {
	if !bytes.HasPrefix(data, []byte("-- ")) {
		return "", nil
	}
	line := data
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		line, after = data[:i], data[i+1:]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !bytes.HasSuffix(line, []byte(" --")) || len(line) < len("-- x --") {
		return "", nil
	}
	return strings.TrimSpace(string(line[3 : len(line)-3])), after
}

// formatTxtar is parseTxtar's inverse for archives whose parts end in a
// newline.
func formatTxtar(comment []byte, files []corpusFile) []byte {
	var b bytes.Buffer
	b.Write(fixNL(comment))
	for _, f := range files {
		fmt.Fprintf(&b, "-- %s --\n", f.Name)
		b.Write(fixNL(f.Data))
	}
	return b.Bytes()
}

func fixNL(data []byte) []byte {
	if len(data) == 0 || data[len(data)-1] == '\n' {
		return data
	}
	return append(slices.Clip(data), '\n')
}

var placeholder = regexp.MustCompile(`\{\{([a-z0-9-]+)\}\}`)

// gen makes a value for a placeholder; secret says whether it is a
// credential (whose full value must never be printed) or a look-alike.
type gen struct {
	secret bool
	make   func(r *rand.Rand) string
}

const (
	upper    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lower    = "abcdefghijklmnopqrstuvwxyz"
	digits   = "0123456789"
	alnum    = upper + lower + digits
	b64chars = alnum + "+/"
	urlchars = alnum + "-_"
)

func pick(r *rand.Rand, set string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = set[r.IntN(len(set))]
	}
	return string(b)
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return b
}

// pemBlock wraps random DER-sized bytes in PEM armour.
func pemBlock(r *rand.Rand, typ string, n int) string {
	body := base64.StdEncoding.EncodeToString(randBytes(r, n))
	var b strings.Builder
	b.WriteString("-----BEGIN " + typ + "-----\n")
	for len(body) > 64 {
		b.WriteString(body[:64] + "\n")
		body = body[64:]
	}
	b.WriteString(body + "\n-----END " + typ + "-----")
	return b.String()
}

var generators = map[string]gen{
	"aws-access-token":        {true, func(r *rand.Rand) string { return "AKIA" + pick(r, upper+"234567", 16) }},
	"aws-secret":              {true, func(r *rand.Rand) string { return pick(r, b64chars, 40) }},
	"github-pat":              {true, func(r *rand.Rand) string { return "ghp_" + pick(r, alnum, 36) }},
	"github-oauth":            {true, func(r *rand.Rand) string { return "gho_" + pick(r, alnum, 36) }},
	"github-app-token":        {true, func(r *rand.Rand) string { return "ghs_" + pick(r, alnum, 36) }},
	"github-fine-grained-pat": {true, func(r *rand.Rand) string { return "github_pat_" + pick(r, alnum, 22) + "_" + pick(r, alnum, 59) }},
	"gitlab-pat":              {true, func(r *rand.Rand) string { return "glpat-" + pick(r, urlchars, 20) }},
	"slack-bot-token": {true, func(r *rand.Rand) string {
		return "xoxb-" + pick(r, digits, 11) + "-" + pick(r, digits, 12) + "-" + pick(r, alnum, 24)
	}},
	"slack-webhook-url": {true, func(r *rand.Rand) string {
		return "https://hooks.slack.com/services/T" + pick(r, upper+digits, 8) + "/B" + pick(r, upper+digits, 8) + "/" + pick(r, alnum, 24)
	}},
	"stripe-access-token": {true, func(r *rand.Rand) string { return "sk_live_" + pick(r, alnum, 24) }},
	"anthropic-api-key":   {true, func(r *rand.Rand) string { return "sk-ant-api03-" + pick(r, urlchars, 93) + "AA" }},
	"openai-api-key": {true, func(r *rand.Rand) string {
		return "sk-proj-" + pick(r, urlchars, 74) + "T3BlbkFJ" + pick(r, urlchars, 74)
	}},
	"gcp-api-key":              {true, func(r *rand.Rand) string { return "AIza" + pick(r, urlchars, 35) }},
	"npm-access-token":         {true, func(r *rand.Rand) string { return "npm_" + pick(r, lower+digits, 36) }},
	"pypi-upload-token":        {true, func(r *rand.Rand) string { return "pypi-AgEIcHlwaS5vcmc" + pick(r, urlchars, 120) }},
	"sendgrid-api-token":       {true, func(r *rand.Rand) string { return "SG." + pick(r, urlchars, 22) + "." + pick(r, urlchars, 43) }},
	"huggingface-access-token": {true, func(r *rand.Rand) string { return "hf_" + pick(r, upper+lower, 34) }},
	"digitalocean-pat":         {true, func(r *rand.Rand) string { return "dop_v1_" + hex.EncodeToString(randBytes(r, 32)) }},
	"password":                 {true, func(r *rand.Rand) string { return pick(r, alnum, 24) }},
	"jwt": {true, func(r *rand.Rand) string {
		enc := base64.RawURLEncoding.EncodeToString
		payload := fmt.Sprintf(`{"sub":"%s","iat":%d}`, pick(r, digits, 10), 1700000000+r.IntN(1e8))
		return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(payload)) + "." + enc(randBytes(r, 32))
	}},
	"b64-github-pat": {true, func(r *rand.Rand) string {
		return base64.StdEncoding.EncodeToString([]byte("token: ghp_" + pick(r, alnum, 36) + "\n"))
	}},
	"rsa-private-key":     {true, func(r *rand.Rand) string { return pemBlock(r, "RSA PRIVATE KEY", 1190) }},
	"ec-private-key":      {true, func(r *rand.Rand) string { return pemBlock(r, "EC PRIVATE KEY", 121) }},
	"openssh-private-key": {true, func(r *rand.Rand) string { return pemBlock(r, "OPENSSH PRIVATE KEY", 300) }},

	// Look-alikes.
	"uuid": {false, func(r *rand.Rand) string {
		h := hex.EncodeToString(randBytes(r, 16))
		return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
	}},
	"sha1":       {false, func(r *rand.Rand) string { return hex.EncodeToString(randBytes(r, 20)) }},
	"sha256":     {false, func(r *rand.Rand) string { return hex.EncodeToString(randBytes(r, 32)) }},
	"sha512-b64": {false, func(r *rand.Rand) string { return base64.StdEncoding.EncodeToString(randBytes(r, 64)) }},
	"b64-32":     {false, func(r *rand.Rand) string { return base64.StdEncoding.EncodeToString(randBytes(r, 32))[:43] }},
}

// expandCorpus fills the placeholders and returns the files and the
// secrets planted in them.
func expandCorpus(files []corpusFile, seed uint64) (out []corpusFile, secrets []string, err error) {
	r := rand.New(rand.NewPCG(seed, seed^0x6d6f6174))
	for _, f := range files {
		var bad string
		data := placeholder.ReplaceAllFunc(f.Data, func(m []byte) []byte {
			name := string(m[2 : len(m)-2])
			g, ok := generators[name]
			if !ok {
				bad = name
				return m
			}
			v := g.make(r)
			if g.secret {
				secrets = append(secrets, v)
			}
			return []byte(v)
		})
		if bad != "" {
			return nil, nil, fmt.Errorf("%s: unknown placeholder {{%s}}", f.Name, bad)
		}
		out = append(out, corpusFile{f.Name, data})
	}
	return out, secrets, nil
}

func loadCorpus(t testing.TB) []corpusFile {
	t.Helper()
	data, err := os.ReadFile("testdata/scan/corpus.txtar")
	if err != nil {
		t.Fatal(err)
	}
	_, files := parseTxtar(data)
	if len(files) == 0 {
		t.Fatal("corpus.txtar: no files")
	}
	return files
}

// writeCorpus writes files below dir.
func writeCorpus(dir string, files []corpusFile) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// label is one expected finding: Line 0 for a file found by its name.
type label struct {
	Path string
	Line int
	Rule string
}

func (l label) String() string {
	if l.Line == 0 {
		return l.Path + " " + l.Rule
	}
	return fmt.Sprintf("%s:%d %s", l.Path, l.Line, l.Rule)
}

func loadLabels(t testing.TB) []label {
	t.Helper()
	f, err := os.Open("testdata/scan/labels.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ls []label
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		where, rule, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("labels.txt:%d: want PATH[:LINE] RULE", n)
		}
		l := label{Path: where, Rule: strings.TrimSpace(rule)}
		if p, ln, ok := strings.Cut(where, ":"); ok {
			if l.Line, err = strconv.Atoi(ln); err != nil || l.Line < 1 {
				t.Fatalf("labels.txt:%d: %q: bad line number", n, ln)
			}
			l.Path = p
		}
		ls = append(ls, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ls
}

// score compares findings with labels.
func score(findings []Finding, labels []label) (tp int, fp []Finding, fn []label) {
	want := map[label]bool{}
	for _, l := range labels {
		want[l] = true
	}
	found := map[label]bool{}
	for _, f := range findings {
		l := label{f.Path, f.Line, f.Rule}
		if want[l] {
			if !found[l] {
				tp++
			}
			found[l] = true
		} else {
			fp = append(fp, f)
		}
	}
	for _, l := range labels {
		if !found[l] {
			fn = append(fn, l)
		}
	}
	return tp, fp, fn
}

// The floors, set from measurement: every planted secret and credential
// file is found, and nothing else.
const (
	recallFloor    = 1.0
	precisionFloor = 0.95
)

func TestScanCorpus(t *testing.T) {
	t.Parallel()
	labels := loadLabels(t)
	files, secrets, err := expandCorpus(loadCorpus(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeCorpus(dir, files); err != nil {
		t.Fatal(err)
	}
	r, err := ScanDir(context.Background(), dir, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tp, fp, fn := score(r.Findings, labels)
	precision := float64(tp) / float64(tp+len(fp))
	recall := float64(tp) / float64(len(labels))
	t.Logf("corpus: %d labels, %d findings: precision %.3f, recall %.3f", len(labels), len(r.Findings), precision, recall)
	for _, f := range fp {
		t.Logf("false positive: %s:%d %s (%s)", f.Path, f.Line, f.Rule, f.Excerpt)
	}
	for _, l := range fn {
		t.Logf("missed: %s", l)
	}
	if recall < recallFloor || precision < precisionFloor {
		t.Errorf("precision %.3f, recall %.3f; want at least %.2f and %.2f", precision, recall, precisionFloor, recallFloor)
	}
	// No excerpt, and nothing in the report, holds a planted secret whole.
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		for _, line := range strings.Split(s, "\n") {
			// PEM armour ("-----BEGIN RSA PRIVATE KEY-----") is not secret.
			if len(line) >= 8 && !strings.HasPrefix(line, "-----") && bytes.Contains(out, []byte(line)) {
				t.Errorf("the report holds a planted secret (%d bytes, starting %.6q)", len(line), line)
			}
		}
	}
}

// Every labelled content line of the corpus holds a placeholder, so that a
// label cannot drift off the line it describes.
func TestScanCorpusLabels(t *testing.T) {
	t.Parallel()
	byName := map[string][]byte{}
	for _, f := range loadCorpus(t) {
		byName[f.Name] = f.Data
	}
	for _, l := range loadLabels(t) {
		data, ok := byName[l.Path]
		if !ok {
			t.Errorf("label %s: no such file in corpus.txtar", l)
			continue
		}
		if l.Line == 0 {
			if rule, ok := CredentialFile(l.Path); !ok || rule != l.Rule {
				t.Errorf("label %s: CredentialFile = %q, %v", l, rule, ok)
			}
			continue
		}
		lines := strings.Split(string(data), "\n")
		if l.Line > len(lines) || !placeholder.MatchString(lines[l.Line-1]) {
			t.Errorf("label %s: the line holds no {{placeholder}}", l)
		}
	}
}

// TestWriteScanCorpus writes the corpus for bench/scan.sh: with
// MOAT_SCAN_CORPUS=DIR, COPIES copies (each from its own seed) and FILLER
// secret-free source files of about 8 KiB, and DIR/labels.tsv (path, line,
// rule) for scoring. Without the variable it only checks that the corpus
// expands.
func TestWriteScanCorpus(t *testing.T) {
	files := loadCorpus(t)
	dir := os.Getenv("MOAT_SCAN_CORPUS")
	if dir == "" {
		if _, _, err := expandCorpus(files, 2); err != nil {
			t.Fatal(err)
		}
		return
	}
	copies, _ := strconv.Atoi(cmpOr(os.Getenv("COPIES"), "10"))
	filler, _ := strconv.Atoi(cmpOr(os.Getenv("FILLER"), "1000"))
	labels := loadLabels(t)
	var tsv bytes.Buffer
	for c := range copies {
		sub := fmt.Sprintf("copy%03d", c)
		exp, _, err := expandCorpus(files, uint64(c)+100)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeCorpus(filepath.Join(dir, sub), exp); err != nil {
			t.Fatal(err)
		}
		for _, l := range labels {
			fmt.Fprintf(&tsv, "%s/%s\t%d\t%s\n", sub, l.Path, l.Line, l.Rule)
		}
	}
	r := rand.New(rand.NewPCG(7, 7))
	var fill []corpusFile
	for i := range filler {
		fill = append(fill, corpusFile{fmt.Sprintf("src/pkg%02d/file%05d.go", i%50, i), fillerSource(r, 8<<10)})
	}
	if err := writeCorpus(dir, fill); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "labels.tsv"), tsv.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fillerSource is Go-like text without secrets, about n bytes.
func fillerSource(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	b.WriteString("package filler\n\nimport \"fmt\"\n\n")
	words := []string{"count", "index", "value", "buffer", "result", "offset", "length", "handler", "request", "config", "name", "item"}
	for b.Len() < n {
		w1, w2 := words[r.IntN(len(words))], words[r.IntN(len(words))]
		fmt.Fprintf(&b, "// %s returns the %s of the %s.\nfunc %s%d(%s int) int {\n\tfmt.Println(%q, %s)\n\treturn %s * %d\n}\n\n",
			w1, w2, w1, w1, r.IntN(1e6), w2, w1+" "+w2, w2, w2, r.IntN(100))
	}
	return b.Bytes()
}
