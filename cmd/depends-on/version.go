package main

import (
	"context"
	"flag"
	"fmt"
)

func versionCommand() command {
	return command{
		name:    "version",
		summary: "print the version and the default wait-for-service image",
		run: func(_ context.Context, env *cmdEnv, args []string) int {
			fs := flag.NewFlagSet("version", flag.ContinueOnError)
			fs.Usage = func() { fmt.Fprintf(fs.Output(), "Usage: %s version\n", programName) }
			if code, ok := parseFlags(fs, env, args); !ok {
				return code
			}
			fmt.Fprintf(env.stdout, "%s %s (wait image %s)\n", programName, version, defaultWaitImage())
			return exitOK
		},
	}
}

// defaultWaitImage is the image the webhook built alongside injects.
func defaultWaitImage() string {
	if waitImage != "" {
		return waitImage
	}
	return "depends-on/wait-for-service:" + version
}
