// Package serving holds the plain-HTTP plumbing the depends-on servers share
// (the admission webhook and the readiness service): the health and metrics
// listeners and their graceful shutdown. The servers' own endpoints live in
// their packages; this is only what both would otherwise copy.
package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// HealthMux serves /healthz (a ping: the process answers) and /readyz (every
// check in ready), with controller-runtime's healthz handler, which also
// answers /readyz/<check> and ?verbose.
func HealthMux(ready map[string]healthz.Checker) *http.ServeMux {
	health := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	readyz := &healthz.Handler{Checks: ready}
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.StripPrefix("/healthz", health))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", health))
	mux.Handle("/readyz", http.StripPrefix("/readyz", readyz))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", readyz))
	return mux
}

// ServeHTTP serves plain HTTP on addr until ctx is done, then shuts down,
// giving in-flight requests shutdownTimeout.
func ServeHTTP(ctx context.Context, name, addr string, h http.Handler, shutdownTimeout time.Duration, log logr.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s server: %w", name, err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
	}()
	log.Info("serving", "server", name, "addr", ln.Addr().String())
	if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

// Draining is a readiness check that fails once draining is set, so that the
// Service's endpoints move to other replicas before this one stops.
func Draining(draining interface{ Load() bool }) healthz.Checker {
	return func(*http.Request) error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		return nil
	}
}
