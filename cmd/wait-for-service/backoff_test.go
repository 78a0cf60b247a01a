package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBackoffGrowsToCapWithJitter(t *testing.T) {
	b := newBackoff(100*time.Millisecond, 400*time.Millisecond, 1.5, 0.2)
	base := []time.Duration{100, 150, 225, 337, 400, 400, 400}
	for i, want := range base {
		want *= time.Millisecond
		got := b.next()
		lo, hi := time.Duration(float64(want)*0.8)-time.Millisecond, time.Duration(float64(want)*1.2)+time.Millisecond
		if got < lo || got > hi {
			t.Errorf("delay %d = %v, want %v +/- 20%%", i, got, want)
		}
	}
	// Jitter really varies the delays (not a constant factor).
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays out of 50 at the cap: no jitter?", len(seen))
	}
}

func TestJitteredBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		got := jittered(time.Second, 0.2, func() float64 { return r })
		if got < 800*time.Millisecond || got >= 1200*time.Millisecond {
			t.Errorf("jittered(1s, 20%%, rnd=%v) = %v, want in [0.8s, 1.2s)", r, got)
		}
	}
}

// TestPacingMeetsTargets replays the probe schedule produced by the default
// tuning (the same backoff and lookup-limit code the probes use) against
// dependencies that come up at random instants, and checks the detection
// targets: a port within 250 ms p50 and 1.1 s max (tcp/http/fetch probes are
// paced by the connect backoff); a DNS name within ~0.5 s p50 while never
// doing more than one lookup per second (dns: targets are paced by the lookup
// limit).
func TestPacingMeetsTargets(t *testing.T) {
	tu := defaultTuning()
	rnd := rand.New(rand.NewPCG(1, 2))
	const trials = 5000

	var tcpLags, dnsLags []time.Duration
	minGap := time.Hour
	for range trials {
		// Over a long range, so that where the range ends does not matter.
		up := time.Duration(rnd.Int64N(int64(100 * time.Second)))

		// Connect probes: a probe at 0, then after each backoff delay.
		b := newBackoff(tu.initialBackoff, tu.connectBackoffMax, tu.backoffFactor, tu.jitter)
		b.rnd = rnd.Float64
		var at time.Duration
		for at < up {
			at += b.next()
		}
		tcpLags = append(tcpLags, at-up)

		// Lookups: after a failed lookup the loop sleeps the dns backoff,
		// then the resolver waits for the lookup limit.
		b = newBackoff(tu.initialBackoff, tu.dnsBackoffMax, tu.backoffFactor, tu.jitter)
		b.rnd = rnd.Float64
		at = 0
		for at < up {
			gap := max(b.next(), lookupGap(tu.lookupInterval, tu.lookupSpread, rnd.Float64))
			minGap = min(minGap, gap)
			at += gap
		}
		dnsLags = append(dnsLags, at-up)
	}
	slices.Sort(tcpLags)
	slices.Sort(dnsLags)
	tcpP50, tcpMax := tcpLags[trials/2], tcpLags[trials-1]
	dnsP50 := dnsLags[trials/2]
	t.Logf("tcp: p50 %v max %v; dns: p50 %v max %v, min gap between lookups %v", tcpP50, tcpMax, dnsP50, dnsLags[trials-1], minGap)
	if tcpP50 > 250*time.Millisecond || tcpMax > 1100*time.Millisecond {
		t.Errorf("port detection p50 %v max %v, want <= 250ms and <= 1.1s", tcpP50, tcpMax)
	}
	if dnsP50 > 500*time.Millisecond {
		t.Errorf("name detection p50 %v, want <= 0.5s", dnsP50)
	}
	if minGap < tu.lookupInterval || tu.lookupInterval < 900*time.Millisecond {
		t.Errorf("lookups %v apart, want >= %v and about one a second", minGap, tu.lookupInterval)
	}
}
