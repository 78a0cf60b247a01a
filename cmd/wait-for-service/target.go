package main

import (
	"github.com/depends-on/depends-on/webhook/target"
)

// The TARGET grammar is the webhook's (webhook/target): the webhook only ever
// emits arguments that this binary accepts.

// parseTargets parses all TARGET arguments, drops exact duplicates and
// rejects two fetch: targets writing the same file.
func parseTargets(args []string) ([]*target.Target, error) { return target.ParseAll(args) }
