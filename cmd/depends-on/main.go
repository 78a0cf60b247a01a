// Command depends-on is the project's command-line tool: one binary, one
// subcommand per file (certs.go, version.go, ...). Flags and wiring only; the
// logic lives in packages (certs/incluster, webhook, deploy).
//
// Exit codes: 0 success, 1 the command failed, 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Set at build time with -ldflags "-X main.version=... -X main.waitImage=...".
var (
	version   = "dev"
	waitImage = ""
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	programName = "depends-on"
)

// command is one subcommand. run gets the arguments after its name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cmdEnv, args []string) int
}

// cmdEnv is what a subcommand may touch of the process.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// commands lists the subcommands in the order --help shows them. A new
// subcommand is a file with a func returning a command, plus one line here.
func commands() []command {
	return []command{
		injectCommand(),
		lintCommand(),
		certsCommand(),
		versionCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := runMain(ctx, &cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

func runMain(ctx context.Context, env *cmdEnv, args []string) int {
	if len(args) == 0 {
		usage(env.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(env.stdout)
		return exitOK
	case "-version", "--version":
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(env.stderr, "%s: unknown command %q\n\n", programName, args[0])
	usage(env.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "%s: Pods that wait for their dependencies (https://depends-on.dev)\n\n", programName)
	fmt.Fprintf(w, "Usage:\n  %s COMMAND [flags]\n\nCommands:\n", programName)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n%s COMMAND --help shows the flags of a command.\n", programName)
	fmt.Fprintf(w, "Exit codes: %d success, %d the command failed, %d usage error.\n", exitOK, exitFailed, exitUsage)
}

// parseFlags parses a subcommand's flags; it returns (code, false) when the
// command must stop: --help (0) or a usage error (2).
func parseFlags(fs *flag.FlagSet, env *cmdEnv, args []string) (int, bool) {
	fs.SetOutput(env.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "%s %s: unexpected arguments: %v\n", programName, fs.Name(), fs.Args())
		return exitUsage, false
	}
	return exitOK, true
}
