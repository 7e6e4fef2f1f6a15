package workspace

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/report"
)

// The content rules are gitleaks' default rule set (its embedded
// gitleaks.toml), used as a library: the scanned tree's own .gitleaks.toml,
// .gitleaksignore and "gitleaks:allow" comments are ignored, since the tree
// is not trusted to judge itself.

// maxDecodeDepth is how many rounds of base64, hex and percent decoding the
// rules see through: the gitleaks CLI's default.
const maxDecodeDepth = 5

// detector holds two gitleaks detectors over the same rules: d decodes,
// plain does not and serves the files mayDecode clears.
type detector struct {
	d, plain *detect.Detector
}

var (
	detectorOnce sync.Once
	sharedDet    *detector
	detectorErr  error
)

// contentDetector builds the detector once. gitleaks' own constructor
// (NewDetectorDefaultConfig) parses the embedded configuration through the
// global viper instance, which is not safe from several goroutines; a private
// viper instance is.
func contentDetector() (*detector, error) {
	detectorOnce.Do(func() {
		// gitleaks logs through a global zerolog writing to stderr; a
		// trace line would carry a secret. moat reports findings itself.
		logging.Logger = zerolog.Nop()
		// The default allowlist passes files named gitleaks.toml, which
		// would let a tree hide secrets by a file's name. The entry goes
		// before parsing: the parsed allowlist keeps a compiled copy.
		rules := strings.Replace(config.DefaultConfig, `'''gitleaks\.toml''',`, "", 1)
		v := viper.New()
		v.SetConfigType("toml")
		if err := v.ReadConfig(strings.NewReader(rules)); err != nil {
			detectorErr = fmt.Errorf("scan: gitleaks default rules: %w", err)
			return
		}
		var vc config.ViperConfig
		if err := v.Unmarshal(&vc); err != nil {
			detectorErr = fmt.Errorf("scan: gitleaks default rules: %w", err)
			return
		}
		cfg, err := vc.Translate()
		if err != nil {
			detectorErr = fmt.Errorf("scan: gitleaks default rules: %w", err)
			return
		}
		d := detect.NewDetector(cfg)
		d.IgnoreGitleaksAllow = true
		d.MaxDecodeDepth = maxDecodeDepth
		plain := detect.NewDetector(cfg)
		plain.IgnoreGitleaksAllow = true
		sharedDet = &detector{d: d, plain: plain}
	})
	return sharedDet, detectorErr
}

// pathAllowed reports whether gitleaks' global allowlist passes a path:
// dependency trees (node_modules, vendored modules, virtualenvs), lock files
// and fonts and images. Their names are still judged.
func (d *detector) pathAllowed(rel string) bool {
	for _, a := range d.d.Config.Allowlists {
		// Under "OR" a path match alone allows, as gitleaks' own walk has it.
		if a.MatchCondition == config.AllowlistMatchOr && a.PathAllowed(rel) {
			return true
		}
	}
	return false
}

// scan runs the content rules over one file's bytes, in chunks.
func (d *detector) scan(rel string, content []byte) []Finding {
	var out []Finding
	line := 1
	for len(content) > 0 {
		n := chunkEnd(content)
		chunk := content[:n]
		det := d.plain
		if mayDecode(chunk) {
			det = d.d
		}
		for _, f := range det.Detect(detect.Fragment{Raw: string(chunk), FilePath: rel, StartLine: line}) {
			if f.Match == "file detected: "+rel {
				continue // a rule on names; CredentialFile judges those
			}
			out = append(out, Finding{Path: rel, Line: f.StartLine, Rule: f.RuleID, Kind: KindContent, Excerpt: excerpt(f)})
		}
		line += bytes.Count(chunk, []byte{'\n'})
		content = content[n:]
	}
	return out
}

// Files are scanned in chunks of about chunkSize bytes that end at a blank
// line, or a line's end outside a key block. gitleaks runs a rule over a fragment only when one of the rule's
// keywords occurs in it; in a whole file of some size, "key" or "token"
// nearly always does, and the rule that matches assignments of high-entropy
// values ("generic-api-key", no literal prefix) is then the costliest part
// of a scan. In small chunks it runs where its keywords are. Secrets that
// span lines (key blocks) hold no blank line, so a cut there splits none.
const (
	chunkSize = 8 << 10
	chunkPeek = 32 << 10 // how far past chunkSize to look for a blank line
)

// chunkEnd returns the length of the first chunk of b: up to the first
// blank line after chunkSize and within chunkPeek of it, else up to the
// first line's end there outside a PEM block, else chunkSize+chunkPeek
// bytes.
func chunkEnd(b []byte) int {
	if len(b) <= chunkSize+chunkPeek {
		return len(b)
	}
	window := b[chunkSize : chunkSize+chunkPeek]
	if i := bytes.Index(window, []byte("\n\n")); i >= 0 {
		return chunkSize + i + 2
	}
	// No blank line: the first line's end after chunkSize that is not
	// inside a PEM block.
	for off := 0; off < len(window); {
		i := bytes.IndexByte(window[off:], '\n')
		if i < 0 {
			break
		}
		end := chunkSize + off + i + 1
		if !openPEM(b[:end]) {
			return end
		}
		off += i + 1
	}
	return chunkSize + chunkPeek
}

// openPEM reports whether b ends inside a PEM block: its last BEGIN
// armour has no END after it.
func openPEM(b []byte) bool {
	begin := bytes.LastIndex(b, []byte("-----BEGIN"))
	return begin >= 0 && !bytes.Contains(b[begin:], []byte("-----END"))
}

// maxExcerpt bounds an excerpt, in runes.
const maxExcerpt = 80

// excerpt shows where a secret is without showing it: the rule's match on
// its first line, the secret cut to a short prefix (none when it is short),
// control characters escaped so a file cannot drive the terminal.
func excerpt(f report.Finding) string {
	match, secret := strings.TrimSpace(f.Match), strings.TrimSpace(f.Secret)
	if secret == "" {
		secret = match
	}
	var ex string
	if f.RuleID == "private-key" || strings.HasPrefix(secret, "-----BEGIN") {
		// The armour line names the key's type and is not secret.
		first, _, _ := strings.Cut(secret, "\n")
		first = strings.TrimSpace(first)
		if !strings.HasPrefix(first, "-----BEGIN") || len(first) > 100 {
			first = "-----BEGIN"
		}
		ex = first + " …[redacted]"
	} else {
		ex = strings.ReplaceAll(match, secret, mask(secret))
		if strings.Contains(ex, secret) || !strings.Contains(match, secret) {
			ex = mask(secret) // the match shows the secret in another form
		}
		ex, _, _ = strings.Cut(ex, "\n")
	}
	out := sanitize(ex)
	if strings.Contains(out, secret) || strings.Contains(out, sanitize(secret)) {
		return "[redacted]" // escaping rebuilt it: nothing of the match is shown
	}
	return out
}

// mask keeps a prefix of a secret long enough to tell keys apart (a
// token's type and a character or two) and never more than a fifth of it.
func mask(secret string) string {
	n := utf8.RuneCountInString(secret)
	keep := 0
	switch {
	case n >= 40:
		keep = 8
	case n >= 20:
		keep = 4
	case n >= 10:
		keep = 2
	}
	i := 0
	for range keep {
		_, size := utf8.DecodeRuneInString(secret[i:])
		i += size
	}
	return secret[:i] + "****"
}

// sanitize escapes what a terminal would act on and bounds the length.
func sanitize(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == maxExcerpt {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r == '\t':
			b.WriteByte(' ')
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
