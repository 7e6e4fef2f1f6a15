package workspace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/zricethezav/gitleaks/v8/report"
)

var credentialFileTests = []struct {
	rel, rule string // rule "": not a credential file by name
}{
	{".env", "dotenv-file"},
	{"app/.env", "dotenv-file"},
	{".env.production", "dotenv-file"},
	{".env.local", "dotenv-file"},
	{".envrc", "dotenv-file"},
	{"deploy/prod.env", "dotenv-file"},
	{".ENV", "dotenv-file"},
	{".env.example", ""},
	{".env.sample", ""},
	{".env.local.template", ""},
	{"example.env", ""},
	{".environment", ""},
	{"environment.ts", ""},
	{".git-credentials", "git-credentials"},
	{"home/.config/git/credentials", "git-credentials"},
	{".aws/credentials", "aws-credentials"},
	{"x/.aws/credentials", "aws-credentials"},
	{".aws/config", ""},
	{"credentials", ""},
	{".aws/sso/cache/abc.json", "aws-credentials"},
	{".config/gcloud/application_default_credentials.json", "gcloud-credentials"},
	{".config/gcloud/credentials.db", "gcloud-credentials"},
	{".config/gcloud/legacy_credentials/me@example.com/adc.json", "gcloud-credentials"},
	{".config/gcloud/configurations/config_default", ""},
	{".azure/msal_token_cache.json", "azure-credentials"},
	{"proj/.azure/dev/.env", "azure-credentials"},
	{".docker/config.json", "docker-config"},
	{"config.json", ""},
	{".kube/config", "kubeconfig"},
	{"clusters/prod.kubeconfig", "kubeconfig"},
	{".npmrc", "npmrc"},
	{".pypirc", "pypirc"},
	{"gcp/prod-service-account.json", "service-account-key"},
	{"service_account.json", "service-account-key"},
	{"client_secret_1234.apps.json", "oauth-client-secret"},
	{"certs/server.pem", "pem-file"},
	{"certs/server.PEM", "pem-file"},
	{"certs/tls.key", "key-file"},
	{"keys.go", ""},
	{"monkey", ""},
	{"store.p12", "pkcs12-file"},
	{"release.keystore", "java-keystore"},
	{"id_rsa", "ssh-private-key"},
	{".ssh/id_ed25519", "ssh-private-key"},
	{".ssh/id_ed25519.pub", ""},
	{".ssh/known_hosts", ""},
	{".ssh/identity", "ssh-private-key"},
	{".netrc", "netrc"},
	{"_netrc", "netrc"},
	{".config/gh/hosts.yml", "gh-hosts"},
	{".config/gh/config.yml", ""},
	{".config/hub", "hub-config"},
	{".cargo/credentials.toml", "cargo-credentials"},
	{".gem/credentials", "gem-credentials"},
	{".claude/.credentials.json", "claude-credentials"},
	{".claude/settings.json", ""},
	{".gnupg/private-keys-v1.d/ABCD.key", "gnupg-private-key"},
	{".pgpass", "pgpass"},
	{".vault-token", "vault-token"},
	{"", ""},
	{".", ""},
	{"/", ""},
	{"README.md", ""},
}

func TestCredentialFile(t *testing.T) {
	t.Parallel()
	for _, tt := range credentialFileTests {
		rule, ok := CredentialFile(tt.rel)
		if rule != tt.rule || ok != (tt.rule != "") {
			t.Errorf("CredentialFile(%q) = %q, %v; want %q", tt.rel, rule, ok, tt.rule)
		}
	}
}

// FuzzCredentialFile: no panic; a rule exactly when ok; only the last
// components decide, so a directory in front changes nothing.
func FuzzCredentialFile(f *testing.F) {
	for _, tt := range credentialFileTests {
		f.Add(tt.rel)
	}
	f.Fuzz(func(t *testing.T, rel string) {
		rule, ok := CredentialFile(rel)
		if ok != (rule != "") {
			t.Fatalf("CredentialFile(%q) = %q, %v", rel, rule, ok)
		}
		if rel == "" || rel != path.Clean(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, "..") || rel == "." {
			return
		}
		if r2, ok2 := CredentialFile("some/dir/" + rel); r2 != rule || ok2 != ok {
			t.Fatalf("CredentialFile(%q) = %q, %v but CredentialFile(%q) = %q, %v", rel, rule, ok, "some/dir/"+rel, r2, ok2)
		}
	})
}

// canary makes a GitHub token that exists nowhere but in this test run.
func canary(t *testing.T) string {
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	return "ghp_" + pick(r, alnum, 36)
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// found lists findings as "path:line rule".
func found(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s:%d %s", f.Path, f.Line, f.Rule))
	}
	return out
}

