package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// logTimeFormat is RFC 3339 with milliseconds, always in UTC.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// logger writes plain, human-readable lines ("<timestamp> <message>") for
// `kubectl logs`. It is safe for concurrent use; each line is written whole.
type logger struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

func newLogger(w io.Writer) *logger {
	return &logger{w: w, now: time.Now}
}

func (l *logger) printf(format string, args ...any) {
	msg := oneLine(fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s %s\n", l.now().UTC().Format(logTimeFormat), msg)
}

// oneLine replaces line breaks so that a message can never span lines.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// formatElapsed renders a duration for humans: "12ms" below one second,
// otherwise rounded to a tenth of a second ("3.2s", "1m5.3s").
func formatElapsed(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
