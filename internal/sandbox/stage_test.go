package sandbox

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if IsInit() {
		Init()
	}
	os.Exit(m.Run())
}

// runLastStage runs the last stage alone (no namespaces, no mounts), as
// PID 1 would start it, so Landlock and seccomp are tested on their own.
func runLastStage(t *testing.T, s Spec) (stdout string, fail string) {
	t.Helper()
	cfgR, cfgW, _ := os.Pipe()
	failR, failW, _ := os.Pipe()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{ExecArg}
	cmd.ExtraFiles = []*os.File{cfgR, failW}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cfgR.Close()
	failW.Close()
	json.NewEncoder(cfgW).Encode(initConfig{Spec: s})
	cfgW.Close()
	var fb bytes.Buffer
	fb.ReadFrom(failR)
	cmd.Wait()
	return out.String(), fb.String()
}

func needPython(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing")
		}
		t.Skip("python3 is not installed")
	}
}

// TestLandlockAlone: with no mount tree, Landlock alone refuses a write
// outside the writable paths with EACCES, even to root (who could
// otherwise write anywhere); the control writes inside.
func TestLandlockAlone(t *testing.T) {
	if Probe().LandlockABI == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the CI kernel must have Landlock")
		}
		t.Skip("no Landlock on this kernel")
	}
	allowed, other := t.TempDir(), t.TempDir()
	out, fail := runLastStage(t, Spec{
		Argv:  []string{"sh", "-c", `echo a > "$1/f" && echo allowed-ok; echo b > "$2/f" 2>&1 || echo refused; ls "$2" >/dev/null && echo read-ok`, "sh", allowed, other},
		Write: []string{allowed}, Env: []string{"PATH=" + os.Getenv("PATH")},
	})
	if fail != "" {
		t.Fatalf("last stage failed: %s", fail)
	}
	for _, want := range []string{"allowed-ok", "Permission denied", "refused", "read-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(other, "f")); err == nil {
		t.Errorf("the write outside the allowed path happened")
	}
}

// TestSeccompAlone: socket(AF_UNIX), also with high bits set in the
// domain, and TIOCSTI with high bits in the request, fail with EPERM (the
// filter's errno; without it socket succeeds and the ioctl on a pipe says
// ENOTTY). Control: AllowUnixSockets opens socket(AF_UNIX).
func TestSeccompAlone(t *testing.T) {
	needPython(t)
	script := `import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
def call(*a):
    r = libc.syscall(*a); e = ctypes.get_errno(); ctypes.set_errno(0); return (r, e)
print("unix", call(41, 1, 1, 0))
print("unix-high", call(41, ctypes.c_long(0x100000001), 1, 0))
print("inet", call(41, 2, 1, 0)[0] >= 0)
print("tiocsti-high", call(16, 0, ctypes.c_ulong(0x100005412), ctypes.c_char_p(b"x")))
`
	env := []string{"PATH=" + os.Getenv("PATH")}
	out, fail := runLastStage(t, Spec{Argv: []string{"python3", "-c", script}, Env: env})
	if fail != "" {
		t.Fatalf("last stage failed: %s", fail)
	}
	for _, want := range []string{"unix (-1, 1)", "unix-high (-1, 1)", "inet True", "tiocsti-high (-1, 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _ = runLastStage(t, Spec{Argv: []string{"python3", "-c", script}, Env: env, AllowUnixSockets: true})
	if strings.Contains(out, "unix (-1, 1)") {
		t.Errorf("AllowUnixSockets did not open socket(AF_UNIX):\n%s", out)
	}
}

// TestLastStageFailsClosed: a command that does not exist is reported
// by the exec stage with 127, not run.
func TestLastStageFailsClosed(t *testing.T) {
	_, fail := runLastStage(t, Spec{Argv: []string{"moat-no-such-command"}, Env: []string{"PATH=/usr/bin:/bin"}})
	var f stageFailure
	if err := json.Unmarshal([]byte(fail), &f); err != nil {
		t.Fatalf("failure report %q: %v", fail, err)
	}
	if f.Stage != "exec" || f.Code != 127 || f.Err != "moat-no-such-command: not found in the sandbox's PATH" {
		t.Errorf("got %+v; want the exec stage, 127, not found", f)
	}
}
