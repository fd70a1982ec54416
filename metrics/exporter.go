package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ScrapeWait is how long a scrape waits for the OnScrape functions to
// bring their values up to date before it serves what the registry holds.
const ScrapeWait = time.Second

// Exporter is a Prometheus registry and the /metrics handler serving it.
// Every Set reports on one: by default a private one that NewSet makes,
// or, with Config.Exporter, one shared with the Sets of the other servers
// of a process, so that one endpoint serves them all. Their series are told
// apart by the serverType const label (each Set must have its own const
// labels: NewSet refuses a second Set with the same ones). Safe for
// concurrent use.
type Exporter struct {
	reg *prometheus.Registry

	mu      sync.Mutex
	runtime bool // the go_* and process_* collectors are registered
	hooks   map[*scrapeHook]struct{}
	checks  map[any]readyCheck // /readyz, by owner (see health.go)
}

// NewExporter returns an Exporter with an empty registry of its own (never
// the global default one).
func NewExporter() *Exporter {
	return &Exporter{reg: prometheus.NewRegistry(), hooks: make(map[*scrapeHook]struct{}), checks: make(map[any]readyCheck)}
}

// Registry is the Exporter's registry; more collectors may be registered
// on it.
func (e *Exporter) Registry() *prometheus.Registry { return e.reg }

// addRuntime registers the Go runtime and process collectors once.
func (e *Exporter) addRuntime() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runtime {
		return nil
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := e.reg.Register(c); err != nil {
			return err
		}
	}
	e.runtime = true
	return nil
}

// register registers cs, all or none.
func (e *Exporter) register(cs []prometheus.Collector) error {
	for i, c := range cs {
		if err := e.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				e.reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}

// scrapeHook is one function run before each scrape; a run still going
// when the next scrape comes is waited for, not started again.
type scrapeHook struct {
	f func(context.Context)

	mu      sync.Mutex
	running chan struct{} // closed when the run in flight ends; nil: none
}

func (h *scrapeHook) run(ctx context.Context) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running != nil {
		return h.running
	}
	done := make(chan struct{})
	h.running = done
	go func() {
		defer func() {
			h.mu.Lock()
			h.running = nil
			h.mu.Unlock()
			close(done)
		}()
		h.f(ctx)
	}()
	return done
}

// onScrape adds f to the functions run before each scrape and returns
// the function that removes it.
func (e *Exporter) onScrape(f func(context.Context)) (remove func()) {
	h := &scrapeHook{f: f}
	e.mu.Lock()
	e.hooks[h] = struct{}{}
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.hooks, h)
		e.mu.Unlock()
	}
}

// Refresh runs the functions given to Set.OnScrape, all at once, and
// waits until they return, ScrapeWait passes or ctx ends, whichever comes
// first. A function still running from an earlier Refresh is waited for,
// not started again. Handler calls it before every scrape.
func (e *Exporter) Refresh(ctx context.Context) {
	e.mu.Lock()
	hooks := make([]*scrapeHook, 0, len(e.hooks))
	for h := range e.hooks {
		hooks = append(hooks, h)
	}
	e.mu.Unlock()
	if len(hooks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ScrapeWait)
	defer cancel()
	dones := make([]<-chan struct{}, len(hooks))
	for i, h := range hooks {
		dones[i] = h.run(ctx)
	}
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			return
		}
	}
}

// Handler serves the registry in the Prometheus exposition format, after
// a Refresh bounded by the request's context.
func (e *Exporter) Handler() http.Handler {
	h := promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.Refresh(r.Context())
		h.ServeHTTP(w, r)
	})
}

// Serve listens on addr ("host:port"; port 0 picks a free one) and serves
// Handler at /metrics, HealthHandler at /healthz and ReadyHandler at
// /readyz until ctx ends, then shuts the server down. It returns the
// address it listens on.
func (e *Exporter) Serve(ctx context.Context, addr string) (net.Addr, error) {
	return e.serve(ctx, addr, nil)
}

func (e *Exporter) serve(ctx context.Context, addr string, onError func(string, error)) (net.Addr, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", e.Handler())
	mux.Handle("/healthz", e.HealthHandler())
	mux.Handle("/readyz", e.ReadyHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && onError != nil {
			onError("serve", err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return ln.Addr(), nil
}
