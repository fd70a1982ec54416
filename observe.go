package nopal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nopal-dev/nopal/codec"
	"github.com/nopal-dev/nopal/discovery"
	"github.com/nopal-dev/nopal/metrics"
)

// MetricsConfig turns on metrics (DESIGN §5: Pitaya's names under a
// namespace; "pitaya" keeps existing dashboards working).
type MetricsConfig struct {
	// Set configures the metric set: Namespace (default "nopal"), Game,
	// constant labels, histogram buckets and custom metrics. ServerType
	// defaults to the app's. Set.Exporter shares one Prometheus registry
	// and /metrics between the apps of one process: give each app's
	// config the same metrics.NewExporter() and one of them an Addr; each
	// app's series keep their own serverType label.
	Set metrics.Config
	// Addr serves Prometheus's /metrics ("127.0.0.1:9090"; "" serves
	// nothing: use App.Metrics().Handler() in your own server). With a
	// shared Set.Exporter it serves every app of the Exporter.
	Addr string
	// Statsd sends the same metrics to a Statsd agent ("127.0.0.1:8125"),
	// with StatsdPrefix (default the namespace and "_") before each name.
	Statsd       string
	StatsdPrefix string
	// Reporters are more places metrics go (your own Reporter).
	Reporters []metrics.Reporter
	// Interval of the gauges sampled from the app (connected clients,
	// runtime, queues; default 15 s) for Statsd and the Reporters, which
	// are pushed to. A Prometheus scrape samples them afresh (waiting up
	// to metrics.ScrapeWait for the job worker's queue sizes), so /metrics
	// is current whatever the interval.
	Interval time.Duration
}

// observer feeds the metric set from the app. A nil *observer (metrics
// off) does nothing.
type observer struct {
	set    *metrics.Set
	statsd *metrics.Statsd
	addr   string
	shared bool // the Set reports on an Exporter shared with other apps

	mu    sync.Mutex
	types map[string]bool // server types seen, so a vanished type reads 0

	// sampleMu serializes samples: the ticker's and the scrapes'.
	sampleMu sync.Mutex
	// The frontend's counters at the last sample: each sample adds what
	// they gained since (guarded by sampleMu).
	lastMalformed, lastHandshake, lastHeartbeat, lastSlow, lastRefused int64
}

func newObserver(a *App) (*observer, error) {
	mc := a.cfg.Metrics
	if mc == nil {
		return nil, nil
	}
	cfg := mc.Set
	if cfg.ServerType == "" {
		cfg.ServerType = a.cfg.ServerType
	}
	reporters := append([]metrics.Reporter(nil), mc.Reporters...)
	o := &observer{shared: cfg.Exporter != nil}
	if mc.Statsd != "" {
		prefix := mc.StatsdPrefix
		if prefix == "" {
			ns := cfg.Namespace
			if ns == "" {
				ns = metrics.DefaultNamespace
			}
			prefix = ns + "_"
		}
		sd, err := metrics.NewStatsd(mc.Statsd, prefix, map[string]string{"serverType": cfg.ServerType, "game": cfg.Game}, 1)
		if err != nil {
			return nil, fmt.Errorf("nopal: statsd: %w", err)
		}
		o.statsd = sd
		reporters = append(reporters, sd)
	}
	set, err := metrics.NewSet(cfg, reporters...)
	if err != nil {
		if o.statsd != nil {
			_ = o.statsd.Close()
		}
		return nil, fmt.Errorf("nopal: metrics: %w", err)
	}
	o.set = set
	return o, nil
}

// Metrics is the app's metric set (nil when Config.Metrics is nil): add
// your custom metrics' values through it.
func (a *App) Metrics() *metrics.Set {
	if a.obs == nil {
		return nil
	}
	return a.obs.set
}

// MetricsAddr is where /metrics is served (nil when it is not).
func (a *App) MetricsAddr() string {
	if a.obs == nil {
		return ""
	}
	return a.obs.addr
}