func TestScanSkips(t *testing.T) {
	t.Parallel()
	tok := canary(t)
	assign := "token = \"" + tok + "\"\n"
	dir := writeTree(t, map[string]string{
		"a.go":                      assign, // the control
		".git/config":               "url = https://x:" + tok + "@github.com/a/b\n",
		".git/objects/ab/cdef0123":  assign,                     // history: skipped
		"vendor/lib/x.go":           assign,                     // --exclude vendor
		"vendor/lib/keep.go":        assign,                     // but !vendor/lib/keep.go
		"logs/app.log":              assign,                     // --exclude **/*.log
		"bin/tool":                  "\x7fELF\x00\x00" + assign, // binary
		"big.txt":                   strings.Repeat("x", 2000) + "\n" + assign,
		"node_modules/pkg/.env":     "A=1\n", // a name, even in dependencies
		"node_modules/pkg/index.js": assign,  // gitleaks' allowlist: content not read
	})
	outside := writeTree(t, map[string]string{"secret.txt": assign})
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, ".env")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ScanDir(context.Background(), dir, ScanOptions{
		Exclude:     []string{"vendor", "!vendor/lib/keep.go", "**/*.log"},
		MaxFileSize: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		".env:0 dotenv-file",
		".git/config:1 github-pat",
		"a.go:1 github-pat",
		"node_modules/pkg/.env:0 dotenv-file",
		"vendor/lib/keep.go:1 github-pat",
	}
	if got := found(r.Findings); !slices.Equal(got, want) {
		t.Errorf("findings:\n got %q\nwant %q", got, want)
	}
	wantSkipped := []Skipped{{"big.txt", "size"}, {"bin/tool", "binary"}, {"pipe", "special"}}
	if !slices.Equal(r.Skipped, wantSkipped) {
		t.Errorf("skipped: got %v; want %v", r.Skipped, wantSkipped)
	}
}

// A file that cannot be read is reported with the others' findings. The
// kernel refuses to open a write-only sysctl for reading even to root.
func TestScanUnreadable(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/sys/vm/drop_caches"); err != nil {
		t.Skipf("no /proc/sys/vm/drop_caches: %v", err)
	}
	r, err := ScanPaths(context.Background(), "/proc/sys/vm", []string{"drop_caches", "absent"}, ScanOptions{})
	if err == nil || !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "drop_caches: permission denied") {
		t.Fatalf("ScanPaths error = %v; want drop_caches: permission denied", err)
	}
	want := []Skipped{{"drop_caches", "unreadable: permission denied"}}
	if r == nil || !slices.Equal(r.Skipped, want) {
		t.Fatalf("report = %+v; want skipped %v", r, want)
	}
	if _, err := ScanDir(context.Background(), filepath.Join(t.TempDir(), "absent"), ScanOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ScanDir(absent) error = %v; want not exist", err)
	}
	if _, err := ScanDir(context.Background(), t.TempDir(), ScanOptions{Exclude: []string{"a[", "b"}}); err == nil ||
		err.Error() != `scan: exclude pattern "a[": syntax error in pattern` {
		t.Errorf("bad exclude: error = %v", err)
	}
}

// Files are scanned in chunks; a secret deep in a large file is found on its
// line, and a key block near a chunk's end is not cut.
func TestScanChunks(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 3))
	var b strings.Builder
	line := 1
	add := func(s string) {
		b.WriteString(s)
		line += strings.Count(s, "\n")
	}
	wantLines := map[string]int{}
	for i := 0; b.Len() < 300<<10; i++ {
		add(fmt.Sprintf("func f%d() int { return %d }\n", i, i))
		if i%7 == 0 {
			add("\n")
		}
		if i == 400 || i == 5000 {
			add("\n")
			wantLines[fmt.Sprint(i)] = line
			add(pemBlock(r, "RSA PRIVATE KEY", 1190) + "\n")
		}
	}
	wantLines["token"] = line
	add("token = \"" + canary(t) + "\"\n")
	dir := writeTree(t, map[string]string{"big.go": b.String()})
	res, err := ScanDir(context.Background(), dir, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("big.go:%d private-key", wantLines["400"]),
		fmt.Sprintf("big.go:%d private-key", wantLines["5000"]),
		fmt.Sprintf("big.go:%d github-pat", wantLines["token"]),
	}
	if got := found(res.Findings); !slices.Equal(got, want) {
		t.Errorf("findings:\n got %q\nwant %q", got, want)
	}
}

func TestChunkEnd(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("abcdefg\n", 10<<10) // 80 KiB, no blank line
	n := chunkEnd([]byte(text))
	if n <= chunkSize || n > chunkSize+chunkPeek || text[n-1] != '\n' {
		t.Errorf("chunkEnd = %d; want a line's end past %d and within %d", n, chunkSize, chunkSize+chunkPeek)
	}
	withBlank := text[:chunkSize+96] + "\n" + text // lines are 8 bytes: a blank line at chunkSize+96
	if n := chunkEnd([]byte(withBlank)); n != chunkSize+97 {
		t.Errorf("chunkEnd = %d; want %d, after the blank line", n, chunkSize+97)
	}
	// Without blank lines, a chunk ends at a line's end, but not inside a
	// key block.
	pem := pemBlock(rand.New(rand.NewPCG(4, 4)), "RSA PRIVATE KEY", 1190)
	withKey := text[:chunkSize-64] + pem + "\n" + text
	if n, want := chunkEnd([]byte(withKey)), chunkSize-64+len(pem)+1; n != want {
		t.Errorf("chunkEnd = %d; want %d, after the key block", n, want)
	}
	if n := chunkEnd([]byte(text)); n != chunkSize+8 {
		t.Errorf("chunkEnd = %d; want %d, the first line's end past chunkSize", n, chunkSize+8)
	}
	if n := chunkEnd([]byte("short")); n != 5 {
		t.Errorf("chunkEnd(short) = %d", n)
	}
}

