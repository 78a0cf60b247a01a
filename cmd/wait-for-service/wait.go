package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/depends-on/depends-on/webhook/target"
)

// config is what run decided from the command line.
type config struct {
	timeout        time.Duration // 0 = wait forever
	terminationLog string
	maxBytes       int64
	lookup         lookupFunc
	tuning         tuning
	readiness      *readinessConfig // nil unless there are object targets (object.go)
}

func (c *config) userAgent() string { return "depends-on-wait-for-service/" + version }

// tuning holds the pacing constants; tests shorten some of them.
type tuning struct {
	initialBackoff    time.Duration // first delay between two probes
	backoffFactor     float64       // growth of the delay
	jitter            float64       // +/- fraction applied to every delay
	connectBackoffMax time.Duration // tcp, http, fetch: probes (connects) at least this often
	dnsBackoffMax     time.Duration // dns: targets
	lookupInterval    time.Duration // at most one DNS lookup per target per interval
	lookupSpread      float64       // random extra gap between lookups, fraction of lookupInterval
	addrTTL           time.Duration // how long resolved addresses are reused for connects
	probeTimeout      time.Duration // one dns/tcp/http probe; also connect, TLS and header timeouts of fetch
	fetchTimeout      time.Duration // one whole fetch, body included
	maxRedirects      int
	stillWaiting      time.Duration // period of the "still waiting for" lines

	readiness readinessTuning // object targets (object.go)
}

func defaultTuning() tuning {
	return tuning{
		initialBackoff:    100 * time.Millisecond,
		backoffFactor:     1.5,
		jitter:            0.2,
		connectBackoffMax: 400 * time.Millisecond,
		dnsBackoffMax:     800 * time.Millisecond, // below lookupInterval: the lookup limit paces dns: targets
		// Lookups 0.9-1.0 s apart: about one a second, and a name that starts
		// resolving is seen within ~0.5 s on average (half the mean gap).
		lookupInterval: 900 * time.Millisecond,
		lookupSpread:   0.1,
		addrTTL:        time.Second,
		probeTimeout:   5 * time.Second,
		fetchTimeout:   5 * time.Minute,
		maxRedirects:   5,
		stillWaiting:   10 * time.Second,
		readiness:      defaultReadinessTuning(),
	}
}

// maxTerminationMessage is the kubelet's limit for a termination message.
const maxTerminationMessage = 4096

// targetState is what the summary needs to know about one target.
type targetState struct {
	mu      sync.Mutex
	ready   bool
	lastErr string
}

func (s *targetState) set(ready bool, lastErr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.lastErr = ready, lastErr
}

func (s *targetState) get() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.lastErr
}

// targetFailure is the cancellation cause when a target fails permanently.
type targetFailure struct {
	t   *target.Target
	err *permanentError
}

func (f *targetFailure) Error() string { return f.t.Name + " failed: " + f.err.msg }

