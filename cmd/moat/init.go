package main

import "github.com/moatsec/moat/internal/sandbox"

// The sandbox re-executes this binary as its PID 1 and as the last stage
// before the command; those processes must run nothing else (runc's
// init.go does the same). This is the one init with an effect.
func init() {
	if sandbox.IsInit() {
		sandbox.Init()
	}
}
