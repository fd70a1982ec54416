package metrics

import (
	"context"
	"net"
	"net/http"
)

// Handler serves the registry of the Set's Exporter (every Set sharing it
// included) in the Prometheus exposition format; see Exporter.Handler.
func (s *Set) Handler() http.Handler { return s.exp.Handler() }

// Serve listens on addr ("host:port"; port 0 picks a free one) and serves
// Handler at /metrics, HealthHandler at /healthz and ReadyHandler at
// /readyz until ctx ends, then shuts the server down. It returns
// the address it listens on. Sets sharing an Exporter need one Serve (of
// any of them, or of the Exporter).
func (s *Set) Serve(ctx context.Context, addr string) (net.Addr, error) {
	return s.exp.serve(ctx, addr, s.onError)
}
