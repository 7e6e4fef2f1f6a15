package audit

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestKill9LeavesWholeLines kills a writer mid-stream with SIGKILL: every
// line of every file it wrote must then parse, and every file must end
// with a newline.
func TestKill9LeavesWholeLines(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.jsonl")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it write (and rotate) a while: the kill lands at a moment
		// the child does not choose.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(path + ".4"); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(round*7) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child: %v (want killed by SIGKILL); stderr: %s", err, stderr.Bytes())
		}

		files, err := filepath.Glob(path + "*")
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 4 {
			t.Fatalf("child wrote %d files; want at least 4 (it should have rotated 3 times)", len(files))
		}
		total := 0
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > 0 && data[len(data)-1] != '\n' {
				t.Errorf("round %d: %s ends in a partial line: %q", round, filepath.Base(name), tailOf(data))
			}
			n := 0
			bad, err := Scan(bytes.NewReader(data), func(Record) error { n++; return nil })
			if err != nil || bad != 0 {
				t.Errorf("round %d: %s: Scan = %d bad, %v; want 0 bad", round, filepath.Base(name), bad, err)
			}
			if lines := nonBlankLines(data); n != lines {
				t.Errorf("round %d: %s: %d records in %d lines", round, filepath.Base(name), n, lines)
			}
			total += n
		}
		t.Logf("round %d: %d records in %d files", round, total, len(files))
	}
}

func tailOf(b []byte) string {
	if len(b) > 80 {
		b = b[len(b)-80:]
	}
	return strconv.Quote(string(b))
}

func nonBlankLines(b []byte) int {
	n := 0
	for line := range bytes.Lines(b) {
		if len(bytes.TrimSpace(line)) > 0 {
			n++
		}
	}
	return n
}
