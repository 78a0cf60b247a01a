package main

import (
	"testing"

	"github.com/depends-on/depends-on/test/testutil"
)

// newTestDNS starts the shared test DNS server for the length of the test.
func newTestDNS(t *testing.T) *testutil.DNSServer {
	t.Helper()
	s, err := testutil.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
