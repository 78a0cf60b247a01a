package main

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff produces the delays between two probes of one target: it starts at
// initial, grows by factor up to max, and every delay gets +/- jitter (a
// fraction, 0.2 = 20%) so that many Pods started together do not probe in
// lockstep.
type backoff struct {
	cur    time.Duration
	max    time.Duration
	factor float64
	jitter float64
	rnd    func() float64 // uniform in [0,1)
}

func newBackoff(initial, max time.Duration, factor, jitter float64) *backoff {
	return &backoff{cur: initial, max: max, factor: factor, jitter: jitter, rnd: rand.Float64}
}

// next returns the delay to wait before the next probe and grows the backoff.
func (b *backoff) next() time.Duration {
	d := b.cur
	b.cur = min(time.Duration(float64(b.cur)*b.factor), b.max)
	return jittered(d, b.jitter, b.rnd)
}

// jittered scales d by a random factor in [1-j, 1+j).
func jittered(d time.Duration, j float64, rnd func() float64) time.Duration {
	return time.Duration(float64(d) * (1 - j + 2*j*rnd()))
}

// sleep waits for d or until ctx is done; it reports whether the full delay
// elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return !done(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !done(ctx) // both may be ready at once: the deadline wins
	case <-ctx.Done():
		return false
	}
}