// waitAll probes all targets in parallel until all are ready (0), the
// timeout expires or ctx is cancelled (1), or one fails permanently (1).
func waitAll(ctx context.Context, cfg *config, targets []*target.Target, log *logger) int {
	start := time.Now()
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	limit := "no timeout"
	if cfg.timeout > 0 {
		limit = "timeout " + cfg.timeout.String()
	}
	log.printf("waiting for %s: %s (%s)", plural(len(targets), "target"), strings.Join(names, ", "), limit)

	parent := ctx // cancelled by SIGTERM/SIGINT
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cfg.timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, cfg.timeout)
		defer stop()
	}

	states := make([]*targetState, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		st := &targetState{}
		states[i] = st
		if t.Kind.IsObject() { // long-polls the readiness service (object.go)
			wg.Go(func() {
				if err := waitObject(ctx, cfg, t, st, log, start); err != nil {
					cancel(err)
				}
			})
			continue
		}
		probe := newProbe(ctx, t, cfg)
		wg.Go(func() {
			if err := waitTarget(ctx, cfg, t, probe, st, log, start); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()

	var pending []string
	for i, st := range states {
		if ready, lastErr := st.get(); !ready {
			if lastErr == "" {
				lastErr = "no probe completed yet"
			}
			pending = append(pending, fmt.Sprintf("%s (%s)", targets[i].Name, lastErr))
		}
	}
	elapsed := time.Since(start)
	if len(pending) == 0 {
		log.printf("all %s ready after %s", plural(len(targets), "target"), formatElapsed(elapsed))
		return 0
	}

	// Targets stop early for one of three reasons: one failed for good (the
	// cause is set before its goroutine ends), a signal, or the timeout.
	var msg, short string
	var failure *targetFailure
	switch {
	case errors.As(context.Cause(ctx), &failure):
		msg = oneLine(failure.Error())
		short = truncate(msg, maxTerminationMessage)
	case parent.Err() != nil:
		prefix := fmt.Sprintf("interrupted after %s waiting for: ", formatElapsed(elapsed))
		msg, short = summary(prefix, pending, maxTerminationMessage)
	default:
		prefix := fmt.Sprintf("timed out after %s waiting for: ", cfg.timeout)
		msg, short = summary(prefix, pending, maxTerminationMessage)
	}
	log.printf("%s", msg)
	if err := os.WriteFile(cfg.terminationLog, []byte(short), 0o644); err != nil {
		log.printf("cannot write termination log: %v", err)
	}
	return 1
}

// summary returns prefix followed by the items separated by "; ", on one line,
// in full (for the log) and cut to at most max bytes (for the termination
// message). The cut keeps whole items and ends with "… and N more", N the
// number of items left out, so that the reader knows how much is missing.
func summary(prefix string, items []string, max int) (full, short string) {
	for i := range items {
		items[i] = oneLine(items[i])
	}
	full = oneLine(prefix) + strings.Join(items, "; ")
	if len(full) <= max {
		return full, full
	}
	var b strings.Builder
	b.WriteString(oneLine(prefix))
	for i, it := range items {
		tail := fmt.Sprintf("… and %d more", len(items)-i)
		sep := ""
		if i > 0 {
			sep = "; "
		}
		// Room for this item and the tail that would follow it if it is not the last.
		next := ""
		if i < len(items)-1 {
			next = fmt.Sprintf(" … and %d more", len(items)-i-1)
		}
		if b.Len()+len(sep)+len(it)+len(next) > max {
			if i == 0 {
				// Not even the first item fits: cut it, then count the others.
				if len(items) == 1 {
					return full, truncate(full, max)
				}
				return full, cutAt(b.String()+it, max-len(next)) + next
			}
			return full, b.String() + " " + tail
		}
		b.WriteString(sep + it)
	}
	return full, b.String() // not reached: full did not fit
}

// waitTarget probes one target until it is ready (nil), ctx is done (nil),
// or it fails permanently (*targetFailure).
func waitTarget(ctx context.Context, cfg *config, t *target.Target, probe probeFunc, st *targetState, log *logger, start time.Time) error {
	tu := cfg.tuning
	maxDelay, limit := tu.connectBackoffMax, tu.probeTimeout
	switch t.Kind {
	case target.DNS:
		maxDelay = tu.dnsBackoffMax
	case target.Fetch:
		limit = tu.fetchTimeout
	}
	bo := newBackoff(tu.initialBackoff, maxDelay, tu.backoffFactor, tu.jitter)
	var lastMsg string
	lastLine := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, limit)
		err := probe(pctx)
		expired := done(pctx)
		cancel()
		if err == nil {
			st.set(true, "")
			log.printf("%s ready after %s", t.Name, formatElapsed(time.Since(start)))
			return nil
		}
		if done(ctx) {
			// Cancelled or timed out mid-probe: keep the last real error.
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			st.set(false, perm.msg)
			return &targetFailure{t: t, err: perm} // waitAll logs it
		}
		if expired {
			err = &probeTimeoutError{after: limit}
		}
		msg := describe(err)
		st.set(false, msg)
		if now := time.Now(); msg != lastMsg {
			log.printf("%s not ready: %s", t.Name, msg)
			lastMsg, lastLine = msg, now
		} else if now.Sub(lastLine) >= tu.stillWaiting {
			log.printf("still waiting for %s after %s (last error: %s)", t.Name, formatElapsed(now.Sub(start)), msg)
			lastLine = now
		}
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
}

// done reports whether ctx is cancelled or past its deadline. (A socket
// deadline can fire a moment before the context's own timer.)
func done(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// cutAt returns the longest prefix of s of at most max bytes that does not end
// inside a UTF-8 character.
func cutAt(s string, max int) string {
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max]
}

// truncate cuts s to at most max bytes, ending with "…" if it was cut, on a
// UTF-8 character boundary.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const ellipsis = "…"
	return cutAt(s, max-len(ellipsis)) + ellipsis
}
