// Command fileio opens, stats and closes one file N times (default
// 100000): the file-system system calls whose cost differs most between
// the tiers (gVisor serves each through its own kernel and gofer).
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 100000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	const name = "fileio.dat"
	if _, err := os.Stat(name); err != nil {
		if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	for i := 0; i < n; i++ {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if _, err := f.Stat(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		f.Close()
	}
}
