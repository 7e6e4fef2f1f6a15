package audit

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// killChildEnv, when set to a path, makes the test binary a child that
// writes records to that path from several goroutines until it is killed.
const killChildEnv = "MOAT_AUDIT_TEST_KILL_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(killChildEnv); path != "" {
		killChild(path)
		return
	}
	os.Exit(m.Run())
}

func killChild(path string) {
	w, err := Open(path, Options{MaxSize: 256 << 10, MaxFiles: 1000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				// Sizes vary, so lines start and end anywhere in a page.
				err := w.Write(Record{Time: time.Now(), Kind: KindConnect, Session: fmt.Sprintf("g%d", g),
					Host: "example.com", Port: 443, Decision: DecisionAllow, Status: i,
					Detail: strings.Repeat("x", (i*37+g*101)%700)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
		})
	}
	wg.Wait()
}
