package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ReadyWait bounds one /readyz request's run of the readiness checks.
const ReadyWait = 2 * time.Second

// readyCheck is one readiness check of an Exporter.
type readyCheck struct {
	name string
	f    func(context.Context) error
}

// setCheck sets (f non-nil) or removes the check of owner.
func (e *Exporter) setCheck(owner any, name string, f func(context.Context) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f == nil {
		delete(e.checks, owner)
		return
	}
	e.checks[owner] = readyCheck{name: name, f: f}
}

// AddReadiness adds a check to /readyz: f returns nil when its part is
// ready for traffic, else an error saying what is not. name prefixes the
// error in the answer. The returned function removes the check.
func (e *Exporter) AddReadiness(name string, f func(ctx context.Context) error) (remove func()) {
	owner := new(byte)
	e.setCheck(owner, name, f)
	return func() { e.setCheck(owner, "", nil) }
}

// SetReadiness sets the Set's check of /readyz, served by its Exporter
// (shared or not), named after its serverType label: f returns nil when the
// server is ready for traffic, else an error saying what is not. A later
// call replaces the check, nil removes it. Close leaves it in place: a
// stopped server is not ready, and says so.
func (s *Set) SetReadiness(f func(ctx context.Context) error) {
	name := s.consts[LabelServerType]
	if name == "" {
		name = "server"
	}
	s.exp.setCheck(s, name, f)
}

// Ready runs every readiness check (each Set's and those of AddReadiness)
// and returns nil when all pass, else the failures, one "name: error" per
// line. With no check it returns nil.
func (e *Exporter) Ready(ctx context.Context) error {
	e.mu.Lock()
	checks := make([]readyCheck, 0, len(e.checks))
	for _, c := range e.checks {
		checks = append(checks, c)
	}
	e.mu.Unlock()
	slices.SortStableFunc(checks, func(a, b readyCheck) int { return cmp.Compare(a.name, b.name) })
	ctx, cancel := context.WithTimeout(ctx, ReadyWait)
	defer cancel()
	var errs []error
	for _, c := range checks {
		if err := c.f(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// HealthHandler answers 200 "ok": the process is alive and serving HTTP
// (a Kubernetes livenessProbe).
func (e *Exporter) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
}

// ReadyHandler answers 200 "ok" when Ready passes, else 503 with what is
// not ready, one line each (a Kubernetes readinessProbe).
func (e *Exporter) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := e.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n" + strings.TrimRight(err.Error(), "\n") + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}

// HealthHandler is the Exporter's HealthHandler, for your own server.
func (s *Set) HealthHandler() http.Handler { return s.exp.HealthHandler() }

// ReadyHandler is the Exporter's ReadyHandler, for your own server.
func (s *Set) ReadyHandler() http.Handler { return s.exp.ReadyHandler() }