var excerptTests = []struct {
	rule, match, secret, want string
}{
	{"github-pat", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcd****"},
	{"generic-api-key", `password = "Zq8vN2kLmP4xR7tY1wE3"`, "Zq8vN2kLmP4xR7tY1wE3", `password = "Zq8v****"`},
	{"generic-api-key", "key=\x1b[31mAbCdEfGhIjKlMnOp", "AbCdEfGhIjKlMnOp", `key=\u001b[31mAb****`},
	{"private-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----", "", "-----BEGIN OPENSSH PRIVATE KEY----- …[redacted]"},
	{"short", "pw: abcdefgh", "abcdefgh", "pw: ****"},
	{"decoded", "token: ZXhhbXBsZQ", "different-secret-value", "diff****"},
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	for _, tt := range excerptTests {
		f := report.Finding{RuleID: tt.rule, Match: tt.match, Secret: tt.secret}
		if got := excerpt(f); got != tt.want {
			t.Errorf("excerpt(%q, %q) = %q; want %q", tt.match, tt.secret, got, tt.want)
		}
	}
}

// FuzzExcerpt: an excerpt never holds the secret whole, nor a control
// character a terminal would act on.
func FuzzExcerpt(f *testing.F) {
	for _, tt := range excerptTests {
		f.Add(tt.rule, tt.match, tt.secret)
	}
	f.Fuzz(func(t *testing.T, rule, match, secret string) {
		secret = strings.TrimSpace(secret)
		if len(secret) < 8 {
			return
		}
		ex := excerpt(report.Finding{RuleID: rule, Match: match + secret + match, Secret: secret})
		if strings.Contains(ex, secret) {
			t.Fatalf("excerpt %q holds the secret %q", ex, secret)
		}
		for _, r := range ex {
			if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("excerpt %q holds control character %U", ex, r)
			}
		}
	})
}

// FuzzTxtar: the corpus archive parser round-trips what it parses.
func FuzzTxtar(f *testing.F) {
	data, err := os.ReadFile("testdata/scan/corpus.txtar")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("-- a --\nx\n-- b --\n"))
	f.Add([]byte("comment\n-- --\n-- x --"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, files := parseTxtar(data)
		c2, files2 := parseTxtar(formatTxtar(c, files))
		if string(fixNL(c)) != string(c2) || len(files) != len(files2) {
			t.Fatalf("round trip: %q %d files, then %q %d files", c, len(files), c2, len(files2))
		}
		for i := range files {
			if files[i].Name != files2[i].Name || string(fixNL(files[i].Data)) != string(files2[i].Data) {
				t.Fatalf("file %d: %q %q, then %q %q", i, files[i].Name, files[i].Data, files2[i].Name, files2[i].Data)
			}
		}
	})
}

// Scans share one detector from many goroutines; under -race this checks
// that gitleaks' detector holds no unguarded state.
func TestScanConcurrent(t *testing.T) {
	t.Parallel()
	tok := canary(t)
	dir := writeTree(t, map[string]string{"a.go": "token = \"" + tok + "\"\n", "b.py": "x = 1\n"})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			fs, err := Scan(context.Background(), dir, ScanOptions{Workers: 3})
			if err == nil && len(fs) != 1 {
				err = fmt.Errorf("%d findings; want 1", len(fs))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A root named through a link, and a location under it that is a link (a
// dotfiles repository's ~/.aws), are scanned where they lead; the paths stay
// as named. Paths that leave the root are refused.
func TestScanLinkedLocations(t *testing.T) {
	t.Parallel()
	tok := canary(t)
	real := writeTree(t, map[string]string{"aws/credentials": "[default]\ntoken = \"" + tok + "\"\n"})
	home := writeTree(t, map[string]string{"a.go": "package a\n"})
	if err := os.Symlink(filepath.Join(real, "aws"), filepath.Join(home, ".aws")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "home")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	r, err := ScanPaths(context.Background(), link, []string{".aws", ".ssh"}, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".aws/credentials:0 aws-credentials", ".aws/credentials:2 github-pat"}
	if got := found(r.Findings); !slices.Equal(got, want) {
		t.Errorf("findings: got %q; want %q", got, want)
	}
	for _, rel := range []string{"../x", "/etc", ".."} {
		if _, err := ScanPaths(context.Background(), home, []string{rel}, ScanOptions{}); err == nil {
			t.Errorf("ScanPaths(%q) = nil error; want a refusal", rel)
		}
	}
}
