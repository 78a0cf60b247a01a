package main

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestReviewUnannotated: -annotated=false leaves no trace of the
// annotations (managedFields included) and expects no patch.
func TestReviewUnannotated(t *testing.T) {
	pod := filepath.Join("..", "..", "webhook", "testdata", "bench-pod.json")
	body, _, wantPatch, err := review(pod, true, 0)
	if err != nil || !wantPatch || !bytes.Contains(body, []byte("f:depends-on.dev/services")) {
		t.Fatalf("annotated: wantPatch=%v, err=%v", wantPatch, err)
	}
	body, _, wantPatch, err = review(pod, false, 0)
	if err != nil || wantPatch || bytes.Contains(body, []byte("depends-on.dev/")) {
		t.Fatalf("unannotated: wantPatch=%v, err=%v, depends-on.dev/ in the body: %v", wantPatch, err, bytes.Contains(body, []byte("depends-on.dev/")))
	}
	padded, _, _, err := review(pod, true, 1000)
	if err != nil || len(padded) < len(body)+1000 {
		t.Fatalf("padding: %d bytes, %v", len(padded), err)
	}
}