// start serves /metrics and samples the app's gauges until ctx ends.
func (o *observer) start(ctx context.Context, a *App) error {
	if o == nil {
		return nil
	}
	mc := a.cfg.Metrics
	if mc.Addr != "" {
		addr, err := o.set.Serve(ctx, mc.Addr)
		if err != nil {
			return fmt.Errorf("nopal: metrics: %w", err)
		}
		o.addr = addr.String()
		a.log.Info("serving metrics", "addr", "http://"+o.addr+"/metrics")
	}
	interval := mc.Interval
	if interval <= 0 {
		interval = 15 * time.Second
	}
	go o.set.StartSysMetrics(ctx, interval)
	go o.sample(ctx, a, interval)
	// A scrape reads the sampled values afresh: a job that just finished
	// is in the very next scrape, not one interval later.
	remove := o.set.OnScrape(func(context.Context) { o.sampleOnce(a) })
	go func() { <-ctx.Done(); remove() }()
	if c := a.cluster(); c != nil {
		cancel := c.Discovery().Subscribe(func(discovery.Event) { o.serverCounts(c.Discovery()) })
		go func() { <-ctx.Done(); cancel() }()
		o.serverCounts(c.Discovery())
	}
	return nil
}

func (o *observer) serverCounts(d *discovery.Discovery) {
	counts := d.CountByType()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.types == nil {
		o.types = map[string]bool{}
	}
	for typ := range counts {
		o.types[typ] = true
	}
	for typ := range o.types {
		o.set.SetServerCount(typ, counts[typ])
	}
}

func (o *observer) sample(ctx context.Context, a *App, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		o.sampleOnce(a)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleOnce reads the gauges that live elsewhere in the app. The job
// worker's stats ask JetStream for the queue sizes (2 s at most).
func (o *observer) sampleOnce(a *App) {
	o.sampleMu.Lock()
	defer o.sampleMu.Unlock()
	if fe := a.Frontend(); fe != nil {
		st := fe.Stats()
		o.set.SetConnectedClients(int(st.Connected.Load()))
		o.set.AddMalformedPackets(delta(&o.lastMalformed, st.Malformed.Load()))
		o.set.AddHandshakeFailures(delta(&o.lastHandshake, st.HandshakeFailed.Load()))
		o.set.AddHeartbeatTimeouts(delta(&o.lastHeartbeat, st.HeartbeatTimeouts.Load()))
		o.set.AddSlowClients(delta(&o.lastSlow, st.SlowClients.Load()))
		o.set.AddRefusedConnections(delta(&o.lastRefused, st.Refused.Load()))
	}
	if c := a.cluster(); c != nil {
		st := c.Stats()
		_ = o.set.Gauge(metrics.DroppedMessages, nil, float64(st.Dropped))
		_ = o.set.Gauge(metrics.TrafficDropped, nil, float64(st.TrafficDropped))
		o.set.SetChannelCapacity("bus_calls", st.CallCapacity)
		if w := st.Worker; w != nil {
			for state, n := range w.Jobs {
				o.set.SetWorkerJobs(string(state), int(n))
			}
			o.set.SetWorkerJobsRetry(int(w.Retries))
			o.set.SetWorkerQueueSize(a.cfg.ServerType, int(w.QueueSize))
		}
	}
}

// delta returns what a counter gained since *last and stores its value.
func delta(last *int64, now int64) int {
	d := now - *last
	*last = now
	return int(d)
}

// handled records a client request or notify that a frontend served.
func (o *observer) handled(route string, took time.Duration, err error) {
	if o == nil {
		return
	}
	code := ""
	if err != nil {
		code = codec.AsError(err).Code
		// Client-chosen routes must not mint series; nor may a route that
		// is not UTF-8 reach a label (Prometheus panics on one).
		if code == codec.CodeNotFound || code == codec.CodeServiceMissing || !utf8.ValidString(route) {
			route = "unknown"
		}
	}
	o.set.ObserveResponse(route, metrics.TypeHandler, took, code)
}

// served records a call a backend served from the bus.
func (o *observer) Served(route string, user bool, sentUnixNano int64, started time.Time, err error) {
	if o == nil {
		return
	}
	typ := metrics.TypeHandler
	if user {
		typ = metrics.TypeRPC
	}
	code := ""
	var ce *codec.Error
	if err != nil {
		code = codec.AsError(err).Code
		if errors.As(err, &ce) && ce.Code == codec.CodeNotFound {
			route = "unknown"
		}
	}
	if sentUnixNano > 0 {
		if d := started.Sub(time.Unix(0, sentUnixNano)); d >= 0 {
			o.set.ObserveHandlerDelay(route, metrics.DelayRemote, d)
		}
	}
	o.set.ObserveResponse(route, typ, time.Since(started), code)
}

// close takes the app's series off a shared /metrics (an app's own keeps
// them: App.Metrics().Handler() still serves the last values) and flushes
// Statsd.
func (o *observer) close() {
	if o == nil {
		return
	}
	if o.shared {
		o.set.Close()
	}
	if o.statsd != nil {
		_ = o.statsd.Close()
	}
}
