//go:build race

package integration

// raceEnabled: the tests were built with -race, so the webhook binary is too.
const raceEnabled = true
