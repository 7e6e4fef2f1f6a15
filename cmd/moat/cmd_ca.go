package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moatsec/moat/internal/proxy"
)

func init() {
	commands["ca"] = command{"manage moat's CA for TLS termination: init, show, path, bundle", cmdCA}
}

func cmdCA(ctx context.Context, e *env, args []string) int {
	fs := flag.NewFlagSet("moat ca", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("dir", "", "CA `DIR` (default "+proxy.DefaultCADir(e.getenv)+")")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: moat ca init|show|path|bundle FILE [--dir DIR]")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return exitUsage
	}
	sub := args[0]
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return exitUsage
	}
	if *dir == "" {
		*dir = proxy.DefaultCADir(e.getenv)
	}
	if len(pos) > 0 && sub != "bundle" {
		fmt.Fprintf(e.stderr, "moat ca %s: unexpected argument %q\n", sub, pos[0])
		return exitUsage
	}
	switch sub {
	case "init":
		ca, created, err := proxy.InitCA(*dir)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat: %v\n", err)
			return exitInternal
		}
		verb := "exists"
		if created {
			verb = "created"
		}
		fmt.Fprintf(e.stdout, "moat CA %s: %s (expires %s)\n", verb, filepath.Join(*dir, "ca.pem"), ca.Cert.NotAfter.Format("2006-01-02"))
	case "show":
		ca, err := proxy.LoadCA(*dir)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat: %v\n", err)
			return exitInternal
		}
		fmt.Fprintf(e.stdout, "subject:  %s\nexpires:  %s\nfile:     %s\n", ca.Cert.Subject, ca.Cert.NotAfter.Format("2006-01-02"), filepath.Join(*dir, "ca.pem"))
		e.stdout.Write(ca.CertPEM)
	case "path":
		fmt.Fprintln(e.stdout, filepath.Join(*dir, "ca.pem"))
	case "bundle":
		if len(pos) != 1 {
			fmt.Fprintln(e.stderr, "moat ca bundle: name the FILE to write (the system's roots and moat's CA, for SSL_CERT_FILE)")
			return exitUsage
		}
		ca, err := proxy.LoadCA(*dir)
		if err != nil {
			fmt.Fprintf(e.stderr, "moat: %v\n", err)
			return exitInternal
		}
		if err := os.WriteFile(pos[0], ca.Bundle(), 0o644); err != nil {
			fmt.Fprintf(e.stderr, "moat: ca bundle: %v\n", err)
			return exitInternal
		}
	default:
		fmt.Fprintf(e.stderr, "moat ca: unknown subcommand %q\n", sub)
		fs.Usage()
		return exitUsage
	}
	return exitOK
}
